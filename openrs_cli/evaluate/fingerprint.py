"""What an eval evaluated: a normalised model reference and a fingerprint of the model's files.

A local model (a directory or a .gguf file) is fingerprinted by its files that decide generation: weights
(*.safetensors, *.bin, *.pt, *.pth, *.gguf), config, tokenizer and chat template (*.json, *.jinja, *.model, *.txt).
Files up to 32 MiB are hashed whole; larger ones by their size plus their first and last MiB (a safetensors
header and the first and last tensors: retraining changes them), so a multi-GB model takes milliseconds
(`python -m openrs_cli.evaluate.fingerprint MODEL` prints one and its time). Modification times are left out:
a copied model resumes. A hub id is fingerprinted by its local snapshot when one is cached, else by id + revision.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from openrs_cli.tiny import TINY_ID

WHOLE_MAX = 32 << 20
EDGE = 1 << 20
SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".json", ".jinja", ".model", ".txt")
SKIP = {"training_args.bin", "trainer_state.json", "README.md"}


def normalise_model(model: str) -> str:
    """A local path as its resolved absolute path (relative, ./, trailing slash and symbolic links give one
    spelling); the tiny model's id and hub ids unchanged."""
    if model == TINY_ID:
        return model
    p = Path(model).expanduser()
    return str(p.resolve()) if p.exists() else model


def newest_run_model(root: str | Path = "runs") -> tuple[Path, int]:
    """The `final/` model of the newest finished run under `root` (by its config.json's time) and how many other
    finished runs there are; an OpenrsError naming the choices when there is none."""
    from openrs_cli.errors import OpenrsError

    finals = sorted((p.parent for p in Path(root).glob("*/final/config.json")), key=lambda p: (p / "config.json")
                    .stat().st_mtime)
    if not finals:
        raise OpenrsError(f"openrs eval needs --model: no finished run under ./{Path(root)} (no {Path(root)}/<name>/"
                          f"final); pass --model with a run's final/ dir, a checkpoint (runs/<name>/checkpoint-N) or a "
                          f"published model id such as knoveleng/Open-RS3")
    return finals[-1], len(finals) - 1


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size <= WHOLE_MAX:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        else:
            h.update(f"size={size}".encode())
            h.update(f.read(EDGE))
            f.seek(size - EDGE)
            h.update(f.read(EDGE))
    return h.hexdigest()


def _local_files(p: Path) -> dict[str, str]:
    if p.is_file():
        return {p.name: file_digest(p)}
    return {f.name: file_digest(f) for f in sorted(p.iterdir())
            if f.is_file() and f.suffix in SUFFIXES and f.name not in SKIP and not f.name.startswith(".")}


def _hub_snapshot(model: str, revision: str | None) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, revision=revision, local_files_only=True))
    except Exception:  # not cached, not a valid id, no huggingface_hub: fingerprint by id + revision
        return None


def model_fingerprint(model: str, revision: str | None = None) -> dict:
    """{"sha256": one digest of the model, "files": {name: sha256}} (files empty for an uncached hub id)."""
    from openrs_cli.models import resolve_model

    local = Path(resolve_model(model)).expanduser()
    if not local.exists():
        local = _hub_snapshot(model, revision)
    files = _local_files(local) if local is not None else {}
    h = hashlib.sha256()
    if files:
        for name, d in sorted(files.items()):
            h.update(f"{name}\0{d}\n".encode())
    else:
        h.update(f"hub:{model}@{revision or 'main'}".encode())
    return {"sha256": h.hexdigest(), "files": files}


def changed_files(old: dict, new: dict) -> list[str]:
    a, b = old.get("files") or {}, new.get("files") or {}
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


if __name__ == "__main__":
    import sys
    import time

    t = time.perf_counter()
    fp = model_fingerprint(sys.argv[1])
    print(fp["sha256"], f"{len(fp['files'])} files", f"{time.perf_counter() - t:.3f} s")
