"""The record types of every JSON/JSONL artifact openrs writes, defined once, and the header each starts with.

Every record carries `kind`, `schema_version` (per kind), `openrs_version`, the git hash of the openrs checkout
when there is one, and UTC time. Writers build records with `record(kind, ...)`, which refuses a record that lacks
one of its kind's fields; readers call `check_schema` to refuse another kind, a newer schema, or a record without
its kind's fields.
"""

from __future__ import annotations

import datetime as _dt
import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path

from openrs_cli import __version__
from openrs_cli.errors import OpenrsError


@dataclass(frozen=True)
class RecordType:
    kind: str
    version: int  # bump when a reader would misread an old record
    file: str  # where openrs writes it
    fields: tuple[str, ...]  # what every record of the kind holds besides the header
    what: str


RECORD_TYPES: dict[str, RecordType] = {r.kind: r for r in (
    RecordType("recipe", 1, "<run>/recipe.yaml (header as a comment)", (), "the resolved recipe a run used"),
    RecordType("launch", 1, "<run>/launch.json", ("recipe", "recipe_sha256"), "how a run was launched, and its relaunches"),
    RecordType("metrics", 1, "<run>/metrics.jsonl", ("step",), "one line per logged training step"),
    RecordType("completions", 1, "<run>/completions.jsonl", ("step", "index", "prompt", "completion", "rewards"),
               "sampled training completions with their rewards"),
    RecordType("generation", 1, "<eval>/generations.jsonl",
               ("task", "id", "sample", "completion", "verdict", "correct", "seed"), "one eval sample, graded"),
    RecordType("results", 1, "<eval>/results.json", ("model", "tasks", "average"), "an eval's scores"),
    RecordType("eval_run", 1, "<eval>/eval-run.json", ("model", "engine"),
               "the settings and fingerprints an eval directory's samples were made with"),
    RecordType("ledger", 1, "<run or eval>/cost/ledger-<host>-<pid>.jsonl", ("record",),
               "cost samples: run_start, interval, window, run_end"),
    RecordType("selection", 1, "<run>/select/selection.json", ("rule", "candidates", "chosen", "looked_at"),
               "checkpoints scored on the validation split, and the one the rule chose"),
    RecordType("eval_slurm", 1, "<eval>/slurm.json", ("config", "tasks", "shards", "units"),
               "an `openrs eval --slurm` run's settings and shards, for `openrs eval merge`"),
    RecordType("data_manifest", 1, "<data>/manifest.json", ("rows", "content_sha256"), "what a data build wrote"),
    RecordType("doctor", 1, "openrs doctor --json", (), "the environment openrs found"),
)}
SCHEMA_VERSIONS = {k: r.version for k, r in RECORD_TYPES.items()}


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


def record(kind: str, **fields) -> dict:
    """A new record of `kind`: its header, then `fields`, which must hold every field of the kind."""
    missing = [f for f in RECORD_TYPES[kind].fields if f not in fields]
    if missing:
        raise ValueError(f"a '{kind}' record needs {', '.join(missing)}")
    return {**header(kind), **fields}


def check_schema(record: dict, kind: str, where: str) -> None:
    """Refuse a record of another kind, a newer schema version or one without its kind's fields, naming the file."""
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
    missing = [f for f in RECORD_TYPES[kind].fields if f not in record]
    if missing:
        raise OpenrsError(f"{where}: a '{kind}' record without {', '.join(missing)}; it was not written by this "
                          f"openrs, or was edited")
