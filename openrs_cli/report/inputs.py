"""Read the user's artifacts for the report: `results.json` from `openrs eval`, run dirs from `openrs train`.

Conventions (docs/report.md):
- `--results PATH`: a results.json file, or a directory searched recursively for files named `results.json`.
  `--runs DIR`: a run dir (it holds metrics.jsonl, recipe.yaml, launch.json or cost/) or a directory of them;
  results.json files inside a run dir are read too.
- Results belong to a *series* (one line in the checkpoint plot, one row in Table 2): the results' `label`,
  unless it is empty or just `checkpoint-N`/`final`; then the run dir's name (the model path's parent when the
  model is `<run>/checkpoint-N` or `<run>/final`); else the model's last path part.
- The *step* of a result: its `step` field, else `checkpoint-N` in the model path, else in the results file's
  path; none means a final model. Results of the same series and step are merged task by task (newest wins).
- Table 2 shows one row per series: its final model if evaluated, else its highest step.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from openrs_cli import jsonl
from openrs_cli.errors import OpenrsError
from openrs_cli.models import size_from_name
from openrs_cli.report.data import (
    BENCH_TITLES,
    BENCHMARKS,
    TASK_ALIASES,
    CostRow,
    ModelRow,
    Score,
    Series,
    bench_problems,
    hub_sizes,
    mean_score,
)
from openrs_cli.schema import check_schema
from openrs_cli.train.rundir import is_run_dir

_CKPT = re.compile(r"checkpoint-(\d+)")
@dataclass
class UserResult:
    path: Path
    series: str
    step: int | None
    model: str
    scores: dict[str, Score]
    time_utc: str
    run_dir: Path | None
    partial: dict[str, tuple[int, int]] = field(default_factory=dict)  # bench -> (problems scored, benchmark size)
    environment: str = ""  # where the score came from (results.json's environment, one line)


@dataclass
class UserRun:
    path: Path
    name: str
    metrics: list[dict]
    recipe: dict
    cost: dict | None
    search: dict | None = None  # the chosen checkpoint's cost beside the whole search's (cost.summary.search_cost)


@dataclass
class UserData:
    rows: list[ModelRow] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    runs: list[UserRun] = field(default_factory=list)
    cost_rows: list[CostRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def show_path(p: Path) -> str:
    """A path as the user would type it: relative to the current directory when inside it."""
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def find_results(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for p in paths:
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            hits = sorted(p.rglob("results.json"))
            if not hits:
                raise OpenrsError(f"--results {p}: no results.json in it; run `openrs eval` first or pass the "
                                  "directory that holds results.json")
            found += hits
        else:
            raise OpenrsError(f"--results {p}: no such file or directory")
    return found


def find_runs(paths: list[Path]) -> list[Path]:
    runs: list[Path] = []
    for p in paths:
        if not p.is_dir():
            raise OpenrsError(f"--runs {p}: not a directory; pass a run dir made by `openrs train`")
        if is_run_dir(p):
            runs.append(p)
            continue
        hits = sorted(c for c in p.iterdir() if is_run_dir(c))
        hits += sorted(g for c in p.iterdir() if c.is_dir() and not is_run_dir(c) for g in c.iterdir()
                       if is_run_dir(g))
        if not hits:
            raise OpenrsError(f"--runs {p}: no training run in it (a run dir holds the recipe.yaml `openrs train` "
                              "writes); pass the directory `openrs train` wrote")
        runs += hits
    return runs


def _run_of(model: str, results_path: Path) -> Path | None:
    mp = Path(model)
    if mp.exists():
        cand = mp.parent if (_CKPT.fullmatch(mp.name) or mp.name == "final") else mp
        if is_run_dir(cand):
            return cand
    for anc in list(results_path.resolve().parents)[:5]:
        if is_run_dir(anc):
            return anc
    return None


def _selected(results: list[UserResult], notes: list[str]) -> UserResult | None:
    """The result of the checkpoint `openrs eval select` chose for this series' run (RUN/select/selection.json),
    when the run has one and that checkpoint was evaluated on the test sets; else None (with a note)."""
    run_dir = next((r.run_dir for r in results if r.run_dir), None)
    if run_dir is None:
        return None
    from openrs_cli.evaluate.select import load_selection

    try:
        sel = load_selection(run_dir)
    except OpenrsError as e:
        notes.append(str(e))
        return None
    if not sel:
        return None
    want = Path(str(sel["chosen"].get("model", ""))).resolve()
    step = sel["chosen"].get("step")
    for r in results:
        if Path(r.model).exists() and Path(r.model).resolve() == want:
            return r
    for r in results:
        if step is not None and r.step == step:
            return r
    notes.append(f"{show_path(run_dir)}: `openrs eval select` chose {sel['chosen'].get('checkpoint')}, which has no "
                 f"test-set eval here; evaluate it with `openrs eval --model {sel['chosen'].get('model')}` "
                 f"(the row shows another checkpoint)")
    return None


def load_result(path: Path) -> UserResult:
    """Read one results.json written by `openrs eval` (kind "results"); bad files raise OpenrsError."""
    where = show_path(path)
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OpenrsError(f"{where}: not a readable JSON file ({e.__class__.__name__}); pass a results.json "
                          "written by `openrs eval`") from None
    if not isinstance(rec, dict):
        raise OpenrsError(f"{where}: not an openrs results record; pass a results.json written by `openrs eval`")
    check_schema(rec, "results", where)
    tasks = rec.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise OpenrsError(f"{where}: no 'tasks' in it; re-run `openrs eval` to write a complete results.json")
    scores: dict[str, Score] = {}
    partial: dict[str, tuple[int, int]] = {}
    for task, t in tasks.items():
        key = TASK_ALIASES.get(str(task).lower())
        if key is None or not isinstance(t, dict):
            continue
        p1 = t.get("pass@1")
        if p1 is None:  # nothing scored for this task (e.g. an interrupted eval)
            continue
        if not isinstance(p1, (int, float)) or not 0 <= p1 <= 1:
            raise OpenrsError(f"{where}: tasks.{task}.pass@1 = {p1!r} is not a fraction in [0, 1]")
        ci = None
        lo_hi = t.get("ci95")
        if (isinstance(lo_hi, (list, tuple)) and len(lo_hi) == 2
                and all(isinstance(v, (int, float)) and math.isfinite(v) for v in lo_hi)):
            ci = 100 * (lo_hi[1] - lo_hi[0]) / 2
        elif isinstance(t.get("stderr"), (int, float)) and math.isfinite(t["stderr"]):
            ci = 100 * 1.96 * t["stderr"]
        n, full = t.get("n_problems"), bench_problems().get(key)
        if t.get("complete") is False or ("complete" not in t and isinstance(n, int) and full and n < full):
            partial[key] = (n if isinstance(n, int) else 0, full)  # results.json's own mark; older files: by count
        of = (str(t.get("coverage") or f"{n}/{full} problems")) if key in partial else None
        scores[key] = Score(100 * p1, ci, of)
    model = str(rec.get("model") or path.parent.name)
    run_dir = _run_of(model, path)
    step = rec.get("step") if isinstance(rec.get("step"), int) else None
    if step is None and (m := _CKPT.search(model) or _CKPT.search(str(path.parent))):
        step = int(m.group(1))
    label = str(rec.get("label") or "")
    if not label or _CKPT.fullmatch(label) or label == "final":
        mp = Path(model.rstrip("/"))
        label = run_dir.name if run_dir else (mp.parent.name if (_CKPT.fullmatch(mp.name) or mp.name == "final")
                                               else mp.name)
    from openrs_cli.evaluate.environment import summary_line

    return UserResult(path=path, series=label, step=step, model=model, scores=scores,
                      time_utc=str(rec.get("time_utc", "")), run_dir=run_dir, partial=partial,
                      environment=summary_line(rec.get("environment")))


def _read_metrics(path: Path, notes: list[str]) -> list[dict]:
    log = jsonl.read_log(path)  # a run still writing, or killed mid-line: torn lines are left out
    records = []
    for rec in log.records:
        if not records:
            check_schema(rec, "metrics", show_path(path))
        if isinstance(rec.get("step"), (int, float)):
            records.append(rec)
    if bad := len(log.bad) + bool(log.torn):
        notes.append(f"{show_path(path)}: skipped {bad} unreadable line(s)")
    return records


def _cost_summary(run: Path, notes: list[str]) -> dict | None:
    if not (run / "cost").exists():
        return None
    from openrs_cli.cost import summarize_run

    try:
        return summarize_run(run)
    except OpenrsError as e:
        notes.append(f"{show_path(run)}: no cost summary ({e})")
        return None


def load_run(path: Path, notes: list[str]) -> UserRun:
    import yaml

    recipe: dict = {}
    if (path / "recipe.yaml").exists():
        try:
            recipe = yaml.safe_load((path / "recipe.yaml").read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            notes.append(f"{show_path(path)}/recipe.yaml: not valid YAML; base model and data left blank")
    cost = _cost_summary(path, notes)
    search = None
    if cost is not None and (path / "select").is_dir():
        from openrs_cli.cost.summary import search_cost

        try:
            search = search_cost(path)
        except OpenrsError as e:
            notes.append(f"{show_path(path)}: no search cost ({e})")
    return UserRun(path=path, name=path.name, metrics=_read_metrics(path / "metrics.jsonl", notes),
                   recipe=recipe if isinstance(recipe, dict) else {}, cost=cost, search=search)


def size_b(*names: str, model_dir: Path | None = None) -> float | None:
    """Parameter count in billions: a published model's hub id (models.csv), a name like `...-1.5B`, else the
    tensor sizes in local safetensors headers."""
    known = hub_sizes()
    for name in names:
        if name and name.lower() in known:
            return known[name.lower()]
    for name in names:
        if name and (found := size_from_name(name)) is not None:
            return found
    if model_dir is not None and model_dir.is_dir():
        total = 0
        for st in model_dir.glob("*.safetensors"):
            with open(st, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(n))
            for k, v in header.items():
                if k != "__metadata__":
                    numel = 1
                    for d in v.get("shape", []):
                        numel *= d
                    total += numel
        return total / 1e9 if total else None
    return None


def _cost_note(run: UserRun | None) -> str:
    """Why a model has no training cost, for the report's notes."""
    if run is None:
        return ("no training run is linked to it (evaluate `<run>/checkpoint-N`, or keep its results.json in "
                "the run dir)")
    if not run.cost:
        return f"its run {run.name} has no cost ledger summary"
    if not run.cost.get("gpu_count"):
        return f"its run {run.name} used no GPU"
    return f"its run {run.name} has no price for its GPU (see `openrs cost prices`)"


def _cost_rows(run: UserRun) -> list[CostRow]:
    """The run's Tables 3/4 row; after `openrs eval select`, its chosen checkpoint's and the whole search's too."""
    row = _cost_row(run)
    s = run.search
    if not s:
        return [row]
    import dataclasses

    def part(label: str, v: dict) -> CostRow:
        wall = v.get("wall_s")
        return dataclasses.replace(row, model=f"{run.name} ({label})", hours=wall / 3600 if wall else None,
                                   gpu_hours=v.get("gpu_hours"), cost_usd=v.get("cost_usd"))

    return [part(f"chosen: training to step {s['chosen_step']}", s["chosen"]),
            part("whole search: every step trained and every validation eval", s["whole_search"])]


def _cost_row(run: UserRun) -> CostRow:
    r, c = run.recipe, run.cost or {}
    ds, gen = r.get("dataset") or {}, r.get("generation") or {}
    data = str(ds.get("id", "")) + (f"[:{ds['limit']}]" if ds.get("limit") else "")
    rl = f"{data} x {gen['num_generations']}" if data and gen.get("num_generations") else data
    hw = ""
    if c.get("gpu_count"):
        hw = f"{c['gpu_count']}x {c.get('gpu_name') or 'GPU'}"
    elif c:
        hw = "CPU only"
    wall = c.get("wall_s")
    return CostRow(model=run.name, base_model=str((r.get("model") or {}).get("id", "")), sft_data="0", rm_data="0",
                   reward_model="None", rl_data=rl, hardware=hw, hours=wall / 3600 if wall else None,
                   gpu_hours=c.get("gpu_hours"), cost_usd=c.get("cost_usd"), source=show_path(run.path), user=True)


def collect(results_paths: list[Path], runs_paths: list[Path]) -> UserData:
    """Everything the user passed, as rows/series/runs for the report (empty when nothing was passed)."""
    out = UserData()
    runs = {p.resolve(): load_run(p, out.notes) for p in find_runs(runs_paths)}
    files = find_results(results_paths)
    for run in runs.values():
        files += sorted(run.path.rglob("results.json"))
    seen: set[Path] = set()
    merged: dict[tuple[str, int | None], UserResult] = {}
    for f in files:
        if f.resolve() in seen:
            continue
        seen.add(f.resolve())
        res = load_result(f)
        if not res.scores and f.parent.parent.name == "select":  # `openrs eval select`'s validation evals
            continue
        key = (res.series, res.step)
        if key in merged:  # same model and step evaluated in parts: merge tasks, newer file wins per task
            old = merged[key]
            first, second = (old, res) if old.time_utc <= res.time_utc else (res, old)
            res.scores = {**first.scores, **second.scores}
            res.partial = {k: v for k, v in {**first.partial, **second.partial}.items()
                           if k not in second.scores or k in second.partial}
            res.path = second.path
            res.run_dir = res.run_dir or old.run_dir
        merged[key] = res
        if res.run_dir and res.run_dir.resolve() not in runs:
            runs[res.run_dir.resolve()] = load_run(res.run_dir, out.notes)
    names: set[str] = set()
    for run in runs.values():  # two runs called the same: name them by their parent too
        if run.name in names:
            run.name = f"{run.path.parent.name}/{run.name}"
        names.add(run.name)
    out.runs = list(runs.values())
    out.cost_rows = [row for r in out.runs if r.cost or r.recipe for row in _cost_rows(r)]
    by_series: dict[str, list[UserResult]] = {}
    for res in merged.values():
        by_series.setdefault(res.series, []).append(res)
    for name, results in by_series.items():
        results.sort(key=lambda r: (r.step is None, r.step or 0))
        chosen = results[-1]  # the final model if evaluated, else the highest step
        picked = _selected(results, out.notes)  # ... unless `openrs eval select` chose one on validation data
        chosen = picked or chosen
        if not chosen.scores:
            out.notes.append(f"{show_path(chosen.path)}: none of its tasks is a Table 2 benchmark; not in the table")
            continue
        title = name if len(results) == 1 else f"{name} ({'final' if chosen.step is None else f'step {chosen.step}'})"
        if picked is not None:
            title += " [selected on validation]"
        if chosen.partial:  # a --limit eval is not a benchmark score: marked, and never averaged
            title += " [subset]"
            out.notes.append(f"{title}: scored on a subset of the benchmark ("
                             + ", ".join(f"{BENCH_TITLES[k]} {n} of {full} problems"
                                         for k, (n, full) in sorted(chosen.partial.items()))
                             + "), not comparable with the full-benchmark numbers beside it; no average computed")
        run = runs.get(chosen.run_dir.resolve()) if chosen.run_dir else None
        base = str(((run.recipe.get("model") or {}).get("id", "")) if run else "")
        out.rows.append(ModelRow(
            group="Yours", model=title, scores=chosen.scores, source=show_path(chosen.path),
            avg=None if chosen.partial else mean_score(chosen.scores, [k for k, _ in BENCHMARKS]),
            size_b=size_b(name, chosen.model, base, model_dir=Path(chosen.model)),
            cost_usd=(run.cost or {}).get("cost_usd") if run else None, user=True, run_dir=chosen.run_dir,
            extra={"series": name, "cost_note": _cost_note(run), "environment": chosen.environment},
        ))
        points = [(r.step, r.scores) for r in results if r.step is not None]
        if len(points) >= 2:
            out.series.append(Series(name=name, points=points, user=True))
    return out
