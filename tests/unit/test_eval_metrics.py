"""pass@k, maj@k, stderr and the bootstrap CIs against worked examples."""

import math
import random

import pytest

from openrs_cli.evaluate import metrics as M


def brute_pass_at_k(n, c, k):
    """P(at least one correct among k drawn without replacement), by enumerating C(n, k) subsets' complement."""
    return 1 - math.comb(n - c, k) / math.comb(n, k)


def test_pass_at_k_worked_examples():
    # n=5 samples, c=2 correct, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert M.pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # k=1 is the plain fraction correct
    assert M.pass_at_k(16, 5, 1) == pytest.approx(5 / 16)
    # all wrong / all right / fewer wrong than k
    assert M.pass_at_k(8, 0, 4) == 0.0
    assert M.pass_at_k(8, 8, 1) == 1.0
    assert M.pass_at_k(4, 3, 2) == 1.0
    # n=16, c=1, k=8: 1 - C(15,8)/C(16,8) = 1 - 8/16
    assert M.pass_at_k(16, 1, 8) == pytest.approx(0.5)


@pytest.mark.parametrize("n", [1, 2, 7, 16, 64])
def test_pass_at_k_matches_combinatorial_definition(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert M.pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_rejects_bad_arguments():
    with pytest.raises(ValueError):
        M.pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        M.pass_at_k(4, 1, 5)


def test_ks():
    assert M.ks_for(1) == [1]
    assert M.ks_for(2) == [1, 2]
    assert M.ks_for(16) == [1, 2, 4, 8, 16]
    assert M.ks_for(6) == [1, 2, 4, 6]


def test_majority_vote():
    assert M.majority_correct(["5", "5", "7"], [True, True, False]) is True
    assert M.majority_correct(["5", "7", "7"], [True, False, False]) is False
    # ties go to the answer seen first
    assert M.majority_correct(["7", "5"], [False, True]) is False
    # unparseable samples do not vote
    assert M.majority_correct([None, None, "5"], [False, False, True]) is True
    assert M.majority_correct([None, None], [False, False]) is False


def test_stderr_like_lighteval():
    # AIME: 9 of 30 right with one sample -> sqrt(p(1-p) * n/(n-1)) / sqrt(n) = 0.0851
    xs = [1.0] * 9 + [0.0] * 21
    assert M.stderr(xs) == pytest.approx(math.sqrt(0.3 * 0.7 * 30 / 29) / math.sqrt(30))
    assert M.stderr(xs) == pytest.approx(0.0851, abs=1e-4)
    assert M.stderr([0.5]) == 0.0


def test_percentile_matches_numpy_linear():
    np = pytest.importorskip("numpy")
    rng = random.Random(3)
    xs = sorted(rng.random() for _ in range(101))
    for q in (0, 2.5, 50, 97.5, 100):
        assert M._percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))


def test_bootstrap_ci_worked_examples():
    # constant scores: no spread at all
    assert M.bootstrap_ci([0.25] * 40) == (0.25, 0.25)
    # 30 of 100 right: the CI is close to the normal approximation 0.30 +- 1.96*sqrt(.3*.7/100) = [0.210, 0.390]
    xs = [1.0] * 30 + [0.0] * 70
    lo, hi = M.bootstrap_ci(xs, resamples=4000, seed=1)
    assert lo == pytest.approx(0.21, abs=0.02) and hi == pytest.approx(0.39, abs=0.02)
    assert lo < 0.3 < hi
    # seeded: the same call gives the same interval; another seed a (slightly) different one
    assert M.bootstrap_ci(xs, seed=5) == M.bootstrap_ci(xs, seed=5)


def test_paired_bootstrap():
    same = [1.0, 0.0, 1.0, 0.5] * 10
    r = M.paired_bootstrap(same, same)
    assert r["diff"] == 0 and r["ci95"] == [0.0, 0.0] and r["inside_noise"]
    r = M.paired_bootstrap([1.0] * 30, [0.0] * 30)
    assert r["diff"] == 1.0 and not r["inside_noise"] and r["p_value"] == 0.0
    # one problem of 30 flips: a 3.3-point difference that is noise
    a = [1.0] * 10 + [0.0] * 20
    b = [1.0] * 9 + [0.0] * 21
    r = M.paired_bootstrap(a, b)
    assert r["diff"] == pytest.approx(1 / 30) and r["inside_noise"]
    with pytest.raises(ValueError):
        M.paired_bootstrap([1.0], [1.0, 0.0])


def test_task_metrics_worked_example():
    # 3 problems x 4 samples
    per = {
        "p1": [(True, "1"), (True, "1"), (False, "2"), (False, None)],  # c=2 -> 0.5, maj "1" right
        "p2": [(False, "3"), (False, "3"), (True, "4"), (False, "5")],  # c=1 -> 0.25, maj "3" wrong
        "p3": [(False, None)] * 4,  # c=0
    }
    m = M.task_metrics(per)
    assert m["n_problems"] == 3 and m["samples"] == 4
    assert m["pass@1"] == pytest.approx((0.5 + 0.25 + 0) / 3)
    assert list(m["pass@k"]) == ["1", "2", "4"]
    assert m["pass@k"]["2"] == pytest.approx((brute_pass_at_k(4, 2, 2) + brute_pass_at_k(4, 1, 2)) / 3)
    assert m["pass@k"]["4"] == pytest.approx(2 / 3)
    assert m["maj@k"] == pytest.approx(1 / 3)
    assert m["per_problem"] == {"p1": [2, 4], "p2": [1, 4], "p3": [0, 4]}
    lo, hi = m["ci95"]
    assert 0 <= lo <= m["pass@1"] <= hi <= 0.5


def test_average_is_unweighted_mean_of_tasks():
    avg = M.average({"aime24": {"pass@1": 0.3}, "math_500": {"pass@1": 0.8}, "x": {"pass@1": None}})
    assert avg == {"pass@1": pytest.approx(0.55), "tasks": ["aime24", "math_500"], "left_out": []}
