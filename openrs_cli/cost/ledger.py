"""The cost ledger: append-only JSONL, one file per host at `<run_dir>/cost/ledger-<host>.jsonl`.

Writing: each record is one line written with a single `os.write` on an `O_APPEND` descriptor and fsynced, so
concurrent writers (the node sampler, training ranks, an eval) never interleave inside a line and a power cut
loses at most the line being written. Reading: a line that does not parse (torn by a crash) is skipped with a
warning, never fatal. Record types (field `record`): run_start, interval (GPU coverage and energy per heartbeat),
window (a named window or phase), run_end. Every record starts with `schema.header("ledger")`.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

from openrs_cli.errors import LedgerError
from openrs_cli.schema import check_schema, header


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
        self._fd: int | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            # A previous crash may have left a torn line without a newline: end it so our lines stay whole.
            size = os.fstat(self._fd).st_size
            if size:
                with open(self.path, "rb") as f:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        os.write(self._fd, b"\n")
        except OSError as e:
            self._fail(e)

    def _fail(self, e: Exception) -> None:
        if not self._failed and self._on_error:
            self._on_error(f"cannot write the cost ledger {self.path}: {e}; the run continues without it")
        self._failed = True

    def write(self, record: dict) -> None:
        if self._fd is None or self._failed:
            return
        with self._lock:
            try:
                line = json.dumps({**header("ledger"), **record}, separators=(",", ":"), allow_nan=False, default=str)
                view = memoryview((line + "\n").encode())
                while view:  # a regular file takes the whole line at once; loop only on a short write
                    n = os.write(self._fd, view)
                    view = view[n:]
                os.fsync(self._fd)
            except (OSError, ValueError) as e:
                self._fail(e)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                try:
                    os.close(self._fd)
                except OSError:
                    pass
                self._fd = None


def read_ledger(path: Path, warnings: list[str] | None = None) -> list[dict]:
    """The records of one ledger file; torn or foreign lines are skipped with a warning appended to `warnings`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise LedgerError(f"cannot read cost ledger {path}: {e}; check the path and permissions") from e
    lines = raw.split(b"\n")
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
        except ValueError:
            last = all(not rest.strip() for rest in lines[n:])
            what = "truncated last line (interrupted write)" if last else "unreadable line"
            if warnings is not None:
                warnings.append(f"{path}: skipped {what} {n}")
            continue
        check_schema(rec, "ledger", f"{path}:{n}")
        out.append(rec)
    return out


def ledger_files(run_dir) -> list[Path]:
    """All per-host ledgers of a run, sorted by name."""
    d = ledger_dir(run_dir)
    return sorted(d.glob("ledger-*.jsonl")) if d.is_dir() else []
