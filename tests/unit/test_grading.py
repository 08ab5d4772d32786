"""Grading: verdicts, presets, boxed extraction, and the hard time limit from threads, pools and forks."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from openrs_cli import grading
from openrs_cli.grading import (
    EVAL_EXPR_GOLD,
    EVAL_LATEX_GOLD,
    PAPER_COSINE,
    PAPER_REWARD,
    GradeResult,
    Verdict,
    extract_boxed,
    gold_parses,
    grade,
    grade_many,
)

FAST = replace(PAPER_REWARD, timeout_s=1.0)  # adversarial tests: 1 s limit keeps the suite short
BOUND = FAST.timeout_s * 2 + 1.0 + 1.5  # gold budget + answer budget + kill grace + slack for a loaded machine


def test_light_import():
    code = "import sys, openrs_cli.grading; print(any(m in sys.modules for m in ('math_verify', 'sympy')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(("text", "want"), [
    (r"so \boxed{42}.", "42"),
    (r"\boxed{1} then \boxed{\frac{1}{2}}", r"\frac{1}{2}"),
    (r"\boxed{\sqrt{x^{2}}}", r"\sqrt{x^{2}}"),
    (r"\boxed{7} and \boxed{8", "7"),  # last one is unclosed: the last *balanced* one wins
    (r"\boxed{8", None),
    ("no box", None),
    (r"\boxed{\boxed{1}}", "1"),
    ("\\boxed{" * 3000 + "1", None),  # many unclosed: still linear, still None
])
def test_extract_boxed(text, want):
    assert extract_boxed(text) == want


def test_result_pickles_and_correct_property():
    r = GradeResult(Verdict.CORRECT, "1", "1")
    assert pickle.loads(pickle.dumps(r)) == r and r.correct
    assert not GradeResult(Verdict.TIMEOUT, None, "1").correct
    assert Verdict("unparseable_gold") is Verdict.GOLD_UNPARSEABLE


def test_verdicts_eval_presets():
    assert grade(r"Therefore, the final answer is: $\boxed{\frac{1}{2}}$.", "0.5", EVAL_EXPR_GOLD).correct
    assert grade(r"The answer is $\boxed{0.5}$", r"Hence $x=\boxed{\frac12}$.", EVAL_LATEX_GOLD).correct
    r = grade(r"... so $\boxed{3}$", "7", EVAL_EXPR_GOLD)
    assert r.verdict is Verdict.WRONG and r.pred == "3" and r.gold == "7"
    # lighteval compares an unextractable gold as a raw string: a miss is reported as the gold's fault
    assert grade(r"$\boxed{3}$", "Friday", EVAL_EXPR_GOLD).verdict is Verdict.GOLD_UNPARSEABLE
    assert not gold_parses("Friday", EVAL_EXPR_GOLD) and gold_parses("$7$", PAPER_REWARD)
    # precision 5 (eval) vs 6 (paper reward)
    assert grade(r"$\boxed{0.333331}$", "$\\frac{1}{3}$", EVAL_LATEX_GOLD).correct
    assert not grade(r"$\boxed{0.333331}$", "$\\frac{1}{3}$", PAPER_REWARD).correct


def test_verdicts_paper_reward():
    gold = r"The sum is $\boxed{\frac{1}{2}}$."
    assert grade(r"</think> so \boxed{0.5}", gold, PAPER_REWARD).correct
    assert grade(r"\boxed{\dfrac{1}{2}}", gold, PAPER_REWARD).correct
    assert grade(r"\boxed{2}", gold, PAPER_REWARD).verdict is Verdict.WRONG
    # the paper's pred config requires an anchor (boxed or "final answer"): a bare number is unparseable
    assert grade("it is 1/2", gold, PAPER_REWARD).verdict is Verdict.ANSWER_UNPARSEABLE
    assert grade(r"\boxed{3}", "no math here", PAPER_REWARD).verdict is Verdict.GOLD_UNPARSEABLE
    assert grade(r"\boxed{0.5}", gold, PAPER_COSINE).correct
    for bad in (None, b"\xff\xfe", 12, ""):
        assert grade(bad, gold, PAPER_REWARD).verdict is Verdict.ANSWER_UNPARSEABLE  # type: ignore[arg-type]


def test_grade_many_matches_grade_in_order():
    golds = ["$5$", r"$\frac{3}{4}$", "$x^2+1$", r"$\sqrt{2}$", "nothing"]
    preds = [r"\boxed{5}", r"\boxed{0.75}", r"\boxed{1+x^2}", r"\boxed{1.41421356}", r"\boxed{6}", "none", ""]
    pairs = [(p, g) for g in golds for p in preds]
    many = grade_many(pairs, PAPER_REWARD, workers=2)
    assert many == [grade(p, g, PAPER_REWARD) for p, g in pairs]
    assert [r.verdict.value[:3] for r in many[:7]] == ["cor", "wro", "wro", "wro", "wro", "unp", "unp"]
    assert grade_many([], PAPER_REWARD) == []


def test_grade_from_thread_and_thread_pool():
    got = []
    t = threading.Thread(target=lambda: got.append(grade(r"\boxed{\frac{1}{2}}", "0.5", EVAL_EXPR_GOLD)))
    t.start()
    t.join(30)
    assert got and got[0].correct
    with ThreadPoolExecutor(4) as ex:
        res = list(ex.map(lambda i: grade(rf"\boxed{{{i}}}", "$3$", PAPER_REWARD), range(8)))
    assert [r.correct for r in res] == [i == 3 for i in range(8)]


def _in_child(_):
    return grade(r"\boxed{\frac{1}{2}}", "0.5", EVAL_EXPR_GOLD).verdict.value


def test_grade_in_forked_daemonic_pool_worker():
    grade(r"\boxed{1}", "$1$", PAPER_REWARD)  # parent pool exists before the fork
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.map(_in_child, [0]) == ["correct"]


ADVERSARIAL = {
    "tower": r"so \boxed{10^{10^{10^{10}}}}",
    "nested": r"\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}",
    "huge": "word $x^2$ and " * 14000 + r"\boxed{99}",
    "junk": "\udcff\x00\x01\ufffd\u202e" * 2000 + r"\boxed{\x",
    "unclosed": r"the answer: \boxed{100",
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_adversarial_bounded(name):
    t = time.monotonic()
    r = grade(ADVERSARIAL[name], "$100$", FAST)
    assert time.monotonic() - t < BOUND
    assert not r.correct


def test_adversarial_gold_is_gold_fault():
    t = time.monotonic()
    r = grade(r"\boxed{1}", "$" + "{" * 5000 + "1" + "}" * 5000 + "$", FAST)
    assert time.monotonic() - t < BOUND and r.verdict is Verdict.GOLD_UNPARSEABLE


def test_hung_worker_is_killed_and_replaced():
    grade(r"\boxed{1}", "$1$", FAST)
    pool = grading._pool()
    assert pool.idle
    os.kill(pool.idle[-1].proc.pid, signal.SIGSTOP)  # the next one taken: stuck where no signal reaches it
    t = time.monotonic()
    r = grade(r"\boxed{1}", "$1$", FAST)
    assert r.verdict is Verdict.TIMEOUT and time.monotonic() - t < BOUND
    assert grade(r"\boxed{1}", "$1$", FAST).correct  # replaced worker grades again


def test_dead_worker_is_replaced_without_losing_work():
    grade(r"\boxed{1}", "$1$", FAST)
    for w in grading._pool().idle:
        os.kill(w.proc.pid, signal.SIGKILL)
        w.proc.wait()
    assert [r.correct for r in grade_many([(r"\boxed{1}", "$1$"), (r"\boxed{2}", "$1$")], FAST)] == [True, False]


def test_batch_with_slow_items_stays_bounded():
    pairs = [(rf"\boxed{{{i}}}", "$5$") for i in range(30)]
    pairs[3] = (ADVERSARIAL["tower"], "$5$")
    pairs[17] = (ADVERSARIAL["nested"], "$5$")
    pairs[18] = (ADVERSARIAL["nested"], "$6$")
    t = time.monotonic()
    res = grade_many(pairs, FAST, workers=1)
    assert time.monotonic() - t < BOUND + 1.0  # extra workers join when every worker is stuck
    assert [r.correct for r in res] == [i == 5 for i in range(30)]
    assert res[3].verdict is Verdict.TIMEOUT
    # answers still due from items taken over from stuck workers are dropped, not mixed into the next call
    again = grade_many([(rf"\boxed{{{i}}}", "$7$") for i in range(20)], FAST, workers=1)
    assert [r.correct for r in again] == [i == 7 for i in range(20)]


# --- overrun memo: a step that burned the time limit is not run again for the same arguments ----------------

def _memo_kinds() -> set[str]:
    from openrs_cli.grading.worker import _KINDS
    return {_KINDS[k[:1]] for k, _ in grading._pool().overran}


def test_overrun_memo_skips_repeats_across_golds_and_workers():
    pool = grading._pool()
    tower = r"so \boxed{10^{10^{10^{12}}}}"  # an input no other test uses
    # integer gold: doit() -> exact integer power; symbolic gold: evalf() -> mpmath power at huge precision
    first = grade_many([(tower, "$5$"), (tower, "$x+1$")], FAST, workers=1)
    assert [r.verdict for r in first] == [Verdict.TIMEOUT] * 2
    assert {"ipow", "mpfpow"} <= _memo_kinds()
    golds = ["7", r"\frac{1}{3}", "x+2", r"\sqrt{2}", "9", "11", r"\pi", "y-3", "13", "0.5", "2x", "17"]
    skips = pool.skips
    res = grade_many([(f"Thinking {i}...\n{tower}", f"${g}$") for i, g in enumerate(golds)], FAST, workers=1)
    assert [r.verdict for r in res] == [Verdict.TIMEOUT] * len(golds)
    assert pool.skips - skips >= len(golds) // 2  # all of them on a quiet machine
    for w in pool.idle:  # fresh workers learn the records from the pool with their first item
        os.kill(w.proc.pid, signal.SIGKILL)
        w.proc.wait()
    assert grade(r"\boxed{1}", "$1$", FAST).correct  # a fresh worker, started now
    skips = pool.skips
    assert grade(tower, "$19$", FAST).verdict is Verdict.TIMEOUT and pool.skips > skips


def test_overrun_memo_needs_the_same_arguments_and_no_more_budget():
    pool = grading._pool()
    nested = r"\boxed{" + "{" * 3000 + "2" + "}" * 3000 + "}"
    assert grade(nested, "$2$", FAST).verdict is Verdict.TIMEOUT
    skips = pool.skips  # the same input with twice the budget is computed again (and still overruns)
    assert grade(nested, "$2$", replace(FAST, timeout_s=2.0)).verdict is Verdict.TIMEOUT and pool.skips == skips
    assert grade(nested.replace("2", "3"), "$3$", FAST).verdict is Verdict.TIMEOUT and pool.skips == skips
    # the same conversion inside another completion, with a smaller budget: stopped at once
    assert grade("other text " + nested, "$2$", replace(FAST, timeout_s=1.2)).verdict is Verdict.TIMEOUT
    assert pool.skips == skips + 1
    records = len(pool.overran)  # steps that finish are never recorded
    assert grade_many([(r"so \boxed{2^{100}}", "$2^{100}$"), (r"\boxed{\frac{1}{2}}", "$0.5$")], FAST)[1].correct
    assert len(pool.overran) == records


def test_overrun_memo_records_only_a_step_that_burned_the_cpu():
    from openrs_cli.grading import worker

    def on_alarm(signum, frame):
        raise worker._Deadline

    def busy(_):
        while True:
            pass
    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        worker.forget_overruns()
        sleepy = worker._guard("latex", lambda _: time.sleep(5), worker._latex_key)
        spin = worker._guard("latex", busy, worker._latex_key)
        with pytest.raises(worker._Deadline):
            worker._limited(lambda: sleepy("a"), 0.3)
        assert not worker._OVERRAN  # it waited: a busy machine must not make a step look expensive
        with pytest.raises(worker._Deadline):
            worker._limited(lambda: spin("b"), 0.3)
        assert len(worker._OVERRAN) == 1 and 0.15 < next(iter(worker._OVERRAN.values())) <= 0.35
        skips = worker._SKIPS[0]
        with pytest.raises(worker._Deadline):
            worker._limited(lambda: spin("b"), 0.3)  # the same arguments, the same budget: at once
        assert worker._SKIPS[0] == skips + 1
        with pytest.raises(worker._Deadline):
            worker._limited(lambda: spin("c"), 0.3)  # other arguments: run
        with pytest.raises(worker._Deadline):
            worker._limited(lambda: spin("b"), 0.6)  # twice the budget: run again
        assert worker._SKIPS[0] == skips + 1
    finally:
        signal.signal(signal.SIGALRM, old)
        worker.forget_overruns()


def test_overrun_memo_gives_the_straightforward_verdicts(monkeypatch):
    from openrs_cli.rewards import reference
    monkeypatch.setattr(reference, "_TIMEOUT", 1)  # the straightforward scorer at the same 1 s limit
    pool = grading._pool()
    tower, nested = r"so \boxed{10^{10^{10^{13}}}}", r"\boxed{" + "{" * 4000 + "4" + "}" * 4000 + "}"
    grade_many([(tower, "$4$"), (tower, "$y$"), (nested, "$4$")], FAST, workers=1)  # records to replay below
    pairs = [(tower, "$4$"), (nested, "$4$"), (r"\boxed{4}", "$4$"), (tower, r"$\frac{4}{3}$"),
             (nested, "$x$"), (r"\boxed{0.25}", r"$\frac{1}{4}$"), (tower, "$y^2$"), (nested, "$5$"),
             (r"\boxed{10^{10}}", "$10000000000$"), ("\\boxed{10^{10^{10^{13}}}}", "$10^{10^{10^{13}}}$")]
    want = [reference.reference_correct(c, g, "all") for c, g in pairs]
    skips = pool.skips
    got = grade_many(pairs, FAST)
    assert [r.correct for r in got] == want == [False, False, True, False, False, True, False, False, True, True]
    assert pool.skips - skips >= 3  # verdicts of replayed steps, not only of recomputed ones


def test_overrun_memo_leaves_cached_and_finishing_steps_alone():
    code = r'''
import signal
from openrs_cli.grading import worker as W
from openrs_cli.grading.config import PAPER_REWARD
import math_verify
W.install_guards()
def on_alarm(signum, frame):
    raise W._Deadline
signal.signal(signal.SIGALRM, on_alarm)
latex_key = W._key("latex", W._latex_key, ("\\frac{3}{7}",))
assert W._grade_one(r"so \boxed{\frac{3}{7}}", "$\\frac{3}{7}$", PAPER_REWARD).correct
W.remember_overruns([(latex_key, 100.0)])  # as if another worker had overrun on it
assert W._grade_one(r"then \boxed{\frac{3}{7}}", "$\\frac{6}{14}$", PAPER_REWARD).correct  # cached: answered
doit_key = W._key("doit", W._doit_key, (math_verify.parse("$\\frac{5}{9}$")[0],))
W.remember_overruns([(doit_key, 1.0)])  # recorded at a smaller budget than this call has: it runs, finishes
assert W._grade_one(r"so \boxed{\frac{5}{9}}", "$0.5555555555$", PAPER_REWARD).verdict.value in ("wrong", "correct")
print(W._SKIPS[0], latex_key in W._OVERRAN, doit_key in W._OVERRAN)
'''
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["0", "True", "False"]  # nothing skipped; the finished step's record dropped
