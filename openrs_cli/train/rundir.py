"""The run directory: creation rules, the resolved recipe.yaml, launch.json, and checkpoint discovery.

Layout: recipe.yaml, launch.json, checkpoint-*/, metrics.jsonl, completions.jsonl, cost/, final/,
logs/. A new run never replaces an existing non-empty directory unless asked (`overwrite=True`); `--resume`
continues from the newest *complete* checkpoint (trainer_state.json is written last by transformers, so a
checkpoint killed mid-save is skipped).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from pathlib import Path

from openrs_cli import jsonl
from openrs_cli.errors import RunDirError
from openrs_cli.files import write_atomic, write_json_atomic
from openrs_cli.recipes import recipe_to_yaml
from openrs_cli.recipes.schema import Recipe
from openrs_cli.schema import SCHEMA_VERSIONS, header, record

_CKPT = re.compile(r"^checkpoint-(\d+)$")
_RNG = re.compile(r"^rng_state(?:_(\d+))?\.pth$")
_ZERO = re.compile(r"^zero_pp_rank_(\d+)_mp_rank_\d+_optim_states\.pt$")
SBATCH_NAME = "train.sbatch"  # written by `openrs train --slurm` before the job makes the run


def default_run_dir(recipe: Recipe) -> Path:
    return Path(recipe.output.output_dir or Path("runs") / recipe.name)


def recipe_yaml_text(recipe: Recipe) -> str:
    h = header("recipe")
    lines = [f"# openrs resolved recipe: kind={h['kind']} schema_version={SCHEMA_VERSIONS['recipe']} "
             f"openrs_version={h['openrs_version']} git_hash={h['git_hash']} time_utc={h['time_utc']}",
             "# Everything the run used, defaults included. Re-run with: openrs train <this file>"]
    return "\n".join(lines) + "\n" + recipe_to_yaml(recipe)


def prepare_new(run_dir: Path, recipe: Recipe, *, overwrite: bool) -> None:
    """Create `run_dir` for a fresh run and write recipe.yaml into it."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} is a file; pass --run-dir with a directory path")
    if run_dir.is_dir() and any(not p.name.startswith(".openrs.lock") for p in run_dir.iterdir()):
        if not overwrite:
            raise RunDirError(
                f"run directory {run_dir} already exists; continue it with --resume, replace it with --overwrite, "
                f"or choose another with --run-dir"
            )
        if not is_run_dir(run_dir):  # --overwrite replaces a run, never a directory openrs did not make
            raise RunDirError(
                f"run directory {run_dir} exists and is not an openrs run directory (no recipe.yaml written by "
                f"openrs train); --overwrite will not delete it, choose another --run-dir"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(run_dir / "recipe.yaml", recipe_yaml_text(recipe))


def is_run_dir(run_dir: Path) -> bool:
    """True when `run_dir` holds the recipe.yaml that `prepare_new` writes (its first line is openrs's header)."""
    try:
        with open(run_dir / "recipe.yaml", encoding="utf-8") as f:
            return f.readline().startswith("# openrs resolved recipe")
    except (OSError, UnicodeDecodeError):
        return False


def lock_run_dir(run_dir: Path, machine_rank: int = 0) -> int:
    """An exclusive lock on <run_dir>/.openrs.lock (held by openrs train and its children); returns the fd.

    Machine rank r > 0 of a multi-machine run locks .openrs.lock.r instead: on a shared filesystem the lock may
    span nodes (NFS turns flock into a cluster-wide lock), and the other ranks join machine 0's run."""
    name = ".openrs.lock" + (f".{machine_rank}" if machine_rank else "")
    fd = os.open(run_dir / name, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise RunDirError(f"run directory {run_dir} is in use by another openrs train (or its leftover worker "
                          f"processes); wait for it to end or stop it first") from None
    return fd


def checkpoint_step(path: Path) -> int | None:
    m = _CKPT.match(path.name)
    return int(m.group(1)) if m else None


def is_complete(ckpt: Path) -> bool:
    """A checkpoint holds weights, optimizer state and a readable trainer_state.json for its own step."""
    step = checkpoint_step(ckpt)
    try:
        state = json.loads((ckpt / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    if step is None or state.get("global_step") != step:
        return False
    names = {p.name for p in ckpt.iterdir()}
    has_weights = any(n.endswith((".safetensors", ".bin")) or n.endswith(".index.json") for n in names)
    has_optim = "optimizer.pt" in names or any(n.startswith("global_step") for n in names)
    return has_weights and has_optim


def newest_complete_checkpoint(run_dir: Path) -> Path | None:
    ckpts = sorted((p for p in run_dir.glob("checkpoint-*") if p.is_dir() and checkpoint_step(p) is not None),
                   key=checkpoint_step, reverse=True)
    return next((c for c in ckpts if is_complete(c)), None)


def prepare_resume(run_dir: Path) -> Path | None:
    """Check `run_dir` can be resumed; return the checkpoint to resume from (None = start from step 0)."""
    if not (run_dir / "recipe.yaml").is_file():
        raise RunDirError(f"cannot resume {run_dir}: it has no recipe.yaml (not an openrs run directory); "
                          f"start a new run without --resume")
    if (run_dir / "final").is_dir() and (run_dir / "final" / "config.json").is_file():
        raise RunDirError(f"run {run_dir} already finished (final/ exists); raise optim.max_steps in a new run "
                          f"or evaluate it with openrs eval --model {run_dir / 'final'}")
    return newest_complete_checkpoint(run_dir)


def truncate_jsonl_after(path: Path, step: int) -> int:
    """Keep records with step <= `step` (records of steps a resumed run redoes move to <name>.discarded.jsonl)."""
    if not path.is_file():
        return 0
    keep, drop = [], []
    for rec in jsonl.read_log(path).records:  # a line cut by the kill is left out
        rec_step = rec.get("step", 0)
        if not isinstance(rec_step, int | float):
            rec_step = 0
        (keep if rec_step <= step else drop).append(rec)
    if drop:
        jsonl.append(path.with_suffix(".discarded.jsonl"), drop)
    jsonl.write_all(path, keep)
    return len(drop)


def write_launch_json(run_dir: Path, launch: dict) -> None:
    """launch.json holds the latest launch on top and earlier launches (resumes) under `history`."""
    path = run_dir / "launch.json"
    history = []
    if path.is_file():
        try:
            old = json.loads(path.read_text())
            history = old.pop("history", [])
            history.append(old)
        except ValueError:
            pass
    write_json_atomic(path, record("launch", **launch, history=history))


def checkpoint_world_size(ckpt: Path) -> int | None:
    """How many training processes saved `ckpt`: transformers writes rng_state.pth alone (one process) or
    rng_state_<process index>.pth per process; DeepSpeed writes one zero_pp_rank_<dp rank>_..._optim_states.pt
    per data-parallel rank under global_step<N>/. None when neither is there."""
    names = [p.name for p in ckpt.iterdir()] if ckpt.is_dir() else []
    ranks = {int(m.group(1) or 0) for m in map(_RNG.match, names) if m}
    for sub in ckpt.glob("global_step*"):
        if sub.is_dir():
            ranks |= {int(m.group(1)) for m in map(_ZERO.match, (q.name for q in sub.iterdir())) if m}
    return max(ranks) + 1 if ranks else None


def wait_for_run(run_dir: Path, machine_rank: int, launch_id: str | None, timeout_s: float,
                 poll_s: float = 1.0) -> dict | None:
    """Machine rank > 0 joins the run machine 0 creates: wait for its recipe.yaml and, when the launch has an id
    (OPENRS_LAUNCH_ID, set by openrs's Slurm script per job and requeue), for the launch.json machine 0 wrote for
    that id, which is returned (its resume_from is the checkpoint every machine resumes from)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        launch = None
        if (run_dir / "recipe.yaml").is_file():
            if launch_id is None:
                return None
            try:
                launch = json.loads((run_dir / "launch.json").read_text())
            except (OSError, ValueError):
                pass
            if isinstance(launch, dict) and launch.get("launch_id") == launch_id:
                return launch
        if time.monotonic() >= deadline:
            what = f"its launch.json for launch {launch_id}" if launch_id else "its recipe.yaml"
            raise RunDirError(
                f"machine rank {machine_rank}: machine 0 did not write {what} in {run_dir} within {timeout_s:g} s; "
                f"start machine 0 too, and put --run-dir on a filesystem every machine shares")
        time.sleep(poll_s)
