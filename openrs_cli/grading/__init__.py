"""Answer grading on math-verify, shared by the GRPO rewards and the evaluator.

`grade(completion, gold, cfg)` extracts the answer from a completion and the gold from an answer or a full
solution, compares them with math-verify at `cfg.precision`, and says which of correct / wrong /
unparseable-gold / unparseable-answer / timed-out it is. It never raises on bad input.

Time limit. math-verify's own timeouts use `signal.alarm`, which only works in the main thread (0.9 raises
elsewhere, 0.5.2 silently returns wrong answers), and a signal cannot interrupt a long C call (big-integer
arithmetic, a regex). So every parse/verify runs in a persistent worker *process* (a fresh
interpreter started with `subprocess`, so it works from threads, thread pools, forked and daemonic pool
workers alike) with math-verify's timeouts disabled. The limit counts CPU time, not wall time, so the verdict of
an input does not depend on how busy the machine is: inside the worker a CPU-time interval timer stops a step
after `cfg.timeout_s` CPU seconds (TIMEOUT), and the pool kills and replaces a worker that has burned
`timeout_s + 1 s` of CPU on one item (a long C call), or that is blocked for ten times that in wall time.
The gold gets its own `timeout_s` budget; a gold whose parse ran out of time is TIMEOUT (never cached, never
"unparseable", so no reward turns it into 1.0) and is parsed again for the next item.

Speed. `grade_many` sends items one at a time, preferring a worker that already parsed that gold (each worker
keeps an LRU cache of parsed golds, so a prompt's gold is parsed about once); an item running longer than
0.3 s stops counting its worker as available and an idle one (two are kept started) takes over, so a batch
with a few pathological completions still finishes in about one time limit. Before the symbolic comparison
it checks whether the extracted answer and gold strings are identical: math-verify's `verify` compares every
(gold, pred) pair and its string-string pair is plain equality, so that shortcut can never change a verdict;
and the same extracted answer for the same gold (common within a GRPO group) is compared once.

Layout: `config` (verdicts, configs, presets), `worker` (the worker process), `pool` (starting, feeding and
killing workers). math-verify is imported only in the workers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

from openrs_cli.grading.boxed import all_boxed, extract_boxed
from openrs_cli.grading.config import (
    EVAL_EXPR_GOLD,
    EVAL_LATEX_GOLD,
    FIXED_REWARD,
    PAPER_COSINE,
    PAPER_REWARD,
    GraderConfig,
    GradeResult,
    Verdict,
)
from openrs_cli.grading.pool import _SPARES, _pool

__all__ = ["EVAL_EXPR_GOLD", "EVAL_LATEX_GOLD", "FIXED_REWARD", "PAPER_COSINE", "PAPER_REWARD", "GradeResult",
           "GraderConfig", "Verdict", "all_boxed", "default_workers", "extract_boxed", "gold_parses", "grade", "grade_many",
           "warm_up"]


def grade(completion: str, gold: str, cfg: GraderConfig = EVAL_LATEX_GOLD) -> GradeResult:
    """Grade one completion against one gold, within cfg.timeout_s of CPU time per step. Thread-safe."""
    return grade_many([(completion, gold)], cfg, workers=1)[0]


def gold_parses(gold: str, cfg: GraderConfig = EVAL_LATEX_GOLD) -> bool:
    """True if math-verify extracts a gold from `gold` under cfg (within the time limit)."""
    cfg = replace(cfg, gold_fallback_raw=False)
    return _pool().run("gold", cfg, [(_as_text(gold), "")], 1)[0] is not None


def grade_many(pairs: Sequence[tuple[str, str]], cfg: GraderConfig = EVAL_LATEX_GOLD,
               workers: int | None = None) -> list[GradeResult]:
    """Grade (completion, gold) pairs in worker processes; same results as grade() one by one, in order."""
    items = [(_as_text(g), _as_text(c)) for c, g in pairs]
    return _pool().run("grade", cfg, items, workers or default_workers()) if items else []


def warm_up(workers: int | None = None, timeout_s: float = 120.0) -> int:
    """Start the grading workers (and spares) now and wait until they are ready; returns how many are ready.

    Optional: the first grade() starts them anyway. Call it before timing, or before the first training step."""
    return _pool().warm((workers or default_workers()) + _SPARES, timeout_s)


def default_workers() -> int:
    """Worker processes for grade_many: OPENRS_GRADING_WORKERS, else the usable CPUs (at most 8)."""
    env = os.environ.get("OPENRS_GRADING_WORKERS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _as_text(x: object) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, bytes):
        return x.decode("utf-8", "replace")
    return "" if x is None else str(x)
