"""Scores from per-sample verdicts: pass@1 (mean over samples), unbiased pass@k, maj@k, bootstrap CIs, stderr.

Pure Python (no numpy) so re-scoring and comparing stay light. Conventions:
- pass@k is the unbiased estimator of Chen et al. (2021): per problem with n samples of which c are correct,
  1 - C(n-c, k) / C(n, k), averaged over problems; k runs over 1, 2, 4, ... up to the smallest n.
- pass@1 equals the mean over problems of c/n (the paper's number when n = 1).
- maj@k: the most common extracted answer among a problem's samples (ties: the one seen first; samples
  without an extracted answer do not vote) decides the problem.
- stderr: sample standard deviation (ddof=1) of the per-problem scores over sqrt(#problems), as lighteval does.
- ci95: percentile bootstrap over problems (resampling problems with replacement), seeded.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence

BOOTSTRAP_RESAMPLES = 2000


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: n samples, c correct (Chen et al. 2021, numerically stable form)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def ks_for(n_min: int) -> list[int]:
    """1, 2, 4, ... up to n_min, plus n_min itself."""
    ks, k = [], 1
    while k <= n_min:
        ks.append(k)
        k *= 2
    if n_min >= 1 and ks[-1] != n_min:
        ks.append(n_min)
    return ks


def majority_correct(preds: Sequence[str | None], correct: Sequence[bool]) -> bool:
    """maj@k for one problem: is the most common extracted answer a correct one?"""
    votes = Counter(p for p in preds if p is not None)
    if not votes:
        return False
    best = max(votes.values())
    winner = next(p for p in preds if p is not None and votes[p] == best)
    return any(ok for p, ok in zip(preds, correct, strict=True) if p == winner)


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def stderr(xs: Sequence[float]) -> float:
    """Standard error of the mean with the sample standard deviation (ddof=1)."""
    n = len(xs)
    if n < 2:
        return 0.0
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1)) / math.sqrt(n)


def _percentile(sorted_xs: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of sorted data, q in [0, 100]."""
    if not sorted_xs:
        return float("nan")
    pos = (len(sorted_xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def bootstrap_ci(xs: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of xs (resampling items with replacement)."""
    n = len(xs)
    if n == 0:
        return (float("nan"), float("nan"))
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(xs, k=n)) / n for _ in range(resamples))
    tail = (1.0 - level) / 2 * 100
    return (_percentile(means, tail), _percentile(means, 100 - tail))


def paired_bootstrap(a: Sequence[float], b: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES,
                     seed: int = 0, level: float = 0.95) -> dict:
    """Difference of means a - b over the same items, with a paired percentile-bootstrap CI.

    `inside_noise` is True when the CI contains 0; `p_value` is the two-sided bootstrap share of resampled
    differences on the other side of 0.
    """
    if len(a) != len(b):
        raise ValueError("paired bootstrap needs the same items on both sides")
    d = [x - y for x, y in zip(a, b, strict=True)]
    n = len(d)
    if n == 0:
        return {"n": 0, "diff": float("nan"), "ci95": [float("nan"), float("nan")], "inside_noise": True,
                "p_value": float("nan")}
    rng = random.Random(seed)
    return _difference(n, mean(d), [sum(rng.choices(d, k=n)) / n for _ in range(resamples)], level)


def _difference(n: int, diff: float, resampled: list[float], level: float) -> dict:
    """The record both paired bootstraps return: the difference, its percentile CI and two-sided p-value."""
    resampled = sorted(resampled)
    tail = (1.0 - level) / 2 * 100
    lo, hi = _percentile(resampled, tail), _percentile(resampled, 100 - tail)
    below = sum(x <= 0 for x in resampled) / len(resampled)
    above = sum(x >= 0 for x in resampled) / len(resampled)
    return {"n": n, "diff": diff, "ci95": [lo, hi], "inside_noise": bool(lo <= 0 <= hi),
            "p_value": min(1.0, 2 * min(below, above))}


def paired_bootstrap_seeds(a: Sequence[tuple[int, int]], b: Sequence[tuple[int, int]],
                           resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0, level: float = 0.95) -> dict:
    """As `paired_bootstrap`, over problems and seeds: items are (correct, samples) per problem on each side. Each
    resample draws problems with replacement (paired), then each side's samples of a problem with replacement
    (a problem's score under resampled seeds is Binomial(n, c/n) / n). With one sample per problem the second
    level adds no spread and this equals the problem-level bootstrap."""
    if len(a) != len(b):
        raise ValueError("paired bootstrap needs the same items on both sides")
    n = len(a)
    if n == 0:
        return {"n": 0, "diff": float("nan"), "ci95": [float("nan"), float("nan")], "inside_noise": True,
                "p_value": float("nan"), "levels": "problems x seeds"}
    rng = random.Random(seed)

    def draw(c: int, k: int) -> float:
        if k <= 1 or c in (0, k):
            return c / k
        p = c / k
        return sum(rng.random() < p for _ in range(k)) / k

    diffs = []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        diffs.append(sum(draw(*a[i]) - draw(*b[i]) for i in idx) / n)
    diff = mean([x[0] / x[1] - y[0] / y[1] for x, y in zip(a, b, strict=True)])
    return {**_difference(n, diff, diffs, level), "levels": "problems x seeds"}


def task_metrics(per_problem: dict[str, list[tuple[bool, str | None]]], seed: int = 0) -> dict:
    """Metrics of one task from {problem id: [(correct, extracted answer), ... one per sample]}.

    Problems without any sample are left out. Returns n_problems, samples (min/max per problem), pass@1,
    pass@k {"1": ..}, maj@k (k = samples), ci95, stderr and per_problem {id: [correct, n]}.
    """
    items = {pid: s for pid, s in per_problem.items() if s}
    scores = [sum(ok for ok, _ in s) / len(s) for s in items.values()]
    ns = [len(s) for s in items.values()]
    n_min = min(ns) if ns else 0
    pak = {}
    for k in ks_for(n_min):
        pak[str(k)] = mean([pass_at_k(len(s), sum(ok for ok, _ in s), k) for s in items.values()])
    maj = mean([float(majority_correct([p for _, p in s], [ok for ok, _ in s])) for s in items.values()])
    # Each sample index has its own seed (the same for a problem whatever the batch): sample j of every problem is
    # one seeded run, so the spread of their pass@1 is the "std across seeds" that multi-seed studies report.
    seeds = None
    if n_min >= 2:
        per_seed = [mean([float(s[j][0]) for s in items.values()]) for j in range(n_min)]
        m = mean(per_seed)
        seeds = {"n": n_min, "pass@1": per_seed, "mean": m,
                 "std": math.sqrt(sum((x - m) ** 2 for x in per_seed) / (n_min - 1))}
    return {
        "n_problems": len(items),
        "samples": n_min,
        "samples_max": max(ns) if ns else 0,
        "pass@1": mean(scores) if scores else None,
        "pass@k": pak,
        "maj@k": maj if items else None,
        "ci95": list(bootstrap_ci(scores, seed=seed)) if scores else None,
        "stderr": stderr(scores) if scores else None,
        "seeds": seeds,
        "per_problem": {pid: [sum(ok for ok, _ in s), len(s)] for pid, s in items.items()},
    }


def average(task_results: dict[str, dict]) -> dict:
    """The paper's Avg column: the unweighted mean of the tasks' pass@1, over whole benchmarks only (a task marked
    `complete: false` — a --limit cut or other data — is listed under `left_out`, never averaged)."""
    vals = {t: r["pass@1"] for t, r in task_results.items()
            if r.get("pass@1") is not None and r.get("complete", True)}
    left_out = [t for t, r in task_results.items() if r.get("complete", True) is False]
    return {"pass@1": mean(list(vals.values())) if vals else None, "tasks": list(vals), "left_out": left_out}
