"""Decontamination against the bundled evaluation sets by word n-gram overlap (13 words by default).

Words are the lower-cased runs of letters and digits (`[a-z0-9]+`, so LaTeX markup and punctuation do not
matter). A training problem is contaminated when it shares one n-gram with an evaluation problem; an evaluation
problem shorter than n words counts as one n-gram made of all its words (so a training problem that contains it
whole is contaminated). An n-gram found in two or more different evaluation problems is boilerplate ("where m
and n are relatively prime positive integers find m n") and is ignored unless `ignore_shared` is off. Every hit is
listed with both texts, the benchmark name and the problem id.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Progress = Callable[[str, int, int | None], None]
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class EvalIndex:
    """n-gram -> [(benchmark, id)] over the chosen bundled evaluation sets."""

    def __init__(self, benchmarks: list[str], n: int, ignore_shared: bool = True):
        from openrs_cli import evalsets as bundled

        self.n = n
        self.grams: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        self.problems: dict[tuple[str, str], str] = {}
        self.short_lengths: set[int] = set()
        self.sha256: dict[str, str] = {}
        for name in benchmarks:
            self.sha256[name] = bundled.sha256_file(bundled.path(name))
            for row in bundled.load(name):
                key = (name, str(row["id"]))
                self.problems[key] = row["problem"]
                w = words(row["problem"])
                if not w:
                    continue
                if len(w) < n:
                    grams = {tuple(w)}
                    self.short_lengths.add(len(w))
                else:
                    grams = {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}
                for g in grams:
                    self.grams.setdefault(g, []).append(key)
        if ignore_shared:
            shared = [g for g, keys in self.grams.items() if len(keys) > 1]
            self.ignored = len(shared)
            for g in shared:
                del self.grams[g]
        else:
            self.ignored = 0

    def matches(self, text: str) -> dict[tuple[str, str], str]:
        """{(benchmark, id): first shared n-gram} for one training problem."""
        w = words(text)
        found: dict[tuple[str, str], str] = {}
        for size in sorted({self.n, *self.short_lengths}):
            for i in range(len(w) - size + 1):
                g = tuple(w[i : i + size])
                for key in self.grams.get(g, ()):
                    found.setdefault(key, " ".join(g))
        return found


def decontaminate(
    rows: list[dict], index: EvalIndex, on_progress: Progress | None = None, label: str = "decontaminate"
) -> tuple[list[dict], dict, list[dict]]:
    """Drop every row sharing an n-gram with an evaluation problem; return (kept, dropped counts, hits)."""
    kept, hits = [], []
    dropped = 0
    for i, r in enumerate(rows):
        if on_progress and i % 500 == 0:
            on_progress(label, i, len(rows))
        found = index.matches(r["problem"])
        if not found:
            kept.append(r)
            continue
        dropped += 1
        for (bench, pid), gram in sorted(found.items()):
            hits.append(
                {
                    "benchmark": bench,
                    "problem_id": pid,
                    "ngram": gram,
                    "benchmark_problem": index.problems[(bench, pid)],
                    "train_problem": r["problem"],
                    "train_source": r["source"],
                    "train_pool": r["_pool"],
                    "train_row": r["_row"],
                }
            )
    if on_progress:
        on_progress(label, len(rows), len(rows))
    return kept, ({"contaminated": dropped} if dropped else {}), hits
