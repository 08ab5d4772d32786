"""Where a score came from: the environment record results.json carries (`environment`) and the report shows
under each of your rows. Read without initialising CUDA (the parent of a vLLM engine must not) and without
importing the engines: package versions from their metadata, the GPUs from NVML (openrs_cli.cost.backend)."""

from __future__ import annotations

from openrs_cli import __version__
from openrs_cli.versions import versions


def _gpus(gpu_indices: list[int]) -> tuple[list[dict], str | None]:
    """(the GPUs used: name, uuid, memory; the driver version) from NVML; ([], None) without GPUs or NVML."""
    if not gpu_indices:
        return [], None
    from openrs_cli.cost.backend import select_backend

    be = select_backend(gpu_indices, quiet=True)
    try:
        gpus = [{"name": d.name, "uuid": d.uuid, "mem_total_mib": d.mem_total_mib} for d in be.devices()]
        driver = getattr(be, "driver_version", lambda: None)()
    finally:
        getattr(be, "shutdown", lambda: None)()
    return gpus, driver


def _cuda() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.version.cuda  # the build's CUDA: a string, no device touched


def environment(*, backend: str, engine: str, placement, batch_size: int | None, dtype: str | None,
                data_sha256: dict, protocol: dict | None, tensor_parallel: int = 1) -> dict:
    """The environment record of one eval run (its `gpu_indices` are the GPUs the backend used)."""
    gpu_indices = list(placement.gpu_indices) if placement is not None else []
    gpus, driver = _gpus(gpu_indices)
    v = versions(("torch", "transformers", "vllm", "math-verify", "latex2sympy2_extended"))
    names = sorted({g["name"] for g in gpus})
    return {
        "openrs_version": __version__,
        "engine": engine,
        "backend": backend,
        "versions": v,
        "cuda": _cuda() if gpu_indices else None,
        "driver": driver,
        "device": placement.device if placement is not None else None,
        "gpu_count": len(gpu_indices),
        "gpu_model": names[0] if len(names) == 1 else (", ".join(names) or None),
        "gpus": gpus,
        "data_parallel": len(placement.engines) if placement is not None else 1,
        "tensor_parallel": tensor_parallel,
        "batch_size": batch_size,
        "dtype": dtype,
        "grader": {"name": "math-verify", "version": v.get("math-verify")},
        "data_sha256": dict(data_sha256),
        "protocol": (protocol or {}).get("name"),
    }


def summary_line(env: dict) -> str:
    """One line for the report: engine, hardware, parallelism, dtype, grader, protocol."""
    if not isinstance(env, dict):
        return ""
    v = env.get("versions") or {}
    engine = env.get("backend") or "?"
    ver = v.get("vllm") if engine == "vllm" else v.get("transformers")
    hw = f"{env['gpu_count']} x {env.get('gpu_model') or 'GPU'}" if env.get("gpu_count") else "CPU"
    parts = [f"{engine} {ver}" if ver else engine, hw]
    if env.get("cuda"):
        parts.append(f"CUDA {env['cuda']}" + (f", driver {env['driver']}" if env.get("driver") else ""))
    parts.append(f"dp {env.get('data_parallel', 1)}, tp {env.get('tensor_parallel', 1)}")
    if env.get("batch_size"):
        parts.append(f"batch {env['batch_size']}")
    if env.get("dtype"):
        parts.append(str(env["dtype"]))
    g = env.get("grader") or {}
    if g.get("version"):
        parts.append(f"{g.get('name', 'grader')} {g['version']}")
    if env.get("protocol"):
        parts.append(f"protocol {env['protocol']}")
    if env.get("openrs_version"):
        parts.append(f"openrs {env['openrs_version']}")
    return "; ".join(parts)
