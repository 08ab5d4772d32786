"""Task specs, the paper's prompt, data loading, and the generations/results store (resume rules)."""

import json

import pytest

from openrs_cli.errors import DataError, RunDirError, TaskError
from openrs_cli.evaluate import store
from openrs_cli.evaluate.tasks import (
    PROMPT,
    TASKS,
    build_messages,
    get_task,
    latex_delimited,
    load_task,
    parse_tasks,
    task_for_id,
)

PAPER_PROMPT = (
    "Solve the following math problem efficiently and clearly.  The last line of your response should be of the "
    "following format: 'Therefore, the final answer is: $\\boxed{ANSWER}$. I hope it is correct' (without quotes) "
    "where ANSWER is just the final number or expression that solves the problem. Think step by step before "
    "answering.\n\nWhat is 1+1?"
)


def test_prompt_is_the_papers_verbatim():
    assert PROMPT.format(problem="What is 1+1?") == PAPER_PROMPT
    assert "clearly.  The last" in PROMPT  # two spaces
    msgs = build_messages("What is 1+1?")
    assert msgs == [{"role": "user", "content": PAPER_PROMPT}]  # one user turn, no system prompt


def test_five_tasks_with_the_papers_fields():
    assert list(TASKS) == ["aime24", "amc23", "math_500", "minerva", "olympiadbench"]
    kinds = {n: (t.gold_field, t.gold_kind) for n, t in TASKS.items()}
    assert kinds == {"aime24": ("answer", "expr"), "amc23": ("answer", "expr"), "math_500": ("solution", "latex"),
                     "minerva": ("solution", "latex"), "olympiadbench": ("answer", "latex")}
    assert TASKS["olympiadbench"].hub_prompt_field == "question"
    assert TASKS["math_500"].hub_id == "HuggingFaceH4/MATH-500" and TASKS["math_500"].hub_split == "test"
    for name, t in TASKS.items():
        assert len(load_task(t).problems) == t.n_problems, name


def test_unknown_task_names_the_valid_ones():
    with pytest.raises(TaskError, match="aime24, amc23, math_500, minerva, olympiadbench"):
        parse_tasks("aime24,gsm8k")
    assert [t.name for t in parse_tasks("math500,aime24,aime24")] == ["math_500", "aime24"]
    assert len(parse_tasks("all")) == 5


def test_ids_map_back_to_tasks():
    assert task_for_id("aime24-67").name == "aime24"
    assert task_for_id("test/algebra/2584.json").name == "math_500"
    assert task_for_id("minerva-3").name == "minerva"
    assert task_for_id("olympiadbench-1606").name == "olympiadbench"
    assert task_for_id("gsm8k-1") is None


def test_gold_fields_and_limit():
    aime = {p.id: p for p in load_task(get_task("aime24")).problems}
    assert aime["aime24-67"].gold == "025"
    m5 = load_task(get_task("math_500"), limit=5)
    assert len(m5.problems) == 5 and "\\boxed" in m5.problems[0].gold  # full solution as gold
    assert m5.sha256 and m5.source == "bundled"
    ob = {p.id: p.gold for p in load_task(get_task("olympiadbench")).problems}
    assert ob["olympiadbench-1610"] == "$\\frac{1}{2 n+2}$" and ob["olympiadbench-1606"] == "$2$"


def test_coverage_marks_limit_cuts_and_other_data_as_partial(tmp_path):
    """results.json's `complete`/`coverage` per task: only the whole benchmark is complete."""
    from openrs_cli import evalsets
    from openrs_cli.evaluate import metrics

    aime = get_task("aime24")
    assert load_task(aime).coverage() == {"benchmark_problems": 30, "complete": True, "coverage": "30/30 problems"}
    assert load_task(aime, limit=30).coverage()["complete"] is True
    assert load_task(aime, limit=5).coverage() == {"benchmark_problems": 30, "complete": False,
                                                   "coverage": "5/30 problems"}
    copy = tmp_path / "aime24.jsonl"  # the bundled file itself, passed with --data: the whole benchmark
    copy.write_bytes(evalsets.path("aime24").read_bytes())
    assert load_task(aime, str(copy)).coverage()["complete"] is True
    mine = tmp_path / "mine.jsonl"
    mine.write_text('{"id": "a", "problem": "1+1?", "answer": "2"}\n')
    cov = load_task(aime, str(mine)).coverage()
    assert cov["complete"] is False and cov["coverage"] == f"1 problems from {mine}, not the 30-problem benchmark"
    tasks = {"aime24": {"pass@1": 0.5, **load_task(aime, limit=5).coverage()},
             "amc23": {"pass@1": 0.25, **load_task(get_task("amc23")).coverage()}}
    assert metrics.average(tasks) == {"pass@1": 0.25, "tasks": ["amc23"], "left_out": ["aime24"]}


def test_latex_delimited():
    assert latex_delimited("2n-2") == "$2n-2$"
    assert latex_delimited("$x$") == "$x$"
    assert latex_delimited("so \\boxed{3}") == "so \\boxed{3}"


def test_local_jsonl_and_bad_data(tmp_path):
    p = tmp_path / "mine.jsonl"
    p.write_text('{"id": "a", "problem": "1+1?", "answer": "2"}\n{"id": "b", "problem": "2+2?", "answer": "4"}\n')
    td = load_task(get_task("aime24"), str(p))
    assert [(x.id, x.gold) for x in td.problems] == [("a", "2"), ("b", "4")]
    with pytest.raises(DataError, match="no such file"):
        load_task(get_task("aime24"), str(tmp_path / "nope.jsonl"))
    p.write_text('{"id": "a", "problem": "1+1?"}\n')
    with pytest.raises(DataError, match="lacks"):
        load_task(get_task("aime24"), str(p))
    p.write_text('{"id": "a", "problem": "x", "answer": "1"}\n{"id": "a", "problem": "y", "answer": "2"}\n')
    with pytest.raises(DataError, match="duplicate"):
        load_task(get_task("aime24"), str(p))


def test_hub_data_offline_is_a_clean_error():
    with pytest.raises(DataError, match="--data bundled"):
        load_task(get_task("aime24"), "hub")


def rec(i, s=0, task="aime24"):
    return {"task": task, "id": f"aime24-{i}", "sample": s, "completion": "x"}


def test_generations_resume_rules(tmp_path):
    path = tmp_path / "generations.jsonl"
    with store.GenerationWriter(path) as w:
        w.write_batch([rec(60), rec(60, 1)])
        w.write_batch([rec(60), rec(61)])  # a duplicate key: the first one wins on reading
    # a kill mid-write leaves a torn last line
    with open(path, "a") as f:
        f.write('{"task": "aime24", "id": "aime24-62", "sam')
    got, bad = store.read_generations(path)
    assert [(r["id"], r["sample"]) for r in got] == [("aime24-60", 0), ("aime24-60", 1), ("aime24-61", 0)]
    assert bad == 0
    # the next writer cuts the fragment before appending, so no record is glued onto it
    with store.GenerationWriter(path) as w:
        w.write_batch([rec(62)])
    lines = path.read_text().splitlines()
    assert all(json.loads(line) for line in lines) and len(lines) == 5
    got, _ = store.read_generations(path)
    assert len(got) == 4


def test_run_spec_refuses_other_settings(tmp_path):
    spec = {k: None for k in store.RESUME_KEYS} | {"model": "m", "temperature": 0.6}
    store.check_run_spec(tmp_path, spec)
    store.check_run_spec(tmp_path, dict(spec))  # same settings: fine
    with pytest.raises(RunDirError, match="temperature=0.6"):
        store.check_run_spec(tmp_path, spec | {"temperature": 0.0})


def test_default_out_dir_per_model_revision_tasks(tmp_path):
    d = store.default_out_dir("org/Model-1.5B", "abc123", ["math_500", "aime24"])
    assert str(d) == "evals/org_Model-1.5B@abc123/aime24+math_500"
    final = tmp_path / "runs" / "exp3" / "final"
    final.mkdir(parents=True)
    assert str(store.default_out_dir(str(final), None, ["aime24"])) == "evals/exp3-final/aime24"
    assert store.model_name(str(tmp_path / "runs")) == "runs"


def test_load_results_checks_schema(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"kind": "metrics", "schema_version": 1}))
    with pytest.raises(Exception, match="expected a 'results' record"):
        store.load_results(tmp_path)
    with pytest.raises(RunDirError, match="no results.json"):
        store.load_results(tmp_path / "nope")


def test_generations_records_with_bad_sample_are_skipped_not_a_crash(tmp_path):
    path = tmp_path / "generations.jsonl"
    lines = [rec(60), rec(61, "a"), rec(62, None), rec(63, -1), rec(64, True), rec(65, 2)]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    got, bad = store.read_generations(path)
    assert [(r["id"], r["sample"]) for r in got] == [("aime24-60", 0), ("aime24-65", 2)] and bad == 4


def test_run_spec_that_is_not_json_is_a_run_dir_error(tmp_path):
    (tmp_path / store.RUN_SPEC).write_text("{torn")
    with pytest.raises(RunDirError, match="another --out"):
        store.check_run_spec(tmp_path, {"model": "m"})


@pytest.mark.parametrize("content", [b"[1, 2]\n", b"\xff\n", b'"just a string"\n'])
def test_local_data_that_is_not_objects_is_a_data_error(tmp_path, content):
    from openrs_cli.errors import DataError
    from openrs_cli.evaluate.tasks import get_task, load_task

    p = tmp_path / "amc23.jsonl"
    p.write_bytes(content)
    with pytest.raises(DataError):
        load_task(get_task("amc23"), str(p))  # was AttributeError / UnicodeDecodeError


def test_local_data_keeps_a_line_separator_inside_a_string(tmp_path):
    from openrs_cli.evaluate.tasks import get_task, load_task

    p = tmp_path / "amc23.jsonl"
    p.write_text(json.dumps({"problem": "a\u2028b", "answer": "3"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert load_task(get_task("amc23"), str(p)).problems[0].problem == "a\u2028b"
