"""Record headers shared by every JSON/JSONL artifact openrs writes.

Every record carries `schema_version` (per artifact kind), `openrs_version`, the git hash of the openrs checkout
when there is one, UTC time, and `kind`. Readers call `check_schema` to refuse records from a newer schema.
"""

from __future__ import annotations

import datetime as _dt
import functools
import subprocess
from pathlib import Path

from openrs_cli import __version__
from openrs_cli.errors import OpenrsError

# One version per artifact kind; bump when a reader would misread an old record.
SCHEMA_VERSIONS = {
    "recipe": 1,
    "launch": 1,
    "metrics": 1,
    "completions": 1,
    "generation": 1,
    "results": 1,
    "ledger": 1,
    "data_manifest": 1,
    "doctor": 1,
}


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@functools.lru_cache(maxsize=1)
def git_hash() -> str | None:
    """The commit of the openrs source tree, or None for an installed wheel / no git."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def header(kind: str) -> dict:
    """The fields every record of `kind` starts with."""
    return {
        "kind": kind,
        "schema_version": SCHEMA_VERSIONS[kind],
        "openrs_version": __version__,
        "git_hash": git_hash(),
        "time_utc": utc_now(),
    }


def check_schema(record: dict, kind: str, where: str) -> None:
    """Refuse a record of another kind or a newer schema version, naming the file."""
    got_kind = record.get("kind", kind)
    if got_kind != kind:
        raise OpenrsError(f"{where}: expected a '{kind}' record, found '{got_kind}'; pass the right file")
    version = record.get("schema_version")
    if not isinstance(version, int):
        raise OpenrsError(f"{where}: no schema_version; it was not written by openrs (expected kind '{kind}')")
    if version > SCHEMA_VERSIONS[kind]:
        raise OpenrsError(
            f"{where}: schema_version {version} is newer than this openrs understands "
            f"({SCHEMA_VERSIONS[kind]}); upgrade openrs"
        )
