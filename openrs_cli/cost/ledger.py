"""The cost ledger: append-only JSONL, one file per host at `<run_dir>/cost/ledger-<host>.jsonl`.

Writing: each record is one line written with a single `os.write` on an `O_APPEND` descriptor and fsynced, so
concurrent writers (the node sampler, training ranks, an eval) never interleave inside a line and a power cut
loses at most the line being written. Reading: a line that does not parse (torn by a crash) is skipped with a
warning, never fatal. Record types (field `record`): run_start, interval (GPU coverage and energy per heartbeat),
window (a named window or phase), run_end. Every record is built by `schema.record("ledger", ...)`. Files are written and read through openrs_cli.jsonl.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from openrs_cli import jsonl
from openrs_cli.errors import LedgerError
from openrs_cli.schema import check_schema, record


def host_name() -> str:
    return os.environ.get("OPENRS_HOST") or socket.gethostname() or "localhost"


def ledger_dir(run_dir) -> Path:
    return Path(run_dir) / "cost"


def ledger_path(run_dir, host: str | None = None) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in (host or host_name()))
    return ledger_dir(run_dir) / f"ledger-{safe}.jsonl"


class LedgerWriter:
    """Appends records to one ledger file. Write failures are reported once through `on_error`, never raised."""

    def __init__(self, path: Path, on_error=None):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._on_error = on_error
        self._failed = False
        self._out: jsonl.Appender | None = None
        try:
            # shared by the node sampler, training ranks and an eval: a torn line is ended, never cut
            self._out = jsonl.Appender(self.path, torn_tail="end")
        except OSError as e:
            self._fail(e)

    def _fail(self, e: Exception) -> None:
        if not self._failed and self._on_error:
            self._on_error(f"cannot write the cost ledger {self.path}: {e}; the run continues without it")
        self._failed = True

    def write(self, fields: dict) -> None:
        if self._out is None or self._failed:
            return
        with self._lock:
            try:
                self._out.append([record("ledger", **fields)], separators=(",", ":"), allow_nan=False)
            except (OSError, ValueError) as e:
                self._fail(e)

    def close(self) -> None:
        with self._lock:
            if self._out is not None:
                try:
                    self._out.close()
                except OSError:
                    pass
                self._out = None


def read_ledger(path: Path, warnings: list[str] | None = None) -> list[dict]:
    """The records of one ledger file; torn or foreign lines are skipped with a warning appended to `warnings`."""
    path = Path(path)
    try:
        log = jsonl.read_log(path)
    except OSError as e:
        raise LedgerError(f"cannot read cost ledger {path}: {e}; check the path and permissions") from e
    if warnings is not None:
        warnings.extend(log.notes(str(path)))
    for n, rec in zip(log.lines, log.records, strict=True):
        check_schema(rec, "ledger", f"{path}:{n}")
    return log.records


def ledger_files(run_dir) -> list[Path]:
    """All per-host ledgers of a run, sorted by name."""
    d = ledger_dir(run_dir)
    return sorted(d.glob("ledger-*.jsonl")) if d.is_dir() else []
