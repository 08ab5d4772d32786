"""The on-disk layout of an eval: `generations.jsonl` (appended as samples finish) and `results.json`.

Resume rules: a record is keyed by (task, id, sample); on reading, the first record of a key wins and later
duplicates are ignored; a torn last line (the process was killed mid-write) is ignored and cut off before
the next append, so a rerun never glues a new record onto a fragment. Each batch is flushed and fsynced
before the next one starts, so a kill loses at most the batch in flight.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from openrs_cli import jsonl
from openrs_cli.errors import OpenrsError, RunDirError
from openrs_cli.files import write_json_atomic
from openrs_cli.schema import check_schema, record

GENERATIONS = "generations.jsonl"
RESULTS = "results.json"
RUN_SPEC = "eval-run.json"
# Settings that must match for a rerun to resume into the same directory.
RESUME_KEYS = ("model", "revision", "temperature", "top_p", "max_new_tokens", "seed", "data", "engine")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip("/")).strip("_") or "model"


def model_name(model: str) -> str:
    """A short name: a hub id as is, a local dir by its name (a run's `final` or `checkpoint-N` with the run's)."""
    if not os.path.exists(model):
        return model
    p = Path(model).resolve()
    if p.name == "final" or p.name.startswith("checkpoint-"):
        return f"{p.parent.name}-{p.name}"
    return p.name


def default_out_dir(model: str, revision: str | None, task_names: list[str], root: str | Path = "evals") -> Path:
    """evals/<model>[@revision]/<task+task> — one directory per (model, revision, task set)."""
    tag = slug(model_name(model)) + (f"@{slug(revision)}" if revision else "")
    return Path(root) / tag / "+".join(sorted(task_names))


def read_generations(path: Path) -> tuple[list[dict], int]:
    """Records of a generations file (first of each key wins) and the number of unreadable lines skipped
    (jsonl.read_log's policy: a torn last line is expected after a kill and not counted)."""
    log = jsonl.read_log(path)
    seen: set[tuple] = set()
    out, bad = [], len(log.bad)
    for rec in log.records:
        sample = rec.get("sample", 0)
        if "id" not in rec or not isinstance(sample, int) or isinstance(sample, bool) \
                or sample < 0:  # an edited or foreign record: regenerated rather than trusted
            bad += 1
            continue
        key = (rec.get("task"), str(rec["id"]), sample)
        if key in seen:
            continue
        seen.add(key)
        out.append(rec)
    return out, bad


class GenerationWriter:
    """Appends records to generations.jsonl (a torn tail cut first), one fsync per batch."""

    def __init__(self, path: Path):
        self.path = path
        self._out = jsonl.Appender(path)

    def write_batch(self, records: list[dict]) -> None:
        self._out.append(records)

    def close(self) -> None:
        self._out.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


OWN = {GENERATIONS, RESULTS, RUN_SPEC, "cost", "lighteval"}  # everything openrs eval writes in its output dir


def check_out_dir(out_dir: Path) -> None:
    """Refuse an existing, non-empty directory that holds anything openrs eval did not write (it never mixes
    samples into, or replaces, a user's own results.json or generations.jsonl)."""
    if not out_dir.is_dir():
        return
    names = sorted(p.name for p in out_dir.iterdir() if not (p.name.startswith(".") and p.name.endswith(".tmp")))
    foreign = names if names and not (out_dir / RUN_SPEC).is_file() else [n for n in names if n not in OWN]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise RunDirError(f"--out {out_dir}: holds files openrs eval did not write ({shown}); pass a new or empty "
                          f"directory with --out (nothing was changed)")


def check_run_spec(out_dir: Path, spec: dict) -> None:
    """Refuse to resume into a directory made with other settings; record the settings on first use."""
    p = out_dir / RUN_SPEC
    if p.exists():
        try:
            old = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            old = None
        if not isinstance(old, dict):
            raise RunDirError(f"{p} is not a JSON object as openrs writes it; restore it or pass another --out")
        if "kind" in old:  # openrs 0.2 wrote it without a header: read as is
            try:
                check_schema(old, "eval_run", str(p))
            except OpenrsError as e:
                raise RunDirError(f"{e}; pass another --out") from None
        for k in RESUME_KEYS:
            if old.get(k) != spec.get(k):
                raise RunDirError(
                    f"{out_dir} holds an eval made with {k}={old.get(k)!r} (now {spec.get(k)!r}); "
                    f"rerun with the same setting or pass another --out"
                )
        _check_fingerprints(out_dir, old, spec)
        merged = {**old.get("data_sha256", {}), **spec.get("data_sha256", {})}
        if merged != old.get("data_sha256"):  # a new task joins the directory: record its data too
            write_json_atomic(p, {**old, "data_sha256": merged})
    else:
        write_json_atomic(p, record("eval_run", **spec))


FRESH_HINT = "rerun with --fresh to discard them and start over, or pass another --out"


def _check_fingerprints(out_dir: Path, old: dict, spec: dict) -> None:
    """Samples are reused only for the same model files and the same problem data."""
    from openrs_cli.evaluate.fingerprint import changed_files

    fp_old, fp_new = old.get("model_fingerprint"), spec.get("model_fingerprint")
    if fp_new is not None and not isinstance(fp_old, dict):
        raise RunDirError(f"{out_dir} holds samples recorded without the model's fingerprint, so they may come from "
                          f"other weights; {FRESH_HINT}")
    if fp_new is not None and fp_old.get("sha256") != fp_new.get("sha256"):
        what = ", ".join(changed_files(fp_old, fp_new)) or "its hub revision"
        raise RunDirError(f"{out_dir} holds samples of other weights of {spec.get('model')} (changed: {what}); "
                          f"{FRESH_HINT}")
    data_old = old.get("data_sha256") or {}
    for task, sha in (spec.get("data_sha256") or {}).items():
        if task in data_old and data_old[task] != sha:
            raise RunDirError(f"{out_dir} holds {task} samples of other problem data (sha256 {data_old[task][:12]}, "
                              f"now {sha[:12]}); {FRESH_HINT}")


def discard(out_dir: Path) -> None:
    """--fresh: remove what openrs eval wrote in out_dir (samples, results, settings, cost ledger)."""
    import shutil

    for name in (GENERATIONS, RESULTS, RUN_SPEC):
        (out_dir / name).unlink(missing_ok=True)
    shutil.rmtree(out_dir / "cost", ignore_errors=True)


def load_results(path: str | Path) -> dict:
    """A results.json (or a directory holding one), schema-checked."""
    p = Path(path)
    if p.is_dir():
        p = p / RESULTS
    if not p.is_file():
        raise RunDirError(f"{path}: no results.json there; pass an eval output dir or its results.json")
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RunDirError(f"{p}: not valid JSON ({e.msg}); was it written by openrs eval?") from None
    except UnicodeDecodeError:
        raise RunDirError(f"{p}: not UTF-8 text; was it written by openrs eval?") from None
    if not isinstance(rec, dict):
        raise RunDirError(f"{p}: not a JSON object; was it written by openrs eval?")
    check_schema(rec, "results", str(p))
    return rec
