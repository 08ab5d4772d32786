"""Every JSONL file openrs reads or writes goes through this module.

Lines are split on "\\n" only (not str.splitlines(), which also splits on U+2028 inside JSON strings); a UTF-8 BOM
is ignored; blank lines are skipped.

Reading, two policies:
- `read_objects` (strict) is for files a user hands to openrs (problem sets, completions to score, source rows):
  every line must be a JSON object, and the first one that is not is a one-line `DataError` naming the line.
  `torn_tail_ok=True` also accepts a file whose last line was cut by a killed writer (that line is left out).
- `read_log` (tolerant) is for the logs openrs itself appends to while it may be killed (metrics, completions,
  generations, cost ledgers): a torn last line (no newline after it) is expected after a kill and left out; any
  other unreadable line is left out too and counted, so the caller can say so. Nothing is raised for content.

Appending: `Appender` opens with O_APPEND and first deals with a torn last line (the fragment a killed writer
left) so that a new record is never glued onto it: by default it cuts it off; a file that several processes append
to at once (a cost ledger) passes `torn_tail="end"`, which ends it with a newline instead (cutting could remove a
line another writer has just appended; the fragment stays, and reads as a torn line). Each `append` writes its
records as whole lines in one write() and, with the default `fsync=True`, fsyncs before returning, so a kill loses
at most the call in flight.
`Tail` reads the complete lines appended to a growing log since the last call.
`write_all` replaces a whole JSONL file atomically (a reader never sees half of it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openrs_cli.errors import DataError


def dumps(record: dict, **kw: Any) -> str:
    """One record as one line (no newline): UTF-8 text kept, non-JSON values as str() (NaN is written as Python
    reads it back; pass allow_nan=False to refuse it)."""
    kw.setdefault("ensure_ascii", False)
    kw.setdefault("default", str)
    return json.dumps(record, **kw)


def read_utf8(path: Path, hint: str) -> str:
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path} is not UTF-8 (bad byte at line {line}); {hint}") from None


def parse_objects(text: str, path: Path, hint: str, torn_tail_ok: bool = False) -> list[dict]:
    """JSON objects, one per non-blank line of `text` (read from `path`)."""
    return [row for _, row in numbered_objects(text, path, hint, torn_tail_ok)]


def numbered_objects(text: str, path: Path, hint: str, torn_tail_ok: bool = False) -> list[tuple[int, dict]]:
    """(1-based line number, object) for each non-blank line of `text`, for callers whose own checks name lines."""
    rows = []
    lines = text.split("\n")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if torn_tail_ok and n == len(lines):  # no newline after it: cut by a killed writer
                continue
            raise DataError(f"{path} line {n}: not valid JSON ({e.msg}); fix or remove that line") from None
        if not isinstance(row, dict):
            raise DataError(f"{path} line {n}: a {type(row).__name__}, not a JSON object; {hint}")
        rows.append((n, row))
    return rows


def read_objects(path: Path, hint: str, torn_tail_ok: bool = False) -> list[dict]:
    """All JSON objects of a user's JSONL file; `hint` says what the file should hold (ends each error line)."""
    return parse_objects(read_utf8(path, hint), path, hint, torn_tail_ok)


@dataclass
class LogRead:
    """What `read_log` found: the readable records (with their 1-based line numbers), and what it left out."""

    records: list[dict] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    torn: int = 0  # the number of the last line when a killed writer cut it, else 0
    bad: list[int] = field(default_factory=list)  # other unreadable lines (not JSON objects), 1-based

    def notes(self, where: str) -> list[str]:
        """One line per thing left out, for the caller's warnings."""
        out = [f"{where}: skipped unreadable line {n}" for n in self.bad]
        if self.torn:
            out.append(f"{where}: skipped truncated last line {self.torn} (interrupted write)")
        return out


def read_log(path: Path) -> LogRead:
    """The records of one of openrs's own append-only logs (see the module docstring for the policy).

    A missing file reads as empty; an unreadable one raises OSError for the caller to word."""
    path = Path(path)
    out = LogRead()
    if not path.exists():
        return out
    lines = path.read_bytes().removeprefix(b"\xef\xbb\xbf").split(b"\n")
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            rec = None
        if isinstance(rec, dict):
            out.records.append(rec)
            out.lines.append(n)
        elif n == len(lines):
            out.torn = n
        else:
            out.bad.append(n)
    return out


def cut_torn_tail(path: Path) -> bool:
    """Remove a partial last line (no newline after it) left by a killed writer; True when one was cut."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return False
        f.seek(0)
        data = f.read()
        f.truncate(data.rfind(b"\n") + 1)
        return True


class Appender:
    """Appends records to a JSONL file: whole lines, one write() per call, fsynced unless `fsync=False`."""

    def __init__(self, path: Path, fsync: bool = True, torn_tail: str = "cut"):
        self.path, self.fsync = Path(path), fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if torn_tail == "cut":
            cut_torn_tail(self.path)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if torn_tail == "end":
            try:
                size = os.fstat(self._fd).st_size
                if size:
                    with open(self.path, "rb") as f:
                        f.seek(size - 1)
                        if f.read(1) != b"\n":
                            os.write(self._fd, b"\n")
            except OSError:
                self.close()
                raise

    def append(self, records: Iterable[dict], **dump_kw: Any) -> None:
        if self._fd is None:
            raise ValueError(f"{self.path}: appender is closed")
        data = "".join(dumps(r, **dump_kw) + "\n" for r in records).encode("utf-8")
        view = memoryview(data)
        while view:  # a regular file takes the whole write at once; loop only on a short write
            view = view[os.write(self._fd, view):]
        if data and self.fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> Appender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def append(path: Path, records: Iterable[dict], fsync: bool = True, **dump_kw: Any) -> None:
    """Open, append `records` (see Appender), close."""
    with Appender(path, fsync=fsync) as a:
        a.append(records, **dump_kw)


def write_all(path: Path, records: Iterable[dict], **dump_kw: Any) -> Path:
    """Replace `path` with exactly these records, atomically."""
    from openrs_cli.files import write_atomic

    return write_atomic(Path(path), "".join(dumps(r, **dump_kw) + "\n" for r in records))


class Tail:
    """The complete records appended to a growing log since the last `read` (from its size at creation)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.pos = self.path.stat().st_size if self.path.exists() else 0

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self.pos)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next call
        self.pos += end
        out = []
        for line in data[:end].split(b"\n"):
            try:
                rec = json.loads(line) if line.strip() else None
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out
