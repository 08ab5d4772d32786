"""Grading saved completions and turning verdicts into per-task metrics, with no model involved.

`score_file` re-grades any JSONL of {"id", "completion", "sample"?, "task"?} records (openrs's own
generations.jsonl included) against the bundled gold answers; `compare_results` runs a paired bootstrap
between two results.json files over the problems they share.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from openrs_cli import jsonl
from openrs_cli.errors import DataError, TaskError
from openrs_cli.evaluate import metrics
from openrs_cli.evaluate.tasks import TaskSpec, get_task, load_task, task_for_id


def grade_pairs(task: TaskSpec, pairs: Sequence[tuple[str, str]]) -> list:
    """GradeResults for (completion, gold) pairs with the task's paper grader (ordered like the input)."""
    from openrs_cli import grading

    if not pairs:
        return []
    return grading.grade_many(list(pairs), task.grader_config())


def task_results(records: list[dict], seed: int = 0) -> dict:
    """Per-task metrics from graded records ({task, id, sample, correct, pred})."""
    by_task: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in sorted(records, key=lambda r: (r["task"], str(r["id"]), int(r.get("sample", 0) or 0))):
        by_task[r["task"]][str(r["id"])].append((bool(r["correct"]), r.get("pred")))
    out = {}
    for t, per in by_task.items():
        m = metrics.task_metrics(per, seed=seed)
        spec = get_task(t)
        m["task_version"] = spec.version
        m["verdicts"] = dict(sorted(_count(r.get("verdict") for r in records if r["task"] == t).items()))
        out[t] = m
    return out


def _count(xs) -> dict:
    c: dict = defaultdict(int)
    for x in xs:
        c[str(x)] += 1
    return c


def read_jsonl_records(path: Path) -> list[dict]:
    """Records of a JSONL file; a torn last line is ignored, any other bad line is an error."""
    hint = "pass a JSONL of {id, completion, sample?} records"
    if not path.is_file():
        raise DataError(f"{path}: no such file; {hint}")
    out = []
    for i, rec in jsonl.numbered_objects(jsonl.read_utf8(path, hint), path, hint, torn_tail_ok=True):
        if "id" not in rec or "completion" not in rec:
            raise DataError(f"{path}:{i}: each record needs 'id' and 'completion' (and optionally 'sample', 'task')")
        sample = rec.get("sample")
        if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample < 0):
            raise DataError(f"{path}:{i}: 'sample' must be a sample index (0, 1, ...), got {sample!r}")
        if rec.get("task") is not None and not isinstance(rec["task"], str):
            raise DataError(f"{path}:{i}: 'task' must be a task name such as \"aime24\", got {rec['task']!r}")
        out.append(rec)
    return out


def score_records(records: list[dict], task: str | None = None, data: str = "bundled",
                  on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Re-grade {id, completion, sample?, task?} records; returns {"tasks": {...}, "average": {...}, "graded": [...]}."""
    forced = get_task(task) if task else None
    golds: dict[str, dict[str, str]] = {}
    groups: dict[str, list[dict]] = defaultdict(list)
    seen: set = set()
    unnumbered: dict[tuple[str, str], int] = defaultdict(int)  # records without "sample": numbered in file order
    for r in records:
        spec = forced or (get_task(r["task"]) if r.get("task") else task_for_id(str(r["id"])))
        if spec is None:
            raise TaskError(f"cannot tell the task of id '{r['id']}'; pass --task (valid: aime24, amc23, math_500, "
                            f"minerva, olympiadbench)")
        if r.get("sample") is None:
            sample = unnumbered[(spec.name, str(r["id"]))]
            unnumbered[(spec.name, str(r["id"]))] += 1
        else:
            sample = int(r["sample"])
        key = (spec.name, str(r["id"]), sample)
        if key in seen:
            continue  # first record of a (task, id, sample) wins, as in generations.jsonl
        seen.add(key)
        if spec.name not in golds:
            golds[spec.name] = {p.id: p.gold for p in load_task(spec, data).problems}
        if str(r["id"]) not in golds[spec.name]:
            raise DataError(f"id '{r['id']}' is not a problem of task {spec.name}; ids are those of the bundled "
                            f"files (e.g. aime24-67, test/algebra/2584.json)")
        saved = r.get("gold")
        if isinstance(saved, str) and saved != golds[spec.name][str(r["id"])]:
            raise DataError(f"id '{r['id']}' was generated against another gold than --data {data} holds for it "
                            f"(the eval used other data); pass the eval's --data")
        groups[spec.name].append({**r, "task": spec.name, "sample": key[2]})
    graded: list[dict] = []
    total, done = sum(len(v) for v in groups.values()), 0
    for name, recs in groups.items():
        spec = get_task(name)
        res = grade_pairs(spec, [(str(r["completion"]), golds[name][str(r["id"])]) for r in recs])
        for r, g in zip(recs, res, strict=True):
            graded.append({"task": name, "id": str(r["id"]), "sample": r["sample"], "pred": g.pred,
                           "verdict": g.verdict.value, "correct": g.correct})
        done += len(recs)
        if on_progress:
            on_progress(done, total)
    tasks = task_results(graded)
    for name, t in tasks.items():  # records of only some problems are a partial score, never averaged
        full = get_task(name).n_problems
        t.update(benchmark_problems=full, complete=t["n_problems"] >= full and data in ("bundled", "hub"),
                 coverage=f"{t['n_problems']}/{full} problems")
    return {"tasks": tasks, "average": metrics.average(tasks), "graded": graded}


def score_file(path: str | Path, task: str | None = None, data: str = "bundled",
               on_progress: Callable[[int, int], None] | None = None) -> dict:
    return score_records(read_jsonl_records(Path(path)), task, data, on_progress)


def _per_problem(res: dict, task: str) -> dict:
    """{id: [correct, n]} of one task of a results dict; a malformed one is an error naming the task."""
    pp = (res["tasks"][task] or {}).get("per_problem") or {}
    ok = isinstance(pp, dict) and all(
        isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v) and 0 <= v[0] <= v[1] and v[1] > 0
        for v in pp.values())
    if not ok:
        raise TaskError(f"results of '{res.get('label')}': tasks.{task}.per_problem is not {{id: [correct, samples]}}; "
                        f"was results.json edited? rerun `openrs eval` to rewrite it")
    return pp


def compare_results(a: dict, b: dict, seed: int = 0) -> dict:
    """Paired bootstrap of pass@1 (per-problem mean over samples) for every task both results share."""
    out = {}
    for t in a.get("tasks", {}):
        if t not in b.get("tasks", {}):
            continue
        pa, pb = _per_problem(a, t), _per_problem(b, t)
        common = [pid for pid in pa if pid in pb]
        if not common:  # e.g. hub ids vs bundled ids: nothing to pair, not "inside noise"
            continue
        sa = [pa[p][0] / pa[p][1] for p in common]
        sb = [pb[p][0] / pb[p][1] for p in common]
        if any(pa[p][1] > 1 or pb[p][1] > 1 for p in common):  # several seeds: resample problems and seeds
            res = metrics.paired_bootstrap_seeds([tuple(pa[p]) for p in common], [tuple(pb[p]) for p in common],
                                                 resamples=2000, seed=seed)
        else:
            res = metrics.paired_bootstrap(sa, sb, seed=seed)
            res["levels"] = "problems"
        res.update({"a": metrics.mean(sa) if sa else None, "b": metrics.mean(sb) if sb else None})
        out[t] = res
    if not out:
        raise TaskError("the two results share no task with common problems; compare evals of the same tasks "
                        "and the same --data")
    return out
