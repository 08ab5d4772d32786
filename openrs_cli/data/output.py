"""The built dataset on disk, and reading it back for `openrs data inspect`.

Layout of an output directory (itself loadable with `datasets.load_from_disk(DIR)`, a single `Dataset`):
    data-00000-of-00001.arrow, dataset_info.json, state.json   the saved HF dataset (problem, solution, answer, source)
    data.parquet                                               the same rows as Parquet
    easy.parquet                                               solved problems not used by the mix (if any)
    manifest.json                                              kind data_manifest (see docs/data.md)
Everything is written into a temporary sibling directory and renamed into place at the end, so a failed build
never leaves a half-written dataset where a good one was; an existing output is replaced only with overwrite.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from openrs_cli.errors import DataError, RunDirError

COLUMNS = ("problem", "solution", "answer", "source")
MANIFEST = "manifest.json"


def content_sha256(rows: list[dict]) -> str:
    """sha256 over the rows in order, one compact JSON array [problem, solution, answer, source] per line."""
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps([r[c] for c in COLUMNS], ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
    return h.hexdigest()


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse early: an existing output without --overwrite, or a non-dataset path we would destroy."""
    if not out.exists():
        parent = next((p for p in out.absolute().parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise RunDirError(f"cannot write {out}: {parent} is a file, not a directory; choose another --out")
        return
    if not overwrite:
        raise RunDirError(f"{out} already exists; pass --overwrite to replace it or choose another --out")
    if not out.is_dir() or not (out / MANIFEST).is_file():
        raise RunDirError(
            f"{out} exists and is not an openrs dataset (no {MANIFEST}); "
            "openrs will not replace it, choose another --out"
        )


def _table(rows: list[dict]):
    import pyarrow as pa

    schema = pa.schema([(c, pa.string()) for c in COLUMNS])
    return pa.table({c: [r[c] for r in rows] for c in COLUMNS}, schema=schema)


def write_output(out: Path, rows: list[dict], manifest: dict, easy: list[dict], overwrite: bool) -> None:
    import datasets
    import pyarrow.parquet as pq

    from openrs_cli.evalsets import sha256_file

    check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        table = _table(rows)
        quiet = datasets.utils.are_progress_bars_disabled()
        datasets.disable_progress_bars()  # our own progress reports the write; restore the caller's setting
        try:
            datasets.Dataset(table).save_to_disk(str(tmp))
        finally:
            if not quiet:
                datasets.enable_progress_bars()
        pq.write_table(table, tmp / "data.parquet")
        if easy:
            pq.write_table(_table(easy), tmp / "easy.parquet")
        manifest["files"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(out, old)
            try:
                os.rename(tmp, out)
            except BaseException:
                os.rename(old, out)  # put the previous dataset back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_manifest(d: Path) -> dict:
    from openrs_cli.schema import check_schema

    p = d / MANIFEST
    if not p.is_file():
        raise DataError(f"{d} is not an openrs dataset (no {MANIFEST}); build one with `openrs data build`")
    try:
        manifest = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{p} is not valid JSON ({e}); rebuild the dataset") from None
    check_schema(manifest, "data_manifest", str(p))
    return manifest


def _length_stats(values: list[str]) -> dict:
    lengths = sorted(len(v or "") for v in values)
    if not lengths:
        return {"min": 0, "p10": 0, "p50": 0, "p90": 0, "max": 0, "mean": 0.0}

    def q(f: float) -> int:
        return lengths[min(len(lengths) - 1, int(f * len(lengths)))]

    return {
        "min": lengths[0],
        "p10": q(0.1),
        "p50": q(0.5),
        "p90": q(0.9),
        "max": lengths[-1],
        "mean": round(sum(lengths) / len(lengths), 1),
    }


def inspect_dir(d: Path) -> dict:
    """Manifest summary, per-column length stats (characters), source counts, and a content-hash check."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    manifest = read_manifest(d)
    try:
        rows = pq.read_table(d / "data.parquet").to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise DataError(
            f"{d / 'data.parquet'} cannot be read ({str(e).splitlines()[0]}); rebuild the dataset"
        ) from None
    sources: dict[str, int] = {}
    for r in rows:
        sources[r["source"]] = sources.get(r["source"], 0) + 1
    got = content_sha256(rows)
    return {
        "dir": str(d),
        "name": manifest.get("name"),
        "built_utc": manifest.get("time_utc"),
        "openrs_version": manifest.get("openrs_version"),
        "git_hash": manifest.get("git_hash"),
        "seed": manifest.get("seed"),
        "rows": len(rows),
        "content_sha256": manifest.get("content_sha256"),
        "content_ok": got == manifest.get("content_sha256"),
        "inputs": manifest.get("inputs", []),
        "stages": manifest.get("stages", []),
        "mix": manifest.get("mix", {}),
        "decontamination_hits": len(manifest.get("decontamination", {}).get("hits", [])),
        "columns": {c: _length_stats([r[c] for r in rows]) for c in COLUMNS},
        "sources": dict(sorted(sources.items(), key=lambda kv: (-kv[1], kv[0]))),
    }
