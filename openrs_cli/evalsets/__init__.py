"""Bundled copies of the five evaluation sets and the DeepScaleR training sample.

Files live in `data/` with their provenance (`SOURCES.md`) and a `SHA256SUMS` list; `load()` checks the hash
before returning rows, so a tampered or truncated copy fails loudly instead of silently changing scores.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from openrs_cli.errors import DataError

DATA_DIR = Path(__file__).parent / "data"
FILES = {
    "aime24": "aime24.jsonl",
    "amc23": "amc23.jsonl",
    "math500": "math500.jsonl",
    "minerva": "minerva.jsonl",
    "olympiadbench": "olympiadbench.jsonl",
    "train-sample": "train-sample-deepscaler.jsonl",
    "validation": "validation.jsonl",  # checkpoint selection: carved from train-sample, decontaminated
}


def validation_ids() -> set[str]:
    """The train-sample rows the validation split was carved from (never trained on as `bundled:train-sample`)."""
    return {r["meta"]["train_sample_id"] for r in load("validation")}


def expected_sha256() -> dict[str, str]:
    out = {}
    for line in (DATA_DIR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        out[name] = digest
    return out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def path(name: str, verify: bool = True) -> Path:
    """Path of a bundled file, checked against SHA256SUMS."""
    if name not in FILES:
        raise DataError(f"unknown bundled set '{name}'; valid: {', '.join(FILES)}")
    p = DATA_DIR / FILES[name]
    if verify:
        want = expected_sha256()[FILES[name]]
        got = sha256_file(p)
        if got != want:
            raise DataError(
                f"bundled file {p} fails its sha256 check (got {got[:12]}, want {want[:12]}); reinstall openrs"
            )
    return p


def load(name: str, verify: bool = True) -> list[dict]:
    """Rows of a bundled set (id, problem, answer, solution?, source, meta)."""
    from openrs_cli.jsonl import read_objects

    return read_objects(path(name, verify), "reinstall openrs")
