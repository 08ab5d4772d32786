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
# No wall-clock or CPU-time bounds in these tests: the limit counts CPU time, so a busy machine changes how long
# a test takes, never what it asserts (tests/unit/test_grading_load.py runs the verdicts beside CPU hogs).


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
def test_adversarial_is_stopped(name):
    assert not grade(ADVERSARIAL[name], "$100$", FAST).correct


def test_a_gold_that_runs_out_of_time_is_timeout_not_unparseable():
    """The paper variant rewards an unparseable gold with 1.0 for every completion: a gold that merely ran out of
    time must not look unparseable (before: GOLD_UNPARSEABLE, cached for the rest of the run)."""
    r = grade(r"\boxed{1}", "$" + "{" * 5000 + "1" + "}" * 5000 + "$", FAST)
    assert r.verdict is Verdict.TIMEOUT


def test_hung_worker_is_killed_and_replaced(monkeypatch):
    from openrs_cli.grading import pool as pool_mod

    grade(r"\boxed{1}", "$1$", FAST)
    pool = grading._pool()
    assert pool.idle
    # a stopped process burns no CPU: only the wall-clock safety net stops it (shortened here)
    monkeypatch.setattr(pool_mod, "_WALL_FACTOR", 1.5)
    os.kill(pool.idle[-1].proc.pid, signal.SIGSTOP)  # the next one taken: stuck where no signal reaches it
    r = grade(r"\boxed{1}", "$1$", FAST)
    assert r.verdict is Verdict.TIMEOUT
    assert grade(r"\boxed{1}", "$1$", FAST).correct  # replaced worker grades again


def test_dead_worker_is_replaced_without_losing_work():
    grade(r"\boxed{1}", "$1$", FAST)
    for w in grading._pool().idle:
        os.kill(w.proc.pid, signal.SIGKILL)
        w.proc.wait()
    assert [r.correct for r in grade_many([(r"\boxed{1}", "$1$"), (r"\boxed{2}", "$1$")], FAST)] == [True, False]


def test_batch_with_slow_items_gives_every_verdict():
    pairs = [(rf"\boxed{{{i}}}", "$5$") for i in range(30)]
    pairs[3] = (ADVERSARIAL["tower"], "$5$")
    pairs[17] = (ADVERSARIAL["nested"], "$5$")
    pairs[18] = (ADVERSARIAL["nested"], "$6$")
    res = grade_many(pairs, FAST, workers=1)  # extra workers join when every worker is stuck
    assert [r.correct for r in res] == [i == 5 for i in range(30)]
    assert res[3].verdict is Verdict.TIMEOUT
    # answers still due from items taken over from stuck workers are dropped, not mixed into the next call
    again = grade_many([(rf"\boxed{{{i}}}", "$7$") for i in range(20)], FAST, workers=1)
    assert [r.correct for r in again] == [i == 7 for i in range(20)]


# --- the worker's CPU-time limit, in this process (main thread, SIGPROF as the worker sets it) ---------------

@pytest.fixture()
def worker_limit():
    from openrs_cli.grading import worker as W

    old = signal.signal(signal.SIGPROF, W._on_deadline)
    W._GOLD_CACHE.clear()
    W._VERIFY_CACHE.clear()
    yield W
    signal.setitimer(signal.ITIMER_PROF, 0)
    signal.signal(signal.SIGPROF, old)
    W._GOLD_CACHE.clear()
    W._VERIFY_CACHE.clear()


def _burn_forever():
    x = 0
    while True:  # stopped only by the CPU-time limit
        x += 1


def test_limit_counts_cpu_time_not_wall_time(worker_limit):
    W = worker_limit
    # waiting (as a busy machine makes a step wait for a core) uses no CPU: it is not stopped at 0.2 s ...
    assert W._limited(lambda: time.sleep(0.6) or "done", 0.2) == "done"
    # ... and computing is, however long that takes in wall time
    with pytest.raises(W._Deadline):
        W._limited(_burn_forever, 0.2)


def test_a_gold_parse_that_times_out_once_changes_no_later_verdict(worker_limit, monkeypatch):
    """Before: the timed-out parse was cached as unparseable, and every later completion of that prompt got
    GOLD_UNPARSEABLE (reward 1.0 in the paper variant), right or wrong."""
    import math_verify

    W = worker_limit
    real, calls = math_verify.parse, []

    def parse_slow_once(text, *a, **kw):
        calls.append(text)
        if len(calls) == 1:  # the first parse (the gold's) is slow this once: a cold cache, say
            _burn_forever()
        return real(text, *a, **kw)

    monkeypatch.setattr(math_verify, "parse", parse_slow_once)
    cfg = replace(PAPER_REWARD, timeout_s=0.3)
    gold = r"$\left( 3, \frac{\pi^2}{2} \right)$"
    assert W._grade_one(r"so \boxed{(3, \frac{\pi^2}{2})}", gold, cfg).verdict is Verdict.TIMEOUT
    assert W._grade_one(r"so \boxed{(3, \frac{\pi^2}{2})}", gold, cfg).verdict is Verdict.CORRECT
    assert W._grade_one(r"so \boxed{(4, \pi)}", gold, cfg).verdict is Verdict.WRONG


def test_ctrl_c_reaches_the_parent_only_and_no_worker_outlives_it():
    """A terminal Ctrl-C goes to the whole foreground process group: before, every grading worker printed its own
    KeyboardInterrupt traceback (hundreds of lines during start-up). Workers now run in their own session, and die
    with the process that started them."""
    import psutil

    code = ("import sys, time; from openrs_cli.grading import grade, _pool; grade(r'\\boxed{1}', '$1$'); "
            "print(' '.join(str(w.proc.pid) for w in _pool().idle), flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    pids = [int(x) for x in p.stdout.readline().split()]
    assert pids and all(psutil.pid_exists(x) for x in pids)
    os.killpg(p.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    _, err = p.communicate(timeout=60)
    assert err.count("KeyboardInterrupt") == 1, err  # the parent's own, no worker's
    for x in pids:
        try:
            psutil.Process(x).wait(timeout=30)
        except psutil.NoSuchProcess:
            pass
    assert not any(psutil.pid_exists(x) and psutil.Process(x).status() != psutil.STATUS_ZOMBIE for x in pids)


@pytest.mark.parametrize(("text", "want"), [
    (r"\boxed{1} and \fbox{2} and \boxed {3}", ["1", "2", "3"]),
    (r"\boxed{\boxed{1}}", [r"\boxed{1}", "1"]),  # outer first: in order of start
    (r"\boxed{7} and \boxed{8", ["7"]),
    (r"} \boxed{ (C) }", ["(C)"]),
    ("\\boxed{" * 3000 + "1", []),
])
def test_all_boxed_is_the_same_reader(text, want):
    from openrs_cli.data import filters
    from openrs_cli.grading import all_boxed

    assert all_boxed(text) == want
    assert not hasattr(filters, "all_boxed")  # one reader: data filters use grading's
