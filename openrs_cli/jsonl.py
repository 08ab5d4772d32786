"""Strict reading of user-supplied JSONL files: UTF-8, one JSON object per line, one-line errors naming the line.

Lines are split on "\\n" only (not str.splitlines(), which also splits on U+2028 inside JSON strings); a UTF-8 BOM is
ignored; blank lines are skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

from openrs_cli.errors import DataError


def read_utf8(path: Path, hint: str) -> str:
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path} is not UTF-8 (bad byte at line {line}); {hint}") from None


def parse_objects(text: str, path: Path, hint: str) -> list[dict]:
    """JSON objects, one per non-blank line of `text` (read from `path`)."""
    rows = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path} line {n}: not valid JSON ({e.msg}); fix or remove that line") from None
        if not isinstance(row, dict):
            raise DataError(f"{path} line {n}: a {type(row).__name__}, not a JSON object; {hint}")
        rows.append(row)
    return rows


def read_objects(path: Path, hint: str) -> list[dict]:
    """All JSON objects of a JSONL file; `hint` says what the file should hold (ends each error line)."""
    return parse_objects(read_utf8(path, hint), path, hint)
