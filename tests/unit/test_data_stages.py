"""Unit tests of the data-build stages: spec loading, normalisation, multi-part rule, dedup, decontamination."""

from __future__ import annotations

import pytest

from openrs_cli import evalsets
from openrs_cli.data import filters, load_spec
from openrs_cli.data.decontam import EvalIndex, decontaminate
from openrs_cli.errors import DataError


def _row(problem, solution="", answer="1", source="t", i=0):
    return {"problem": problem, "solution": solution, "answer": answer, "source": source, "_pool": "t", "_row": i}


def test_presets_and_overrides():
    spec = load_spec(
        "open-rs",
        ["seed=7", "mix.easy=10", "sources.open-deepscaler.solvable.samples=2"],
        ["open-s1=a.jsonl", "open-deepscaler=b.parquet"],
        ["problem=question"],
    )
    assert spec.seed == 7 and spec.pools() == {"open-s1": 3000, "open-deepscaler": 3000, "easy": 10}
    assert spec.sources["open-s1"].path == "a.jsonl" and spec.sources["open-deepscaler"].path == "b.parquet"
    assert spec.sources["open-deepscaler"].solvable.samples == 2
    assert all(s.problem_column == "question" for s in spec.sources.values())
    assert spec.sources["open-s1"].solvable.keep_easy is False
    assert load_spec("open-deepscaler").sources["open-deepscaler"].path == "agentica-org/DeepScaleR-Preview-Dataset"


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("custom",), "has no path"),
        (("open-rsx",), "did you mean 'open-rs'"),
        (("custom", ["sede=1"], ["x.jsonl"]), "unknown key 'sede'; did you mean 'seed'"),
        (("custom", ["sources.custom.limt=3"], ["x.jsonl"]), "did you mean 'sources.custom.limit'"),
        (("custom", ["mix.nope=3"], ["x.jsonl"]), "mix pool 'nope'"),
        (("open-rs", [], ["x.jsonl"]), "write --source NAME=PATH"),
        (("custom", [], ["x.jsonl"], ["question"]), "ROLE=COLUMN"),
        (("custom", ["decontam.benchmarks=[aime25]"], ["x.jsonl"]), "unknown benchmark 'aime25'"),
    ],
)
def test_spec_errors_are_one_line(args, fragment):
    with pytest.raises(DataError) as e:
        load_spec(*args)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_yaml_spec_with_base(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text(
        "base: open-rs\nseed: 3\nmix: {open-s1: 5, open-deepscaler: 5, easy: 0}\n"
        "sources:\n  open-s1: {path: s1.jsonl}\n  open-deepscaler: {path: ds.jsonl, limit: 9}\n"
    )
    spec = load_spec(str(p))
    assert spec.name == "mine" and spec.seed == 3 and spec.sources["open-deepscaler"].limit == 9
    assert spec.sources["open-s1"].problem_column == "question"  # inherited from the preset


def test_normalise_text():
    assert filters.normalise_text("  a\u00a0\t b \r\n\r\n\r\n\nc  ") == "a b\n\nc"
    rows, dropped = filters.normalise([_row("  "), _row(" x  y ")])
    assert [r["problem"] for r in rows] == ["x y"] and dropped == {"empty_problem": 1}


@pytest.mark.parametrize(
    "problem, solution, reason",
    [
        ("Let f(x)=x^2. (a) Find f(1). (b) Find f(2).", None, "parts"),
        ("Given a triangle.\n(1) Find the area; (2) find the perimeter.", None, "parts"),
        ("(Ⅰ) Find the period; (Ⅱ) find the maximum.", None, "parts"),
        ("Find the area of the ring and calculate the circumference of the circle.", None, "two_asks"),
        ("Compute x.", "So x = \\boxed{3} and y = \\boxed{4}.", "several_boxed"),
        ("What is f(1)+f(2)?", None, None),
        ("Find the sum of a and b.", None, None),
        (
            "Which is largest? $\\textbf{(A)}\\ 1 \\qquad \\textbf{(B)}\\ 2$",
            "\\boxed{2} so \\boxed{\\textbf{(B)}}",
            None,
        ),
        ("Compute 18.", "the answer is $\\boxed{18}$, choice \\boxed{B}", None),
    ("Which is largest?\n(a) 1;\n(b) 2;\n(c) 3;\n(d) 4;\n(e) 5", None, None),
    ("Which is largest?\n(a) 1;\n(b) 2;\n(c) 3;\n(d) 4", None, "parts"),
    ],
)
def test_multipart_rule(problem, solution, reason):
    assert filters.multipart_reason(problem, solution) == reason


def test_dedup_exact_and_near_keeps_first():
    base = (
        "Points A and B are on a circle of radius 5 and AB = 6. Point C is the midpoint of the minor arc AB. "
        "What is the length of the line segment AC?"
    )
    rows = [
        _row(base, i=0),
        _row(base.upper(), i=1),
        _row(base.replace("AB = 6", "AB=6"), i=2),
        _row("A completely different problem about counting sheep in a field of grass.", i=3),
    ]
    kept, dropped, pairs = filters.dedup(rows, near=True, shingle_words=5, threshold=0.8)
    assert [r["_row"] for r in kept] == [0, 3]
    assert dropped == {"exact_duplicate": 1, "near_duplicate": 1}
    assert pairs[0]["kept"] == base
    kept, dropped, _ = filters.dedup(rows, near=False, shingle_words=5, threshold=0.8)
    assert [r["_row"] for r in kept] == [0, 2, 3] and dropped == {"exact_duplicate": 1}


def test_decontamination_lists_every_hit():
    aime = evalsets.load("aime24")[0]
    math = next(r for r in evalsets.load("math500") if len(r["problem"].split()) < 8)
    rows = [
        _row(aime["problem"].replace(" ", "  "), i=0),  # reformatted copy
        _row("Warm-up first. " + math["problem"] + " Then relax.", i=1),  # short eval problem inside a longer one
        _row("Compute the number of sheep in a field of 40 cows and 7 sheep.", i=2),
    ]
    index = EvalIndex(["aime24", "math500"], 13)
    kept, dropped, hits = decontaminate(rows, index)
    assert [r["_row"] for r in kept] == [2] and dropped == {"contaminated": 2}
    found = {(h["benchmark"], h["problem_id"]): h for h in hits}
    assert ("aime24", aime["id"]) in found and ("math500", math["id"]) in found
    h = found[("aime24", aime["id"])]
    assert h["benchmark_problem"] == aime["problem"] and h["train_problem"] == rows[0]["problem"]
    assert len(h["ngram"].split()) == 13


def test_decontamination_ignores_boilerplate_shared_by_eval_problems():
    index = EvalIndex(["aime24"], 13)
    assert index.ignored > 0
    boiler = "where m and n are relatively prime positive integers find m n"
    shared = [
        r
        for r in evalsets.load("aime24")
        if boiler in " ".join(filters.re.findall(r"[a-z0-9]+", r["problem"].lower()))
    ]
    assert len(shared) >= 2
    assert not index.matches("The probability is m/n " + boiler.replace("m n", "m+n") + ".")


def test_hub_source_offline_is_one_line(cli, tmp_path):
    code, _, err = cli("data", "build", "open-deepscaler", "--out", str(tmp_path / "o"))
    assert code == 2 and "could not load Hub dataset 'agentica-org/DeepScaleR-Preview-Dataset'" in err
    assert "pass --source FILE" in err and "\n" not in err and not (tmp_path / "o").exists()


def test_show_spec_prints_resolved_json(cli):
    import json

    code, out, _ = cli("data", "build", "open-rs", "--show-spec", "mix.easy=5")
    spec = json.loads(out)
    assert code == 0 and spec["mix"] == {"open-s1": 3000, "open-deepscaler": 3000, "easy": 5}
    assert spec["sources"]["open-deepscaler"]["solvable"]["model"] == "Qwen/Qwen2.5-Math-7B-Instruct"
    assert "{problem}" in spec["sources"]["open-deepscaler"]["solvable"]["prompt"]


def test_solvable_split_by_solve_rate_with_a_model_that_solves_some():
    """The split the integration test can only see as 0 == 0 (a random tiny model solves nothing): a generator
    behind the same signature answers row i correctly in i of its 4 samples; threshold 0.5 sends rows with 2, 3
    or 4 correct samples to the easy pool, and the histogram counts correct samples per problem."""
    from openrs_cli.data.solvable import split_solvable
    from openrs_cli.data.spec import SolvableSpec
    from openrs_cli.evaluate.backend_base import Completion

    rows = [{"problem": f"p{i}", "answer": str(10 + i)} for i in range(5)]

    def generate(model, prompts, samples, **kw):
        assert model == "m" and samples == 4 and len(prompts) == 5
        return [[Completion(f"so $\\boxed{{{10 + i if s < i else 99}}}$", 5, "stop") for s in range(samples)]
                for i in range(len(prompts))]

    hard, easy, stats = split_solvable(rows, SolvableSpec(model="m", samples=4, threshold=0.5), 0, generate)
    assert [r["problem"] for r in hard] == ["p0", "p1"] and [r["problem"] for r in easy] == ["p2", "p3", "p4"]
    assert stats["correct_histogram"] == {"0": 1, "1": 1, "2": 1, "3": 1, "4": 1}
