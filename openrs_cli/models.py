"""Model references, without loading the model: whether a local path holds a model (one-line errors early), the
tiny offline model's id mapped to its directory, and the size in billions of parameters a name says
(`deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B` -> 1.5; used by the cost estimate, the disk estimate and the report)."""

from __future__ import annotations

import re
from pathlib import Path

from openrs_cli.tiny import TINY_ID

_SIZE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*[bB](?![a-zA-Z])")


def size_from_name(name: str) -> float | None:
    """Billions of parameters a model id or path names ('...-1.5B' -> 1.5), its last part first (so that
    `runs/qwen-1.5b/checkpoint-50` and `org-7b/model-1.5B` both work as meant); None if none."""
    text = str(name).rstrip("/")
    m = _SIZE.search(text.rsplit("/", 1)[-1]) or _SIZE.search(text)
    return float(m.group(1)) if m else None


def check_model_ref(model_id: str) -> None:
    """Fail early, in one line, when a model reference is a local path that holds no model.

    Anything that does not look like a local path (no leading ./ / ~, not existing, not *.gguf) is taken as a hub id
    and left to the loader."""
    from openrs_cli.errors import OpenrsError

    if model_id == TINY_ID:
        return
    p = Path(model_id).expanduser()
    if not (p.exists() or model_id.startswith((".", "/", "~")) or model_id.endswith(".gguf")):
        return
    if not p.exists():
        raise OpenrsError(f"model path {model_id} does not exist; give a model directory, a .gguf file or a hub id "
                          f"(owner/name)")
    if p.is_file():
        if p.suffix == ".gguf":
            return
        raise OpenrsError(f"model path {model_id} is a file, not a model directory or a .gguf file")
    if not (p / "config.json").is_file():
        raise OpenrsError(f"{model_id} is not a model directory (no config.json); give the directory that holds "
                          f"config.json and the weights, e.g. runs/<name>/final")


def resolve_model(model_id: str) -> str:
    """Map `openrs-tiny` to its directory; anything else (hub id or path) passes through unchanged."""
    if model_id != TINY_ID:
        return model_id
    from openrs_cli.tiny import ensure_tiny_model

    return str(ensure_tiny_model())
