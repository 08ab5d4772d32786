"""`openrs eval ... --slurm`: the eval as a Slurm job array, one array task per (benchmark, shard of its problems),
and `openrs eval merge DIR`, which the array's last step runs (a job that depends on the array) and a person can
run by hand.

Layout of DIR (the eval's output directory): `eval.sbatch` (the array), `merge.sbatch` (the last step),
`slurm.json` (the eval's settings and the shards), `shards/<task>-<i>/` (each array task's own eval directory:
generations.jsonl, results.json, cost ledger), `logs/`. Each array task is an ordinary `openrs eval ... --shard
i/N --out DIR/shards/<task>-<i>`, so a requeued task resumes. A sample's seed depends only on (task, problem,
sample index, seed), so the shards generate the samples one machine would; `merge` gathers them into DIR's
generations.jsonl and results.json exactly as one machine writes them, and the shards' cost ledgers into DIR/cost.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

from openrs_cli.errors import OpenrsError, RunDirError
from openrs_cli.files import write_atomic, write_json_atomic
from openrs_cli.schema import check_schema, record
from openrs_cli.train.slurm import directives

SETTINGS = "slurm.json"


def shard_names(tasks: list[str], shards: int) -> list[tuple[str, int]]:
    return [(t, i) for t in tasks for i in range(shards)]


def array_script(*, out_dir: str, workdir: str, eval_argv: list[str], tasks: list[str], shards: int,
                 gpus: int = 0, partition: str | None = None, time: str | None = None, account: str | None = None,
                 sbatch_args: tuple[str, ...] = (), header: str = "") -> str:
    """The array job's text (pure): task k runs `eval_argv --tasks T --shard i/N --out DIR/shards/T-i`."""
    q = shlex.quote
    units = shard_names(tasks, shards)
    sb = ["--job-name=openrs-eval", f"--array=0-{len(units) - 1}", "--ntasks=1", f"--chdir={workdir}",
          f"--output={out_dir}/logs/slurm-%A_%a.out", "--open-mode=append", "--requeue"]
    if gpus:
        sb.append(f"--gres=gpu:{gpus}")
    lines = ["#!/bin/bash", *directives(sb, partition=partition, time=time, account=account, extra=sbatch_args)]
    lines += [f"# {line}" for line in header.splitlines()]
    lines += [
        f"# {len(units)} array task(s): {len(tasks)} benchmark(s) x {shards} shard(s) of their problems. A requeued",
        "# task reruns the same `openrs eval`, which resumes from its saved samples. The merge job",
        "# (merge.sbatch, submitted with --dependency=afterok on this array) writes DIR/results.json.",
        "set -uo pipefail",
        "TASKS=(" + " ".join(q(t) for t, _ in units) + ")",
        "SHARDS=(" + " ".join(str(i) for _, i in units) + ")",
        'k="$SLURM_ARRAY_TASK_ID"',
        f'mkdir -p {q(out_dir)}/shards',
        "exec " + " ".join(q(a) for a in eval_argv) + f' --tasks "${{TASKS[$k]}}" --shard "${{SHARDS[$k]}}/{shards}"'
        + f' --out {q(out_dir)}/shards/"${{TASKS[$k]}}-${{SHARDS[$k]}}"',
    ]
    return "\n".join(lines) + "\n"


def merge_script(*, out_dir: str, workdir: str, merge_argv: list[str], partition: str | None = None,
                 time: str | None = None, account: str | None = None, sbatch_args: tuple[str, ...] = ()) -> str:
    q = shlex.quote
    sb = ["--job-name=openrs-eval-merge", "--ntasks=1", f"--chdir={workdir}",
          f"--output={out_dir}/logs/slurm-merge-%j.out", "--open-mode=append"]
    lines = ["#!/bin/bash", *directives(sb, partition=partition, time=time, account=account, extra=sbatch_args),
             "# the array's last step: gather the shards into results.json (also by hand: openrs eval merge DIR)",
             "set -uo pipefail", "exec " + " ".join(q(a) for a in merge_argv) + f" {q(out_dir)}"]
    return "\n".join(lines) + "\n"


@dataclasses.dataclass
class EvalJob:
    array: str
    merge: str
    out_dir: Path
    settings: dict
    array_path: Path | None = None
    merge_path: Path | None = None
    array_id: str | None = None
    merge_id: str | None = None


def eval_job(cfg, eval_argv: list[str], *, shards: int = 1, gpus: int = 0, partition: str | None = None,
             time: str | None = None, account: str | None = None, sbatch_args: tuple[str, ...] = (),
             dry_run: bool = False, submit_job: bool = False, command_line: str = "", runner=None) -> EvalJob:
    """Plan an eval as a job array; unless dry_run, write DIR/eval.sbatch, DIR/merge.sbatch and DIR/slurm.json;
    with submit_job, sbatch the array and the merge job that waits for it."""
    import subprocess

    from openrs_cli.evaluate import store
    from openrs_cli.evaluate.fingerprint import normalise_model
    from openrs_cli.evaluate.tasks import parse_tasks
    from openrs_cli.models import check_model_ref
    from openrs_cli.train.slurm import openrs_argv, submit

    if shards < 1:
        raise OpenrsError(f"--shards must be >= 1 (got {shards})")
    if cfg.engine != "openrs":
        raise OpenrsError("--slurm runs the openrs engine; leave out --engine lighteval")
    check_model_ref(cfg.model)
    cfg = dataclasses.replace(cfg, model=normalise_model(cfg.model))
    tasks = [t.name for t in parse_tasks(cfg.tasks)]
    out = Path(cfg.out_dir) if cfg.out_dir else store.default_out_dir(cfg.model, cfg.revision, tasks)
    out = out.absolute()
    if out.exists() and any(p for p in out.iterdir() if p.name not in ("eval.sbatch", "merge.sbatch", SETTINGS,
                                                                          "shards", "logs")):
        raise RunDirError(f"--out {out}: holds other files; a Slurm eval needs a new or empty directory (or its "
                          f"own, to resubmit)")
    workdir = str(Path.cwd())
    header = f"generated by openrs: {command_line}" if command_line else "generated by openrs"
    array = array_script(out_dir=str(out), workdir=workdir, eval_argv=[*openrs_argv(), *eval_argv], tasks=tasks,
                         shards=shards, gpus=gpus, partition=partition, time=time, account=account,
                         sbatch_args=sbatch_args, header=header)
    merge = merge_script(out_dir=str(out), workdir=workdir, merge_argv=[*openrs_argv(), "eval", "merge"],
                         partition=partition, time=time, account=account, sbatch_args=sbatch_args)
    settings = record("eval_slurm", config=dataclasses.asdict(cfg) | {"out_dir": str(out)}, tasks=tasks,
                      shards=shards, units=[f"{t}-{i}" for t, i in shard_names(tasks, shards)])
    job = EvalJob(array=array, merge=merge, out_dir=out, settings=settings)
    if dry_run:
        return job
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    job.array_path = write_atomic(out / "eval.sbatch", array)
    job.merge_path = write_atomic(out / "merge.sbatch", merge)
    write_json_atomic(out / SETTINGS, settings)
    if submit_job:
        run = runner or subprocess.run
        job.array_id = submit(job.array_path, run)
        job.merge_id = submit(job.merge_path, run, after=job.array_id)
    return job


def merge(out_dir: str | Path) -> dict:
    """Gather DIR/shards/* into DIR/generations.jsonl, DIR/results.json and DIR/cost: what one machine writes."""
    import shutil
    import time

    from openrs_cli import jsonl
    from openrs_cli.evaluate import store
    from openrs_cli.evaluate.runner import EvalConfig, results_record
    from openrs_cli.evaluate.tasks import load_task, parse_tasks

    out = Path(out_dir)
    p = out / SETTINGS
    if not p.is_file():
        raise RunDirError(f"{out}: no {SETTINGS}; pass the --out directory of an `openrs eval --slurm` run")
    try:
        settings = json.loads(p.read_text(encoding="utf-8"))
        check_schema(settings, "eval_slurm", str(p))
        cfg = EvalConfig(**settings["config"])
    except (ValueError, KeyError, TypeError) as e:
        raise RunDirError(f"{p}: not as openrs eval --slurm writes it ({type(e).__name__}); resubmit the eval") \
            from None
    missing = [u for u in settings["units"] if not (out / "shards" / u / store.RESULTS).is_file()]
    if missing:
        raise RunDirError(f"{out}: shard(s) {', '.join(missing)} have no results.json yet (still running, or "
                          f"failed: see {out}/logs); rerun those array tasks, then openrs eval merge {out}")
    datas = [load_task(t, cfg.data, cfg.limit) for t in parse_tasks(cfg.tasks)]
    records, shard_results = [], []
    for u in settings["units"]:
        got, _bad = store.read_generations(out / "shards" / u / store.GENERATIONS)
        records += got
        shard_results.append(store.load_results(out / "shards" / u))
    fps = {json.dumps(r.get("model_fingerprint"), sort_keys=True) for r in shard_results}
    if len(fps) > 1:
        raise RunDirError(f"{out}: the shards evaluated different weights of {cfg.model} (model fingerprints "
                          f"differ); rerun the eval with --fresh")
    order = {(td.task.name, pr.id): (j, k) for j, td in enumerate(datas) for k, pr in enumerate(td.problems)}
    records.sort(key=lambda r: (order.get((r.get("task"), str(r["id"])), (1 << 30, 0)), int(r.get("sample", 0))))
    seen: set = set()
    unique = []
    for r in records:
        key = (r.get("task"), str(r["id"]), int(r.get("sample", 0)))
        if key not in seen:
            seen.add(key)
            unique.append(r)
    jsonl.write_all(out / store.GENERATIONS, unique)
    cost = out / "cost"
    for u in settings["units"]:
        for f in sorted((out / "shards" / u / "cost").glob("ledger-*.jsonl")):
            cost.mkdir(exist_ok=True)
            shutil.copyfile(f, cost / f"{f.stem}-{u}.jsonl")  # each shard's ledger once; summary dedups by GPU
    first = shard_results[0]
    env = dict(first.get("environment") or {})
    env["shards"] = len(shard_results)
    env["gpu_models"] = sorted({(r.get("environment") or {}).get("gpu_model") or "CPU" for r in shard_results})
    results = results_record(cfg, datas, unique, backend=first.get("backend"),
                             fingerprint=first.get("model_fingerprint"),
                             context=(first.get("sampling") or {}).get("max_model_len"), environment=env,
                             wall_time_s=round(sum(float(r.get("wall_time_s") or 0) for r in shard_results), 3),
                             out_dir=out)
    results["merged_from"] = [str(out / "shards" / u) for u in settings["units"]]
    results["merged_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_json_atomic(out / store.RESULTS, results)
    return results
