"""`openrs eval select RUN`: choose a run's checkpoint without looking at a test set.

Every complete checkpoint of the run (and its `final/`) is scored on the validation split (evalsets `validation`,
carved from the training sample and decontaminated against the five test sets), each eval in
`RUN/select/<checkpoint>/` (resumable like any `openrs eval`). The rule, stated in `RUN/select/selection.json`:
the highest validation pass@1 wins; a tie goes to the fewest training steps (the cheaper model). selection.json
records every checkpoint x benchmark that was looked at; the report then shows the test scores of the chosen
checkpoint, and `openrs cost summary` its cost beside the whole search's.
"""

from __future__ import annotations

import json
from pathlib import Path

from openrs_cli.errors import OpenrsError, RunDirError
from openrs_cli.files import write_json_atomic
from openrs_cli.schema import check_schema, record

RULE = ("highest validation pass@1 (mean over samples and problems); a tie goes to the checkpoint with the fewest "
        "training steps")
SELECTION = "selection.json"


def candidates(run_dir: Path) -> list[tuple[str, int | None, Path]]:
    """(name, step, path) of every complete checkpoint, then `final` (its step from the newest checkpoint's
    trainer_state, when there is one), in training order."""
    from openrs_cli.train.rundir import checkpoint_step, is_complete

    ckpts = sorted((p for p in run_dir.glob("checkpoint-*") if p.is_dir() and checkpoint_step(p) is not None),
                   key=checkpoint_step)
    out: list[tuple[str, int | None, Path]] = [(p.name, checkpoint_step(p), p) for p in ckpts if is_complete(p)]
    final = run_dir / "final"
    if (final / "config.json").is_file():
        step = _final_step(run_dir, out)
        if not any(s == step for _, s, _ in out) or step is None:
            out.append(("final", step, final))
    return out


def _final_step(run_dir: Path, ckpts) -> int | None:
    from openrs_cli.train.config import planned_grpo

    try:
        return int(planned_grpo(run_dir)["max_steps"])
    except (RunDirError, KeyError, TypeError, ValueError):
        return ckpts[-1][1] if ckpts else None


def choose(scored: list[dict]) -> dict:
    """The candidate the rule picks (scored: {checkpoint, step, pass@1, ...})."""
    ok = [c for c in scored if c.get("pass@1") is not None]
    if not ok:
        raise OpenrsError("no checkpoint could be scored on the validation split")
    return min(ok, key=lambda c: (-c["pass@1"], c["step"] if c["step"] is not None else float("inf")))


def select(run_dir: str | Path, *, samples: int = 4, limit: int | None = None, max_new_tokens: int = 4096,
           temperature: float = 0.6, top_p: float = 0.95, seed: int = 1234, backend: str = "auto",
           batch_size: int | None = None, cost: bool = True, on_progress=None) -> dict:
    """Score every checkpoint of `run_dir` on the validation split, write and return selection.json."""
    from openrs_cli.evaluate.runner import EvalConfig, run_eval
    from openrs_cli.train.rundir import is_run_dir

    rd = Path(run_dir)
    if not is_run_dir(rd):
        raise RunDirError(f"{run_dir}: not a run directory made by `openrs train` (no recipe.yaml it wrote); pass "
                          f"the run's directory, e.g. runs/<name>")
    cands = candidates(rd)
    if not cands:
        raise RunDirError(f"{run_dir}: no complete checkpoint and no final/ model to choose from; train first "
                          f"(`openrs train`), with output.save_steps below max_steps")
    scored, looked_at = [], []
    for name, step, path in cands:
        res = run_eval(EvalConfig(model=str(path), tasks="validation", samples=samples, limit=limit,
                                  max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
                                  backend=backend, batch_size=batch_size, out_dir=str(rd / "select" / name),
                                  cost=cost, label=f"{rd.name}/{name}"), on_progress=on_progress)
        t = res["tasks"].get("validation", {})
        scored.append({"checkpoint": name, "step": step, "model": str(path), "pass@1": t.get("pass@1"),
                       "ci95": t.get("ci95"), "n_problems": t.get("n_problems"), "samples": t.get("samples"),
                       "results": str(rd / "select" / name / "results.json")})
        looked_at += [{"checkpoint": name, "benchmark": task} for task in res["tasks"]]
    chosen = choose(scored)
    sel = record("selection", run_dir=str(rd), rule=RULE, split="validation", candidates=scored,
                 chosen=chosen, looked_at=looked_at,
                 settings={"samples": samples, "limit": limit, "max_new_tokens": max_new_tokens,
                           "temperature": temperature, "top_p": top_p, "seed": seed})
    write_json_atomic(rd / "select" / SELECTION, sel)
    return sel


def load_selection(run_dir: str | Path) -> dict | None:
    """RUN/select/selection.json, or None when the run was never selected on."""
    p = Path(run_dir) / "select" / SELECTION
    if not p.is_file():
        return None
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise RunDirError(f"{p}: not readable JSON; rerun `openrs eval select {run_dir}`") from None
    check_schema(rec, "selection", str(p))
    return rec
