"""Reward functions: every paper formula pinned with worked numbers, the fixed variant, and identity with the
straightforward Open-RS-style scorer on a few hundred synthetic completions."""

from __future__ import annotations

import math

import pytest

from benchmarks.lib.reference_rewards import reference_rewards, synthetic_stream
from openrs_cli.errors import DataError
from openrs_cli.recipes.schema import RewardsSpec
from openrs_cli.rewards import build_reward_funcs, make_reward
from openrs_cli.rewards.funcs import cosine_value, kimi_length, repetition_value

GOLD = r"We find $x = \boxed{5}$."
PAPER = RewardsSpec(variant="paper", funcs=["accuracy"], cosine_max_len=100)
FIXED = RewardsSpec(variant="fixed", funcs=["accuracy"], cosine_max_len=100)


def conv(*texts):
    return [[{"role": "assistant", "content": t}] for t in texts]


def padded(answer: str, n: int) -> str:
    core = rf"\boxed{{{answer}}}"
    return " " * (n - len(core)) + core


def test_build_reward_funcs_names_and_weights():
    spec = RewardsSpec(funcs=["format", "cosine"], weights=[1.0, 2.0], cosine_max_len=3584)
    funcs, weights = build_reward_funcs(spec)
    assert [f.__name__ for f in funcs] == ["format", "cosine"] and weights == [1.0, 2.0]
    names = ["accuracy", "format", "tag_count", "cosine", "repetition_penalty", "length", "toy_digits"]
    funcs, weights = build_reward_funcs(RewardsSpec(funcs=names, cosine_max_len=10))
    assert [f.__name__ for f in funcs] == names and weights == [1.0] * 7
    with pytest.raises(ValueError, match="unknown reward"):
        make_reward("nope", PAPER)


def test_paper_format_and_tag_count():
    fmt, tags = make_reward("format", PAPER), make_reward("tag_count", PAPER)
    texts = ["reasoning\n</think>\nanswer", "no close tag", "a\n</think>\nb\n</think>\n", "x</think>y",
             "<think>\nr\n</think>\n", "<think>\n<think>\n\n</think>\n"]
    assert fmt(completions=conv(*texts)) == [1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert tags(completions=conv(*texts)) == [0.5, 0.0, 0.0, 0.0, 1.0, 0.5]
    assert fmt(completions=texts[:1]) == [1.0]  # plain (non-conversational) completions too


@pytest.mark.parametrize(("length", "correct", "want"), [
    (0, True, 1.0), (50, True, 0.75), (100, True, 0.5), (200, True, 1.0),
    (0, False, 0.0), (50, False, -0.25), (100, False, -0.5), (200, False, 0.0), (300, False, -0.5),
])
def test_paper_cosine_formula(length, correct, want):
    kw = {"min_value_wrong": 0.0, "max_value_wrong": -0.5, "min_value_correct": 0.5, "max_value_correct": 1.0}
    assert cosine_value(length, 100, correct, **kw) == pytest.approx(want)


def test_paper_cosine_reward_end_to_end():
    cos = make_reward("cosine", PAPER)
    texts = [padded("5", 50), padded("5", 100), padded("5", 200), padded("6", 50), padded("6", 100),
             padded("6", 200), "no answer at all"]
    got = cos(completions=conv(*texts), solution=[GOLD] * len(texts))
    want = [0.75, 0.5, 1.0, -0.25, -0.5, 0.0, -0.5 + 0.25 * (1 + math.cos(math.pi * 16 / 100))]
    assert got == pytest.approx(want)
    assert cos(completions=conv(padded("6", 50)), solution=["no math here"]) == [1.0]  # gold's fault: 1.0


def test_paper_accuracy():
    acc = make_reward("accuracy", PAPER)
    texts = [r"so \boxed{5}", r"so \boxed{5.0}", r"\boxed{\frac{10}{2}}", r"\boxed{6}", "5", r"\boxed{10^{10^{10^{10}}}}"]
    assert acc(completions=conv(*texts), solution=[GOLD] * 6) == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert acc(completions=conv(r"\boxed{6}"), solution=["no math"]) == [1.0]
    with pytest.raises(DataError, match="solution"):
        acc(completions=conv("x"))


def test_repetition_penalty():
    assert repetition_value("a b c a b c", 3, -1.0) == pytest.approx(-0.25)
    assert repetition_value("A b C a B c", 3, -1.0) == pytest.approx(-0.25)  # lower-cased
    assert repetition_value("one two", 3, -1.0) == 0.0 and repetition_value("", 3, -1.0) == 0.0
    assert repetition_value("x x x x x", 3, -0.5) == pytest.approx(-0.5 * (1 - 1 / 3))
    rep = make_reward("repetition_penalty", RewardsSpec(repetition_n_grams=2, repetition_max_penalty=-2.0))
    assert rep(completions=conv("a b a b", "a b c d")) == pytest.approx([-2.0 * (1 - 2 / 3), 0.0])


def test_kimi_length_formula_and_paper_reward():
    assert kimi_length([10, 20, 30], [True, False, True]) == [0.5, 0.0, -0.5]
    assert kimi_length([10, 20, 30], [False, False, False]) == [0.0, 0.0, -0.5]
    assert kimi_length([7, 7], [True, False]) == [0.0, 0.0]
    ln = make_reward("length", PAPER)
    texts = [padded("5", 20), padded("6", 30), padded("5", 40), padded("6", 60)]
    # batch-wide min 20 / max 60: lambdas 0.5, 0.25, 0.0, -0.5; wrong ones capped at 0
    assert ln(completions=conv(*texts), solution=[GOLD] * 4) == pytest.approx([0.5, 0.0, 0.0, -0.5])
    # an unparseable gold counts as correct in the paper
    assert ln(completions=conv(padded("6", 20), padded("6", 60)), solution=["none", GOLD]) == [0.5, -0.5]


def test_fixed_accuracy_cosine_and_length_use_answer_tokens_and_none():
    acc, cos, ln = (make_reward(n, FIXED) for n in ("accuracy", "cosine", "length"))
    texts = conv(r"\boxed{5}", r"\boxed{6}", r"\boxed{7}")
    kw = {"solution": ["no math", "no math", "no math"], "answer": ["5", "5", None]}
    assert acc(completions=texts, **kw) == [1.0, 0.0, None]  # answer column wins; no gold -> None
    ids = [[0] * 0, [0] * 100, [0] * 250]
    got = cos(completions=texts, completion_ids=ids, **kw)
    assert got[0] == pytest.approx(1.0) and got[1] == pytest.approx(-0.5) and got[2] is None
    assert cos(completions=conv(r"\boxed{6}"), completion_ids=[[0] * 300], answer=["5"], solution=[""]) == [-0.5]
    assert cos(completions=conv(r"\boxed{6}"), completion_ids=[[]], answer=["5"], solution=[""]) == [-1.0]
    spec = RewardsSpec(variant="fixed", funcs=["cosine"], cosine_max_len=100, cosine_min_value_wrong=-0.7)
    assert make_reward("cosine", spec)(completions=conv(r"\boxed{6}"), completion_ids=[[]], answer=["5"],
                                       solution=[""]) == [-0.7]
    # length per prompt group, in tokens
    prompts = ["p1", "p1", "p2", "p2"]
    got = ln(prompts=prompts, completions=conv(r"\boxed{5}", r"\boxed{5}", r"\boxed{6}", r"\boxed{5}"),
             completion_ids=[[0] * 10, [0] * 30, [0] * 5, [0] * 50], answer=["5"] * 4, solution=[""] * 4)
    assert got == [0.5, -0.5, 0.0, -0.5]
    with pytest.raises(ValueError, match="tokenizer"):
        cos(completions=texts, **kw)


def test_fixed_format_and_tags():
    fmt, tags = make_reward("format", FIXED), make_reward("tag_count", FIXED)
    texts = ["r </think> <answer> 5 </answer>", "<think>r</think>\n<answer>\\boxed{5}</answer>",
             "r </think> no answer block", "r </think> <answer> </answer>", "<answer>5</answer> r </think>",
             "r</think><think>x</think><answer>5</answer>"]
    assert fmt(completions=conv(*texts)) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert tags(completions=conv(*texts)) == [1.0, 1.0, 0.5, 1.0, 1.0, 0.75]

    class Spec(RewardsSpec):
        format_require_answer: bool = False
    loose = Spec(variant="fixed", funcs=["format"])
    assert make_reward("format", loose)(completions=conv(*texts[:3])) == [1.0, 1.0, 1.0]


def test_toy_digits_and_logged_metrics():
    toy = make_reward("toy_digits", PAPER)
    assert toy(completions=conv("a1b2", "", "123")) == [0.5, 0.0, 1.0]
    logged = {}
    make_reward("accuracy", PAPER)(completions=conv(r"\boxed{5}", "x"), solution=[GOLD, "none"],
                                   log_metric=lambda k, v: logged.__setitem__(k, v))
    assert logged == {"grading/timed_out_frac": 0.0, "grading/unparseable_gold_frac": 0.5}


@pytest.mark.slow
def test_identical_to_straightforward_scorer():
    """Pathological completions included (distinct ones: the inputs where the time limit decides)."""
    rows = synthetic_stream(n_prompts=40, group=6, seed=3, weights=(0.33, 0.3, 0.15, 0.16, 0.06),
                            distinct_pathological=True)
    contents = [c for r in rows for c in r["completions"]]
    sols = [r["solution"] for r in rows for _ in r["completions"]]
    kinds = [k for r in rows for k in r["kinds"]]
    assert len(contents) == 240 and set(kinds) >= {"right", "wrong", "equal", "missing", "pathological"}
    spec = RewardsSpec(variant="paper", funcs=["accuracy", "cosine", "length"], cosine_max_len=3584)
    acc, cos, ln = build_reward_funcs(spec)[0]
    got_acc, got_cos = [], []
    for i in range(0, 240, 72):
        got_acc += acc(completions=conv(*contents[i:i + 72]), solution=sols[i:i + 72])
        got_cos += cos(completions=conv(*contents[i:i + 72]), solution=sols[i:i + 72])
    assert got_acc == reference_rewards("accuracy", contents, sols)
    assert 0 < sum(got_acc) < 240
    assert got_cos == reference_rewards("cosine", contents, sols, max_len=3584)
    assert ln(completions=conv(*contents[:36]), solution=sols[:36]) == reference_rewards("length", contents[:36],
                                                                                         sols[:36])


def test_fixed_accuracy_reads_a_numeric_answer_column():
    acc = make_reward("accuracy", FIXED)
    # an int/float `answer` column (no solution) was ignored, so every completion got None (no signal)
    assert acc(completions=conv(r"\boxed{27}", r"\boxed{26}", r"\boxed{0.5}"), answer=[27, 27, 0.5],
               solution=[None, None, None]) == [1.0, 0.0, 1.0]
