"""Near-duplicate removal: openrs's MinHash-LSH candidates + exact Jaccard check vs the naive all-pairs Jaccard
baseline, on the bundled 2,000-row DeepScaleR sample (plus reformatted copies of 200 rows, so there are
near-duplicates to find). Both must keep exactly the same rows; prints the speed-up.

    .venv/bin/python benchmarks/data_dedup.py          # last line: dedup_speedup: <x>
"""

from __future__ import annotations

import time

from openrs_cli import evalsets
from openrs_cli.data import filters

N_WORDS, THRESHOLD = 5, 0.8


def naive(rows: list[dict]) -> list[dict]:
    kept, sets = [], []
    for r in rows:
        sh = filters.shingles(r["problem"], N_WORDS)
        if sh and any(len(sh & s) / len(sh | s) >= THRESHOLD for s in sets if s):
            continue
        kept.append(r)
        sets.append(sh)
    return kept


def main() -> None:
    base = evalsets.load("train-sample")
    rows = [{"problem": r["problem"], "solution": "", "answer": r["answer"], "source": "s"} for r in base]
    for r in base[:200]:  # near copies: spacing and a trailing remark changed
        rows.append(
            {
                "problem": r["problem"].replace(" ", "  ") + " Give an exact answer.",
                "solution": "",
                "answer": r["answer"],
                "source": "copy",
            }
        )
    exact, _, _ = filters.dedup(rows, near=False, shingle_words=N_WORDS, threshold=THRESHOLD)
    t0 = time.perf_counter()
    want = naive(exact)
    t_naive = time.perf_counter() - t0
    t0 = time.perf_counter()
    got, dropped, _ = filters.dedup(exact, near=True, shingle_words=N_WORDS, threshold=THRESHOLD)
    t_lsh = time.perf_counter() - t0
    same = [r["problem"] for r in got] == [r["problem"] for r in want]
    print(f"rows after exact dedup: {len(exact)}; kept naive {len(want)}, lsh {len(got)}; identical: {same}")
    print(f"naive all-pairs: {t_naive:.2f} s; minhash-lsh: {t_lsh:.2f} s ({dropped})")
    if not same:
        raise SystemExit("dedup_speedup: 0 (results differ)")
    print(f"dedup_speedup: {t_naive / t_lsh:.1f}")


if __name__ == "__main__":
    main()
