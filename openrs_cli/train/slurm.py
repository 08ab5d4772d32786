"""`openrs train RECIPE --slurm`: a multi-node run as one Slurm job, written as <run_dir>/train.sbatch.

`job_layout` decides the shape (pure): in vLLM server mode the allocation's last node runs `trl vllm-serve` and the
others train, each with every GPU of its node, as open-r1's slurm/train.slurm does; otherwise every node trains.
`sbatch_script` turns that into the job script (pure text, tested on its text). At run time the script reads the
hosts from `scontrol show hostnames`, the machine rank from SLURM_NODEID, and starts `openrs train <run>/recipe.yaml
--resume` on each training node under `srun --kill-on-bad-exit`: the first launch finds no checkpoint and starts at
step 0, a requeued one (`#SBATCH --requeue`) continues from the newest complete checkpoint. Machine 0 owns the run
directory (on a filesystem the nodes share); the other machines join it (train.api, train.rundir.wait_for_run).
Each training node's `openrs train` bills its own GPUs; the vLLM server runs under `openrs cost track`, which bills
the server node's GPUs into the same run's ledgers (unless --no-cost), so `openrs cost summary RUN` counts every node.

    openrs train exp3 --slurm --nodes 3 --gpus-per-node 4 --dry-run     # the script on stdout, the plan on stderr
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from openrs_cli.errors import OpenrsError
from openrs_cli.recipes.schema import Recipe

MAIN_PORT = 29500  # accelerate's default main process port; the nodes are the job's own (--exclusive)
VLLM_PORT, GROUP_PORT = 8000, 51216  # TRL's defaults for the server and its weight-update group
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class SlurmShape:
    nodes: int = 1  # every node of the allocation, the vLLM server's included
    gpus_per_node: int | None = None  # None: the recipe's one-machine shape (training ranks + vLLM GPUs)
    partition: str | None = None
    time: str | None = None
    account: str | None = None
    sbatch_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Layout:
    nodes: int
    gpus_per_node: int  # 0: a CPU recipe (no --gres)
    train_nodes: int
    ranks_per_node: int
    vllm_node: bool  # the last node runs the vLLM server
    overrides: tuple[str, ...]  # recipe values the shape sets (launch.num_processes)
    recipe_batch: int
    global_batch: int
    notes: tuple[str, ...]


def _batch(recipe: Recipe, ranks: int) -> int:
    o = recipe.optim
    return o.per_device_train_batch_size * ranks * o.gradient_accumulation_steps


def _restoring_override(recipe: Recipe, ranks: int, target: int) -> str:
    """key=value overrides giving `target` completions per step over `ranks` processes (or why none can)."""
    if target % ranks:
        return (f"no per-device batch x accumulation gives {target} over {ranks} ranks; choose --nodes and "
                f"--gpus-per-node so the training ranks divide {target}")
    per_rank, pd = target // ranks, recipe.optim.per_device_train_batch_size
    pd = max(d for d in range(1, min(pd, per_rank) + 1) if per_rank % d == 0)
    return f"optim.per_device_train_batch_size={pd} optim.gradient_accumulation_steps={per_rank // pd}"


def job_layout(recipe: Recipe, shape: SlurmShape, reference: Recipe | None = None) -> Layout:
    """The job's shape for `recipe` (pure). Raises OpenrsError for a shape that cannot run it. The global batch is
    compared with `reference`'s on its own one-machine shape (the recipe file before command-line overrides,
    which may be the very ones restoring it); None compares nothing (a resume keeps its checkpoint's)."""
    lch, gen = recipe.launch, recipe.generation
    if shape.nodes < 1:
        raise OpenrsError(f"--nodes {shape.nodes}: a job needs at least one node")
    if lch.cpu:
        if shape.gpus_per_node:
            raise OpenrsError(f"--gpus-per-node {shape.gpus_per_node} with recipe '{recipe.name}', which trains on CPU "
                              f"(launch.cpu=true); drop --gpus-per-node or set launch.cpu=false")
        if shape.nodes > 1:
            raise OpenrsError(f"--nodes {shape.nodes} with recipe '{recipe.name}', which trains one CPU process on one "
                              f"machine (launch.cpu=true); use --nodes 1, or a GPU recipe")
        gpus, ranks, server, overrides = 0, 1, False, ()
    else:
        gpus = shape.gpus_per_node or lch.num_processes + (lch.vllm_gpus if gen.use_vllm else 0)
        server = gen.use_vllm and gen.vllm_mode == "server"
        if server and shape.nodes < 2:
            raise OpenrsError(f"--nodes {shape.nodes}: in vLLM server mode one node runs the server and the others "
                              f"train; use --nodes 2 or more, or generation.vllm_mode=colocate")
        if server and gpus < lch.vllm_gpus:
            raise OpenrsError(f"--gpus-per-node {gpus} cannot hold the vLLM server's launch.vllm_gpus="
                              f"{lch.vllm_gpus}; raise --gpus-per-node or lower launch.vllm_gpus")
        ranks = gpus  # a training node trains on every GPU it has: the server has a node of its own
        overrides = (f"launch.num_processes={gpus}",) if gpus != lch.num_processes else ()
    train_nodes = shape.nodes - (1 if server else 0)
    ref = reference or recipe
    recipe_batch = _batch(ref, 1 if ref.launch.cpu else ref.launch.num_processes)
    global_batch = _batch(recipe, ranks * train_nodes)
    notes = [f"{shape.nodes} node(s): {train_nodes} training x {ranks} rank(s)"
             + (f", 1 vLLM server node (the last; {lch.vllm_gpus} of its {gpus} GPU(s) serve)" if server else "")
             + f"; global batch {global_batch} completions per step"]
    if overrides:
        notes.append(f"{overrides[0]}: every GPU of a training node trains (the recipe's {lch.num_processes} "
                     f"ranks shared a machine with the vLLM server)")
    if reference is not None and global_batch != recipe_batch:
        fix = _restoring_override(recipe, ranks * train_nodes, recipe_batch)
        if "=" in fix and overrides:  # the recipe check counts one machine's ranks: state the shape's too
            fix = f"{overrides[0]} {fix}"
        notes.append(f"warning: global batch {global_batch} differs from the recipe's {recipe_batch} (its "
                     f"{1 if ref.launch.cpu else ref.launch.num_processes} rank(s) on one machine); to restore it "
                     f"add: {fix}")
    return Layout(shape.nodes, gpus, train_nodes, ranks, server, overrides, recipe_batch, global_batch, tuple(notes))


def bind_host(recipe: Recipe) -> str:
    """The address the vLLM node's server listens on: the recipe's unless it is loopback, which the trainer on
    another node could not reach; then every interface."""
    host = recipe.generation.vllm_server_host
    return "0.0.0.0" if host in LOOPBACK or host.startswith("127.") else host


def openrs_argv() -> list[str]:
    exe = Path(sys.executable).parent / "openrs"
    return [str(exe)] if exe.is_file() else [sys.executable, "-c", "from openrs_cli.main import run; run()"]


def sbatch_script(*, recipe_name: str, run_dir: str, workdir: str, shape: SlurmShape, layout: Layout,
                  train_argv: list[str], vllm_argv: list[str] | None = None, vllm_env: dict | None = None,
                  vllm_gpus: int = 1, track_argv: list[str] | None = None, header: str = "") -> str:
    """The job script's text (pure). `train_argv` is `openrs train <run>/recipe.yaml --run-dir <run> --resume ...`
    without the multi-machine options, which the script adds per node; `vllm_argv` is the server command;
    `track_argv` (`openrs cost track --run-dir <run> --kind vllm-server`) runs it, billing the node's GPUs."""
    q = shlex.quote
    rd, m = run_dir, layout.train_nodes
    sb = [f"--job-name=openrs-{recipe_name}", f"--nodes={layout.nodes}", "--ntasks-per-node=1", "--exclusive",
          f"--chdir={workdir}", f"--output={rd}/logs/slurm-%j.out", "--open-mode=append", "--requeue"]
    if layout.gpus_per_node:
        sb.append(f"--gres=gpu:{layout.gpus_per_node}")
    lines = ["#!/bin/bash", *directives(sb, partition=shape.partition, time=shape.time, account=shape.account,
                                        extra=tuple(shape.sbatch_args))]
    lines += [f"# {line}" for line in header.splitlines()]
    lines += [
        "# A requeued job (preemption, node failure, scontrol requeue) reruns this script: every launch is",
        "# `openrs train --resume`, which starts at step 0 without a checkpoint and otherwise continues from the",
        "# newest complete one. Machine 0 owns the run directory; the other machines join it.",
        "set -uo pipefail",
        'export OPENRS_LAUNCH_ID="${SLURM_JOB_ID}.${SLURM_RESTART_COUNT:-0}"',
        'mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")',
        'export MAIN_HOST="${NODES[0]}"',
        f'TRAIN_NODES="$(IFS=,; echo "${{NODES[*]:0:{m}}}")"',
    ]
    multi = ['--num-machines', str(m), '--machine-rank', '"$SLURM_NODEID"']
    if m > 1:
        multi += ['--main-process-ip', '"$MAIN_HOST"', '--main-process-port', str(MAIN_PORT)]
    if layout.vllm_node:
        lines += [f'export VLLM_HOST="${{NODES[{layout.nodes - 1}]}}"',
                  'echo "openrs: job $SLURM_JOB_ID restart ${SLURM_RESTART_COUNT:-0}: training on $TRAIN_NODES '
                  f'(main process $MAIN_HOST:{MAIN_PORT}), vLLM server on $VLLM_HOST:{VLLM_PORT}"',
                  f"mkdir -p {q(rd + '/logs')}",
                  "# the vLLM server" + (", billed by `openrs cost track`" if track_argv else "")
                  + ": machine 0's trainer (TRL's client) waits for its /health",
                  "srun --nodes=1 --ntasks=1 --nodelist=\"$VLLM_HOST\" --kill-on-bad-exit=1 "
                  + (f"--gres=gpu:{vllm_gpus} " if layout.gpus_per_node else "")
                  + (f"env {' '.join(f'{k}={q(v)}' for k, v in (vllm_env or {}).items())} " if vllm_env else "")
                  + (shlex.join([*track_argv, "--"]) + " " if track_argv else "")
                  + shlex.join(vllm_argv or []) + f" >> {q(rd + '/logs/vllm-serve.log')} 2>&1 &",
                  "VLLM_STEP=$!"]
        multi += ['--vllm-server', f'"$VLLM_HOST:{VLLM_PORT}:{GROUP_PORT}"']
    else:
        lines.append('echo "openrs: job $SLURM_JOB_ID restart ${SLURM_RESTART_COUNT:-0}: training on $TRAIN_NODES"')
    inner = shlex.join(["exec", *train_argv]) + " " + " ".join(multi)
    lines += [
        "# one task per training node; SLURM_NODEID (0 on the first node) is its machine rank",
        f'srun --nodes={m} --ntasks={m} --ntasks-per-node=1 --nodelist="$TRAIN_NODES" --kill-on-bad-exit=1 '
        + (f"--gres=gpu:{layout.gpus_per_node} " if layout.gpus_per_node else "") +
        f"--wait=60 bash -c {q(inner)}",
        "rc=$?",
    ]
    if layout.vllm_node:
        lines += ['kill "$VLLM_STEP" 2>/dev/null', 'wait "$VLLM_STEP" 2>/dev/null']
    lines += ['echo "openrs: training exited with code $rc"', "exit $rc", ""]
    return "\n".join(lines)


def parse_vllm_server(text: str) -> tuple[str, int, int]:
    """--vllm-server HOST:PORT:GROUP_PORT (or HOST, TRL's ports): the vLLM server another node runs."""
    host, *ports = text.rsplit(":", 2) if text.count(":") >= 2 else [text]
    try:
        port, group = (int(p) for p in ports) if ports else (VLLM_PORT, GROUP_PORT)
    except ValueError:
        raise OpenrsError(f"--vllm-server {text!r}: expected HOST:PORT:GROUP_PORT, e.g. node3:8000:51216") from None
    if not host:
        raise OpenrsError(f"--vllm-server {text!r} names no host; e.g. --vllm-server node3:8000:51216")
    return host, port, group


def directives(base: list[str], *, partition: str | None = None, time: str | None = None,
               account: str | None = None, extra: tuple[str, ...] = ()) -> list[str]:
    """The `#SBATCH` lines of a job script: `base` options, then the user's partition, time, account and extra."""
    opts = list(base) + [f"--{flag}={value}" for flag, value in
                         (("partition", partition), ("time", time), ("account", account)) if value]
    return [f"#SBATCH {a}" for a in opts + list(extra)]


def submit(script: Path, runner: Callable = subprocess.run, after: str | None = None) -> str:
    """`sbatch --parsable [--dependency=afterok:AFTER] SCRIPT`; returns the job id."""
    dep = [f"--dependency=afterok:{after}"] if after else []
    try:
        out = runner(["sbatch", "--parsable", *dep, str(script)], capture_output=True, text=True)
    except FileNotFoundError:
        raise OpenrsError(f"sbatch not found: submit {script} from a Slurm login node (sbatch {script})") from None
    if out.returncode != 0:
        last = (out.stderr or out.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise OpenrsError(f"sbatch {script} failed: {last[0]}; fix the #SBATCH options (--partition, --time, "
                          f"--account, --sbatch-arg) and submit again with sbatch {script}")
    return out.stdout.strip().split(";")[0]


@dataclass
class SlurmJob:
    script: str
    layout: Layout
    result: object  # train.api.TrainResult: machine 0's plan, as `openrs train --dry-run` shows it
    path: Path | None = None  # <run_dir>/train.sbatch once written
    job_id: str | None = None


def slurm_job(recipe: str, overrides: list[str] | None = None, *, shape: SlurmShape, run_dir: str | Path | None = None,
              resume: bool = False, overwrite: bool = False, dry_run: bool = False, cost: bool = True,
              submit_job: bool = False, command_line: str = "", runner: Callable = subprocess.run) -> SlurmJob:
    """Plan the job, and unless dry_run make the run directory (recipe.yaml, as a first launch would) with its
    train.sbatch, and with submit_job hand that to sbatch. A resume rewrites only train.sbatch."""
    import shutil

    from openrs_cli import __version__
    from openrs_cli.files import write_atomic
    from openrs_cli.recipes import load_recipe
    from openrs_cli.train import rundir
    from openrs_cli.train.api import train
    from openrs_cli.train.launch import MultiNode, plan_launch

    overrides = list(overrides or [])
    if submit_job and dry_run:
        raise OpenrsError("--submit and --dry-run contradict each other; pass one of them")
    if resume and overwrite:
        raise OpenrsError("--resume and --overwrite contradict each other; pass one of them")
    if submit_job and shutil.which("sbatch") is None:
        raise OpenrsError("--submit needs sbatch, which is not on PATH here; drop --submit and run sbatch on the "
                          "written train.sbatch from a Slurm login node")
    base = load_recipe(recipe, overrides)
    rd = Path(run_dir or rundir.default_run_dir(base)).absolute()
    if resume:
        if not (rd / "recipe.yaml").is_file():
            raise OpenrsError(f"cannot resume: {rd} holds no recipe.yaml; start the job without --resume")
        base = load_recipe(str(rd / "recipe.yaml"), overrides)
    layout = job_layout(base, shape, None if resume else load_recipe(recipe))
    given = overrides + list(layout.overrides)
    m = layout.train_nodes
    mn = MultiNode(m, 0, "$MAIN_HOST" if m > 1 else None, MAIN_PORT if m > 1 else None,
                   ("$VLLM_HOST", VLLM_PORT, GROUP_PORT) if layout.vllm_node else None)
    result = train(str(rd / "recipe.yaml") if resume else recipe, given, run_dir=rd, resume=resume, dry_run=True,
                   gpus=layout.gpus_per_node, multinode=mn, cost=cost)
    vllm_argv = vllm_env = None
    if layout.vllm_node:  # the server command a one-machine plan would start, bound where other nodes reach it
        g = base.generation.model_copy(update={"vllm_server_host": bind_host(base)})
        one = plan_launch(base.model_copy(update={"generation": g}), rd, ports=(VLLM_PORT, GROUP_PORT),
                          gpus=base.launch.num_processes + base.launch.vllm_gpus).command("vllm")
        vllm_argv = list(one.argv)
        vllm_env = {k: v for k, v in one.env.items() if k != "CUDA_VISIBLE_DEVICES"}  # Slurm binds the step's GPUs
    train_argv = [*openrs_argv(), "train", str(rd / "recipe.yaml"), "--run-dir", str(rd), "--resume",
                  *([] if cost else ["--no-cost"]), *(given if resume else [])]
    header = "\n".join([f"generated by openrs {__version__}: {command_line or 'openrs train ' + recipe + ' --slurm'}",
                        *layout.notes])
    script = sbatch_script(recipe_name=base.name, run_dir=str(rd), workdir=str(Path.cwd()), shape=shape,
                           layout=layout, train_argv=train_argv, vllm_argv=vllm_argv, vllm_env=vllm_env,
                           vllm_gpus=base.launch.vllm_gpus, header=header,
                           track_argv=[*openrs_argv(), "cost", "track", "--run-dir", str(rd), "--kind", "vllm-server"]
                           if cost else None)
    job = SlurmJob(script, layout, result)
    if dry_run:
        return job
    if not resume:  # the run directory as a first `openrs train` makes it (never over another run unless asked)
        resolved = load_recipe(recipe, given)
        resolved = resolved.model_copy(update={"output": resolved.output.model_copy(update={"output_dir": str(rd)})})
        busy = rundir.lock_run_dir(rd) if rd.is_dir() else None
        try:
            rundir.prepare_new(rd, resolved, overwrite=overwrite)
        finally:
            if busy is not None:
                import os

                os.close(busy)
    (rd / "logs").mkdir(parents=True, exist_ok=True)  # sbatch cannot open --output in a missing directory
    job.path = write_atomic(rd / rundir.SBATCH_NAME, script)
    if submit_job:
        job.job_id = submit(job.path, runner)
    return job
