"""Verdicts a busy machine cannot change: the same stream graded quietly and beside CPU-bound processes.

The limit counts CPU time (tests/unit/test_grading.py checks the mechanism); here the whole path (pool, workers,
caches, the pool's CPU-time kill of a worker stuck in a C call) is run with two processes competing for the
cores, and every verdict, and every reward of the paper's accuracy function, must equal the quiet run's."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from benchmarks.lib.reference_rewards import synthetic_stream
from openrs_cli.grading import PAPER_REWARD, grade_many

pytestmark = pytest.mark.slow

CFG = replace(PAPER_REWARD, timeout_s=1.0)


class cpu_hogs:
    """n CPU-bound processes for the duration of a with-block (always stopped)."""

    def __init__(self, n: int):
        self.n, self.procs = n, []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)]
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
            p.wait()


def _stream():
    rows = synthetic_stream(n_prompts=12, group=6, seed=11, weights=(0.3, 0.3, 0.1, 0.15, 0.15),
                            distinct_pathological=True)
    pairs = [(c, r["solution"]) for r in rows for c in r["completions"]]
    kinds = [k for r in rows for k in r["kinds"]]
    assert "pathological" in kinds and "right" in kinds
    return pairs


def test_verdicts_beside_two_cpu_hogs_equal_the_quiet_ones():
    pairs = _stream()
    quiet = grade_many(pairs, CFG, workers=2)
    with cpu_hogs(2):
        loaded = grade_many(pairs, CFG, workers=2)
        # a fresh set of golds (the workers' caches start cold for them) under load as well
        cold = grade_many([(c, g + " ") for c, g in pairs], CFG, workers=2)
    assert loaded == quiet
    assert [r.verdict for r in cold] == [r.verdict for r in quiet]


def test_paper_rewards_beside_two_cpu_hogs_equal_the_quiet_ones():
    from openrs_cli.recipes.schema import RewardsSpec
    from openrs_cli.rewards import build_reward_funcs, funcs

    pairs = _stream()
    acc = build_reward_funcs(RewardsSpec(variant="paper", funcs=["accuracy"]))[0][0]
    kw = {"completions": [[{"role": "assistant", "content": c}] for c, _ in pairs], "solution": [g for _, g in pairs]}
    funcs._CACHE.clear()
    quiet = acc(**kw)
    funcs._CACHE.clear()  # grade again, not from the rewards' per-step cache
    with cpu_hogs(2):
        loaded = acc(**kw)
    assert loaded == quiet and 0 < sum(quiet) < len(pairs)
