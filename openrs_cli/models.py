"""What a model reference says about the model, without loading it: its size in billions of parameters from its
name (`deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B` -> 1.5). Used by the cost estimate, the training plan's disk
estimate and the report."""

from __future__ import annotations

import re

_SIZE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*[bB](?![a-zA-Z])")


def size_from_name(name: str) -> float | None:
    """Billions of parameters a model id or path names ('...-1.5B' -> 1.5), its last part first (so that
    `runs/qwen-1.5b/checkpoint-50` and `org-7b/model-1.5B` both work as meant); None if none."""
    text = str(name).rstrip("/")
    m = _SIZE.search(text.rsplit("/", 1)[-1]) or _SIZE.search(text)
    return float(m.group(1)) if m else None
