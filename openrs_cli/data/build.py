"""Run a data build: per source load -> normalise -> require gold -> drop multi-part; then over all sources
together dedup -> decontaminate; per source the optional solvable-by-model filter (solved rows form the 'easy'
pool); then the seeded mix, and the atomic write of dataset + Parquet + manifest.

    from openrs_cli.data import build, load_spec
    manifest = build(load_spec("open-rs", sources=["open-s1=s1.parquet", "open-deepscaler=ds.jsonl"]), Path("out"))

Same inputs + spec + seed => byte-identical dataset files and the same `content_sha256`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

from openrs_cli.data import filters
from openrs_cli.data.decontam import EvalIndex, decontaminate
from openrs_cli.data.output import COLUMNS, check_target, content_sha256, write_output
from openrs_cli.data.solvable import split_solvable
from openrs_cli.data.sources import load_source
from openrs_cli.data.spec import EASY, BuildSpec
from openrs_cli.errors import DataError

Progress = Callable[[str, int, int | None], None]


def _noop(label: str, done: int, total: int | None) -> None:
    pass


def build(
    spec: BuildSpec,
    out: Path,
    *,
    overwrite: bool = False,
    on_progress: Progress | None = None,
    generate: Callable | None = None,
) -> dict:
    """Build the dataset described by `spec` into `out`; returns the manifest that was written.

    on_progress(label, done, total) is called as stages advance (total None = unknown). `generate` replaces
    `openrs_cli.evaluate.generate` for the solvable filter (same signature)."""
    from openrs_cli.schema import header

    progress = on_progress or _noop
    check_target(out, overwrite)
    t_start = time.monotonic()
    stages: list[dict] = []

    def record(stage: str, pool: str, n_in: int | None, rows: list, dropped: dict, t0: float) -> None:
        stages.append(
            {
                "stage": stage,
                "pool": pool,
                "in": n_in,
                "out": len(rows),
                "dropped": dropped,
                "seconds": round(time.monotonic() - t0, 3),
            }
        )

    inputs, union = [], []
    for name, src in spec.sources.items():
        t0 = time.monotonic()
        progress(f"{name}: load", 0, None)
        rows, info = load_source(name, src)
        for i, r in enumerate(rows):
            r["_pool"], r["_row"] = name, i
        inputs.append(info)
        record("load", name, None, rows, {}, t0)
        progress(f"{name}: load", len(rows), len(rows))

        t0, n = time.monotonic(), len(rows)
        rows, dropped = filters.normalise(rows)
        record("normalise", name, n, rows, dropped, t0)

        t0, n = time.monotonic(), len(rows)
        rows, dropped = filters.require_gold(rows, src.require_boxed, progress, f"{name}: gold")
        record("gold", name, n, rows, dropped, t0)

        if src.drop_multipart:
            t0, n = time.monotonic(), len(rows)
            rows, dropped = filters.drop_multipart(rows)
            record("multipart", name, n, rows, dropped, t0)
        union.extend(rows)

    t0, n = time.monotonic(), len(union)
    rows, dropped, near_pairs = filters.dedup(
        union, spec.dedup.near, spec.dedup.shingle_words, spec.dedup.threshold, progress, "dedup"
    )
    record("dedup", "all", n, rows, dropped, t0)

    t0, n = time.monotonic(), len(rows)
    progress("decontaminate", 0, len(rows))
    index = EvalIndex(spec.decontam.benchmarks, spec.decontam.ngram, spec.decontam.ignore_shared)
    rows, dropped, hits = decontaminate(rows, index, progress, "decontaminate")
    record("decontaminate", "all", n, rows, dropped, t0)

    pools: dict[str, list[dict]] = {}
    easy: list[dict] = []
    solvable_stats = {}
    for name, src in spec.sources.items():
        pool_rows = [r for r in rows if r["_pool"] == name]
        if not src.solvable.model:
            pools[name] = pool_rows
            continue
        t0 = time.monotonic()
        hard, solved, stats = split_solvable(
            pool_rows, src.solvable, spec.seed, generate, progress, f"{name}: solvable"
        )
        solvable_stats[name] = {
            "model": src.solvable.model,
            "threshold": src.solvable.threshold,
            "easy": len(solved),
            **stats,
        }
        record("solvable", name, len(pool_rows), hard, {"solved": len(solved)} if solved else {}, t0)
        pools[name] = hard
        if src.solvable.keep_easy:
            easy.extend({**r, "source": f"{r['source']}/easy"} for r in solved)
    pools[EASY] = easy

    t0 = time.monotonic()
    mixed, mix_report, easy_used = [], {}, set()
    for pool, size in spec.pools().items():
        available = pools[pool]
        if size is None:
            take = list(range(len(available)))
        elif size > len(available):
            raise DataError(
                f"the mix asks for {size} rows from '{pool}' but only {len(available)} survived the filters; "
                f"lower it with mix.{pool}={len(available)} (stage counts: {_short(stages)})"
            )
        else:
            take = sorted(random.Random(f"{spec.seed}:{pool}").sample(range(len(available)), size))
        mixed.extend(available[i] for i in take)
        if pool == EASY:
            easy_used = set(take)
        mix_report[pool] = {"requested": size, "available": len(available), "taken": len(take)}
    if spec.shuffle:
        random.Random(f"{spec.seed}:shuffle").shuffle(mixed)
    stages.append(
        {
            "stage": "mix",
            "pool": "all",
            "in": sum(len(p) for p in pools.values()),
            "out": len(mixed),
            "dropped": {},
            "seconds": round(time.monotonic() - t0, 3),
        }
    )
    if not mixed:
        raise DataError(f"the build kept no rows; stage counts: {_short(stages)}; check the source and the filters")

    final = [{c: r[c] for c in COLUMNS} for r in mixed]
    easy_left = [{c: r[c] for c in COLUMNS} for i, r in enumerate(easy) if i not in easy_used]
    manifest = {
        **header("data_manifest"),
        "name": spec.name,
        "description": spec.description,
        "seed": spec.seed,
        "spec": spec.model_dump(mode="json"),
        "inputs": inputs,
        "benchmarks_sha256": index.sha256,
        "stages": stages,
        "pools": {k: len(v) for k, v in pools.items()},
        "mix": mix_report,
        "rows": len(final),
        "columns": list(COLUMNS),
        "content_sha256": content_sha256(final),
        "easy_unused_rows": len(easy_left),
        "solvable": solvable_stats,
        "decontamination": {
            "ngram": spec.decontam.ngram,
            "benchmarks": spec.decontam.benchmarks,
            "ignored_shared_ngrams": index.ignored,
            "hits": hits,
        },
        "near_duplicates": near_pairs,
    }
    progress("write", 0, None)
    manifest["build_seconds"] = round(time.monotonic() - t_start, 3)
    write_output(out, final, manifest, easy_left, overwrite)
    progress("write", 1, 1)
    return manifest


def _short(stages: list[dict]) -> str:
    return ", ".join(f"{s['pool']}/{s['stage']} {s['out']}" for s in stages)
