"""Read one build source into plain rows {problem, solution, answer, source} plus a record of what was read.

A source is a local JSONL (or JSON array) file, a Parquet file, a saved Hugging Face dataset directory
(`datasets.save_to_disk`), or else a Hub dataset id. Column names are mapped by the SourceSpec. Every bad input
(missing file, wrong columns, no rows, invalid JSON, non-UTF-8 bytes, truncated Parquet) is one DataError line.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from openrs_cli.data.spec import SourceSpec
from openrs_cli.errors import DataError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HF_DIR_MARKERS = ("state.json", "dataset_dict.json")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_dir(root: Path) -> str:
    from openrs_cli.evalsets import sha256_file

    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(f"{p.relative_to(root).as_posix()}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


def _read_jsonl(path: Path) -> list[dict]:
    from openrs_cli.jsonl import parse_objects, read_utf8

    text = read_utf8(path, "re-encode the file as UTF-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON at line {e.lineno} ({e.msg}); fix the file") from None
        bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
        if bad is not None:
            raise DataError(f"{path}: item {bad} is not a JSON object; each row must be an object of columns")
        return rows
    return parse_objects(text, path, "each row must be an object of columns")


def _read_parquet(path: Path, wanted: list[str]) -> tuple[list[dict], list[str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
        cols = [c for c in wanted if c in names]
        table = pq.read_table(path, columns=cols)
    except (pa.ArrowException, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path} is not a readable Parquet file ({first}); re-export it") from None
    return table.to_pylist(), names


def _read_hf(obj: Any, split: str, where: str) -> Any:
    from datasets import DatasetDict

    if isinstance(obj, DatasetDict):
        if split not in obj:
            raise DataError(f"{where} has no split '{split}'; splits: {', '.join(obj)} (set sources.<name>.split)")
        return obj[split]
    return obj


def _read_hf_dir(path: Path, split: str) -> Any:
    from datasets import load_from_disk

    try:
        ds = load_from_disk(str(path))
    except Exception as e:  # datasets raises several types for a broken dir
        raise DataError(f"{path} is not a loadable saved dataset ({str(e).splitlines()[0]}); rebuild it") from None
    return _read_hf(ds, split, str(path))


def _read_hub(spec: SourceSpec) -> Any:
    import datasets

    try:
        ds = datasets.load_dataset(spec.path, spec.config, split=spec.split)
    except Exception as e:  # offline, unknown id, gated, bad config: all end the same way for the user
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(
            f"could not load Hub dataset '{spec.path}' ({msg[:200]}); check the id and network, "
            "or download it and pass --source FILE"
        ) from None
    return ds


def _as_text(value: Any, col: str, i: int, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    raise DataError(f"{where} row {i}: column '{col}' holds a {type(value).__name__}, not text; map another column")


def load_source(name: str, spec: SourceSpec) -> tuple[list[dict], dict]:
    """Rows with keys problem/solution/answer/source (text or None) and the input record for the manifest."""
    assert spec.path is not None
    path = Path(spec.path).expanduser()
    wanted = [c for c in (spec.problem_column, spec.solution_column, spec.answer_column, spec.source_column) if c]
    info: dict[str, Any] = {"name": name, "path": spec.path}
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".json", ".ndjson"):
            raw, columns = _read_jsonl(path), None
            info["format"] = "jsonl"
        elif suffix in (".parquet", ".pq"):
            raw, columns = _read_parquet(path, wanted)
            info["format"] = "parquet"
        else:
            raise DataError(
                f"{path}: unsupported file type '{suffix}'; use .jsonl, .json, .parquet or a saved dataset dir"
            )
        from openrs_cli.evalsets import sha256_file

        info["sha256"] = sha256_file(path)
    elif path.is_dir():
        if not any((path / m).is_file() for m in _HF_DIR_MARKERS):
            raise DataError(
                f"{path} is a directory but not a saved HF dataset (no state.json); "
                "pass a file or a directory written by save_to_disk"
            )
        ds = _read_hf_dir(path, spec.split)
        columns = list(ds.column_names)
        raw = ds.select_columns([c for c in wanted if c in columns]).to_list()
        info["format"], info["sha256"] = "hf_dir", _sha256_dir(path)
    elif _HUB_ID.match(spec.path) and not spec.path.endswith((".jsonl", ".json", ".parquet")):
        ds = _read_hub(spec)
        columns = list(ds.column_names)
        raw = ds.select_columns([c for c in wanted if c in columns]).to_list()
        info.update(format="hub", config=spec.config, split=spec.split, fingerprint=getattr(ds, "_fingerprint", None))
    else:
        raise DataError(
            f"source file {spec.path} does not exist; pass an existing --source FILE or a Hub id (owner/name)"
        )
    if columns is None:
        seen: dict[str, None] = {}
        for r in raw:
            seen.update(dict.fromkeys(r))
        columns = list(seen)
    if not raw:
        raise DataError(f"{spec.path} has no rows; check the file (and the split '{spec.split}' for datasets)")
    _check_columns(spec, columns)
    if spec.limit is not None:
        raw = raw[: spec.limit]
    rows = []
    for i, r in enumerate(raw):
        rows.append(
            {
                "problem": _as_text(r.get(spec.problem_column), spec.problem_column, i, spec.path),
                "solution": _as_text(r.get(spec.solution_column), spec.solution_column, i, spec.path)
                if spec.solution_column
                else None,
                "answer": _as_text(r.get(spec.answer_column), spec.answer_column, i, spec.path)
                if spec.answer_column
                else None,
                "source": _as_text(r.get(spec.source_column), spec.source_column, i, spec.path)
                if spec.source_column
                else name,
            }
        )
    h = hashlib.sha256()
    for r in rows:
        h.update(
            json.dumps([r["problem"], r["solution"], r["answer"], r["source"]], ensure_ascii=False).encode() + b"\n"
        )
    info.update(columns=columns, rows=len(rows), rows_sha256=h.hexdigest())
    return rows, info


def _check_columns(spec: SourceSpec, columns: list[str]) -> None:
    shown = ", ".join(columns[:12]) + (", ..." if len(columns) > 12 else "")
    if spec.problem_column not in columns:
        raise DataError(
            f"{spec.path} has no column '{spec.problem_column}' (columns: {shown}); map it with --column problem=NAME"
        )
    if spec.source_column and spec.source_column not in columns:
        raise DataError(
            f"{spec.path} has no column '{spec.source_column}' (columns: {shown}); fix --column source=NAME"
        )
    has_sol = bool(spec.solution_column) and spec.solution_column in columns
    has_ans = bool(spec.answer_column) and spec.answer_column in columns
    if not (has_sol or has_ans):
        raise DataError(
            f"{spec.path} has neither a solution column '{spec.solution_column}' nor an answer column "
            f"'{spec.answer_column}' (columns: {shown}); map one with --column solution=NAME or --column answer=NAME"
        )
    if spec.require_boxed and not has_sol:
        raise DataError(
            f"{spec.path}: require_boxed needs a solution column, '{spec.solution_column}' is missing; "
            "map it with --column solution=NAME"
        )
