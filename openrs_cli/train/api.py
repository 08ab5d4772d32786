"""`openrs train` as one library call: resolve the recipe, plan the launch, prepare the run directory,
run the plan with the cost sampler around it, and report progress through a callback (no printing here).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from openrs_cli.errors import OpenrsError, RunDirError
from openrs_cli.models import check_model_ref
from openrs_cli.recipes import load_recipe
from openrs_cli.tiny import TINY_ID
from openrs_cli.train import rundir
from openrs_cli.train.config import check_recipe, flash_attn_missing
from openrs_cli.train.launch import LaunchPlan, MultiNode, detect_gpus, plan_launch
from openrs_cli.train.run import Runner, popen_runner, run_plan

VERSIONED = ("torch", "transformers", "trl", "accelerate", "deepspeed", "datasets", "vllm", "math-verify",
             "nvidia-ml-py")


@dataclass
class TrainResult:
    plan: LaunchPlan
    returncode: int | None = None  # None for a dry run
    resumed_from: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        return Path(self.plan.run_dir)

    @property
    def log_path(self) -> Path:
        return self.run_dir / "logs" / "train.log"


def versions() -> dict:
    from openrs_cli.versions import versions as installed

    return {"python": platform.python_version(), **installed(VERSIONED)}


def train(recipe: str, overrides: list[str] | None = None, *, run_dir: str | Path | None = None,
          resume: bool = False, overwrite: bool = False, dry_run: bool = False, gpus: int | None = None,
          multinode: MultiNode = MultiNode(), cost: bool = True, runner: Runner = popen_runner,
          on_event: Callable[[str, dict], None] | None = None) -> TrainResult:
    """Plan (and unless dry_run, run) a training run. Raises OpenrsError for bad input."""
    emit = on_event or (lambda kind, data: None)
    overrides = list(overrides or [])
    if resume and overwrite:
        raise OpenrsError("--resume and --overwrite contradict each other; pass one of them")
    rank, joined = multinode.machine_rank, None
    if rank and overwrite:
        raise RunDirError(f"only machine rank 0 may --overwrite the run directory; machine rank {rank} joins the run "
                          f"machine 0 makes: drop --overwrite on this machine")
    if rank and not dry_run:  # wait for machine 0 to make (or resume) the run on the shared filesystem
        base = load_recipe(recipe, overrides)
        joined = rundir.wait_for_run(Path(run_dir) if run_dir else rundir.default_run_dir(base), rank,
                                     os.environ.get("OPENRS_LAUNCH_ID"), base.generation.vllm_server_timeout)
    if resume:
        base = load_recipe(recipe, overrides)
        rd = Path(run_dir) if run_dir else rundir.default_run_dir(base)
        if not rd.is_dir():
            raise RunDirError(f"cannot resume: run directory {rd} does not exist; start it without --resume")
        resolved = load_recipe(str(rd / "recipe.yaml"), overrides)
    else:
        resolved = load_recipe(recipe, overrides)
        rd = Path(run_dir) if run_dir else rundir.default_run_dir(resolved)
    if run_dir:
        resolved = resolved.model_copy(update={"output": resolved.output.model_copy(update={"output_dir": str(rd)})})
    if resume:  # a run directory's recipe.yaml lists every value; it was checked when the run began
        check_model_ref(resolved.model.id)
    else:  # the same checks as `openrs recipes validate`
        check_recipe(resolved, recipe, overrides)
    detected = detect_gpus()
    n_gpus = len(detected) if gpus is None else gpus
    if gpus is not None and gpus > len(detected) and not dry_run:
        raise OpenrsError(f"--gpus {gpus} but this machine has {len(detected)} GPU(s); --gpus plans for another "
                          f"machine: use it with --dry-run")
    if joined is not None:  # the checkpoint machine 0 resumes from, so that every machine takes the same one
        resume_from = Path(joined["resume_from"]) if joined.get("resume_from") else None
    else:
        resume_from = rundir.prepare_resume(rd) if resume else None
    plan = plan_launch(resolved, rd, gpus=n_gpus, multinode=multinode, resume_from=resume_from,
                       extra_env=None, visible_devices=None if dry_run and gpus is not None
                       else os.environ.get("CUDA_VISIBLE_DEVICES"),
                       device_order=os.environ.get("CUDA_DEVICE_ORDER"), cli_keys=_cli_keys(overrides, rd, resume))
    if resume_from:
        _check_world_size(Path(resume_from), plan)
    if not cost:
        plan = _with_worker_flag(plan, "--no-cost")
    from openrs_cli.train.config import check_against_trl

    check_against_trl(plan.grpo)
    missing = flash_attn_missing(resolved)
    if missing and not dry_run:  # before the run directory exists: the model load would fail mid-launch
        raise OpenrsError(missing)
    if missing:
        plan = replace(plan, notes=plan.notes + (missing,))
    result = TrainResult(plan, resumed_from=str(resume_from) if resume_from else None)
    if dry_run:
        return result

    if rank:  # machine 0 prepared the directory, moved the redone steps' records and wrote launch.json
        lock_fd = rundir.lock_run_dir(rd, rank)
        if resume or resume_from:
            emit("resume", {"checkpoint": str(resume_from) if resume_from else None,
                            "step": rundir.checkpoint_step(resume_from) if resume_from else 0})
    elif resume:
        lock_fd = rundir.lock_run_dir(rd)
        step = rundir.checkpoint_step(resume_from) if resume_from else 0
        for name in ("metrics.jsonl", "completions.jsonl"):
            dropped = rundir.truncate_jsonl_after(rd / name, step)
            if dropped:
                result.notes.append(f"{dropped} {name} record(s) after step {step} moved to "
                                    f"{name.replace('.jsonl', '.discarded.jsonl')} (those steps are redone)")
        if overrides:  # the worker reads recipe.yaml: without this it would train with the old values
            rundir.write_atomic(rd / "recipe.yaml", rundir.recipe_yaml_text(resolved))
            result.notes.append(f"recipe.yaml updated for this resume: {' '.join(overrides)}")
        emit("resume", {"checkpoint": str(resume_from) if resume_from else None, "step": step})
    else:
        busy = rundir.lock_run_dir(rd) if rd.is_dir() else None  # never replace a directory a run is using
        rundir.prepare_new(rd, resolved, overwrite=overwrite)
        if busy is not None:
            os.close(busy)
        lock_fd = rundir.lock_run_dir(rd)
    recipe_text = (rd / "recipe.yaml").read_bytes()
    if not rank:  # one launch.json per run: machine 0's, which every machine's workers read
        rundir.write_launch_json(rd, {
            "recipe": resolved.name, "recipe_sha256": hashlib.sha256(recipe_text).hexdigest(),
            "run_dir": str(rd), "resume_from": result.resumed_from, "overrides": overrides, "gpus": detected,
            "versions": versions(), "launch_id": os.environ.get("OPENRS_LAUNCH_ID"),
            **{k: v for k, v in plan.to_dict().items() if k not in ("run_dir", "recipe_name", "resume_from")},
        })
    monitor = None
    if cost:
        try:
            from openrs_cli.cost import open_monitor

            allocated = list(plan.placement.train_gpus + plan.placement.vllm_gpus)  # CPU: [], bills no GPU
            monitor = open_monitor(rd, kind="train", gpu_indices=allocated)
        except Exception as e:  # cost accounting must never stop training
            result.notes.append(f"cost sampler disabled: {e}")
    if plan.command("vllm") and resolved.model.id == TINY_ID:
        from openrs_cli.tiny import ensure_tiny_model

        ensure_tiny_model()  # the server loads the tiny model's directory before the worker would build it
    if runner is popen_runner:  # the children inherit the lock: it lives exactly as long as any of them
        runner = functools.partial(popen_runner, pass_fds=(lock_fd,))
    status = "error"
    try:
        result.returncode = run_plan(plan, runner=runner, on_event=emit)
        status = "ok" if result.returncode == 0 else "error"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        os.close(lock_fd)
        if monitor is not None:
            monitor.close(status)
    return result


def _check_world_size(ckpt: Path, plan: LaunchPlan) -> None:
    """A checkpoint resumes only with the number of training processes that saved it: ZeRO's optimizer shards and
    the per-process RNG states are one per process, and another count would change the global batch."""
    saved, p = rundir.checkpoint_world_size(ckpt), plan.placement
    if saved is None or saved == p.num_processes:
        return
    if p.mode.startswith("cpu"):
        fix = f"on CPU a run has one process: resume it on GPUs (launch.cpu=false launch.num_processes={saved})"
    elif saved % p.num_machines == 0:
        fix = f"launch.num_processes={saved // p.num_machines} on {p.num_machines} machine(s)"
    else:
        fix = f"machines x launch.num_processes = {saved} (--num-machines, or --nodes with --slurm)"
    raise RunDirError(f"{ckpt} was saved by {saved} training process(es) but this launch has {p.num_processes} "
                      f"({p.num_machines} machine(s) x {p.processes_per_machine}); resume with {saved}: {fix}")


def _cli_keys(overrides: list[str], rd: Path, resume: bool) -> frozenset[str]:
    """Recipe keys set on the command line: this launch's overrides and, on --resume, those of the run's earlier
    launches (launch.json), so a resumed run keeps what its first launch was told."""
    given = list(overrides)
    if resume:
        try:
            launch = json.loads((rd / "launch.json").read_text(encoding="utf-8"))
            for earlier in [launch, *launch.get("history", [])]:
                given += earlier.get("overrides") or []
        except (OSError, ValueError, AttributeError):  # no or unreadable launch.json: this launch's overrides only
            pass
    return frozenset(o.split("=", 1)[0].strip() for o in given if isinstance(o, str))


def _with_worker_flag(plan: LaunchPlan, flag: str) -> LaunchPlan:
    from dataclasses import replace

    cmds = tuple(replace(c, argv=c.argv + (flag,)) if c.role == "train" else c for c in plan.commands)
    return replace(plan, commands=cmds)
