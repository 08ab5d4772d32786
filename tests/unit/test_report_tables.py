"""`openrs report` tables: golden files (md, latex, csv) for Table 2 and Tables 3/4 from the shipped paper data and
with a user model added from a results.json made here; how results are read (series, steps, merging); bad input.

Regenerate the golden files after an intended change: OPENRS_UPDATE_GOLDEN=1 pytest tests/unit/test_report_tables.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from openrs_cli.errors import OpenrsError
from openrs_cli.report.data import paper_checkpoints, paper_costs, paper_models
from openrs_cli.report.inputs import collect
from openrs_cli.report.tables import table2, table34
from openrs_cli.schema import header
from tests.conftest import run_openrs

GOLDEN = Path(__file__).parent / "golden" / "report"
EXT = {"md": "md", "latex": "tex", "csv": "csv"}


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("OPENRS_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with OPENRS_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


def task(p1: float, lo: float | None = None, hi: float | None = None, samples: int = 4) -> dict:
    """A task record (without n_problems: the report then takes it as the full benchmark)."""
    t = {"samples": samples, "pass@1": p1, "pass@k": {"1": p1}, "maj@k": p1, "stderr": 0.05,
         "task_version": 1, "data_sha256": "0" * 64}
    if lo is not None:
        t["ci95"] = [lo, hi]
    return t


def write_results(path: Path, model: str, tasks: dict, label: str = "", **extra) -> Path:
    """A results.json as `openrs eval` writes it (evaluate/runner.py)."""
    rec = {**header("results"), "model": model, "revision": None, "label": label, "backend": "transformers",
           "sampling": {"temperature": 0.6, "top_p": 0.95, "samples": 4, "max_new_tokens": 32768, "seed": 0},
           "tasks": tasks, "average": {"pass@1": sum(t["pass@1"] or 0 for t in tasks.values()) / len(tasks),
                                       "tasks": list(tasks)},
           "wall_time_s": 12.5, "cost_ledger": None, **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=1), encoding="utf-8")
    return path


FULL = {"aime24": task(0.6, 0.517, 0.683), "math500": task(0.85, 0.82, 0.88), "amc23": task(0.7, 0.6, 0.8),
        "minerva": task(0.3, 0.25, 0.35), "olympiadbench": task(0.5, 0.46, 0.54)}


@pytest.mark.parametrize("fmt", ["md", "latex", "csv"])
def test_table2_paper_golden(fmt):
    check_golden(f"table2.{EXT[fmt]}", table2(paper_models(), fmt))


@pytest.mark.parametrize("fmt", ["md", "latex", "csv"])
def test_table34_paper_golden(fmt):
    check_golden(f"table34.{EXT[fmt]}", table34(paper_costs(), fmt))


@pytest.mark.parametrize("fmt", ["md", "latex", "csv"])
def test_table2_with_user_model_golden(tmp_path, monkeypatch, fmt):
    monkeypatch.chdir(tmp_path)
    write_results(Path("evals/my-model/results.json"), "org/My-Model-1.5B", FULL, label="My GRPO run")
    user = collect([Path("evals")], [])
    assert [r.model for r in user.rows] == ["My GRPO run"]
    check_golden(f"table2_user.{EXT[fmt]}", table2(paper_models() + user.rows, fmt))


def test_user_row_values_ci_avg_and_bold(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_results(Path("evals/a/results.json"), "org/My-Model-1.5B", FULL, label="mine")
    row = collect([Path("evals")], []).rows[0]
    assert row.scores["aime24"].mean == pytest.approx(60.0) and row.scores["aime24"].ci == pytest.approx(8.3)
    assert row.scores["math_500"].mean == pytest.approx(85.0)  # task name math500 maps onto the paper's column
    assert row.avg.mean == pytest.approx((60 + 85 + 70 + 30 + 50) / 5)
    assert row.size_b == 1.5
    md = table2(paper_models() + [row], "md")
    line = next(ln for ln in md.splitlines() if ln.startswith("| mine"))
    assert "**60.0 ± 8.3**" in line  # beats the best published AIME24 (56.6)
    assert "| *Your models* |" in md
    # Without all five benchmarks the average is left blank, as in the paper.
    write_results(Path("evals/b/results.json"), "org/other", {"aime24": task(0.1)}, label="partial")
    rows = {r.model: r for r in collect([Path("evals")], []).rows}
    assert rows["partial"].avg is None and rows["partial"].scores["aime24"].ci == pytest.approx(100 * 1.96 * 0.05)


def test_checkpoint_convention_series_steps_and_merge(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = Path("runs/grpo-a")
    (run / "checkpoint-10").mkdir(parents=True)
    (run / "checkpoint-20").mkdir()
    (run / "recipe.yaml").write_text("# openrs resolved recipe: kind=recipe\n"
                                     "model:\n  id: deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B\n")
    # step from the model path; label "checkpoint-N" is not a series name: the run dir's name is
    write_results(Path("evals/c10/results.json"), str(run / "checkpoint-10"), {"aime24": task(0.2)},
                  label="checkpoint-10")
    # the same checkpoint evaluated on another task in a second file: merged into one point
    write_results(Path("evals/c10b/results.json"), str(run / "checkpoint-10"), {"amc23": task(0.5)})
    write_results(Path("evals/c20/results.json"), str(run / "checkpoint-20"), {"aime24": task(0.3)})
    # explicit label + step fields win over paths
    write_results(Path("evals/x/results.json"), "somewhere/else", {"aime24": task(0.4)}, label="grpo-a", step=30)
    user = collect([Path("evals")], [])
    assert [s.name for s in user.series] == ["grpo-a"]
    pts = user.series[0].points
    assert [p[0] for p in pts] == [10, 20, 30]
    assert set(pts[0][1]) == {"aime24", "amc23"}
    assert [r.model for r in user.rows] == ["grpo-a (step 30)"]  # the highest step stands for the run
    assert user.rows[0].size_b is None or user.rows[0].size_b == 1.5
    assert [r.name for r in user.runs] == ["grpo-a"]  # found through the model path
    assert user.cost_rows and user.cost_rows[0].base_model == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"


def test_paper_checkpoints_know_released_models():
    series = {s.name: s for s in paper_checkpoints()}
    assert series["exp3"].released_step == 50 and series["exp3"].released_model == "Open-RS3 (50 steps)"
    assert [p[0] for p in series["exp1"].points][:2] == [100, 200]


def test_bad_inputs_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    other = Path("m/metrics.json")
    other.parent.mkdir()
    other.write_text(json.dumps({**header("metrics"), "step": 1}))
    with pytest.raises(OpenrsError, match="expected a 'results' record, found 'metrics'"):
        collect([other], [])
    Path("empty").mkdir()
    with pytest.raises(OpenrsError, match="no results.json in it"):
        collect([Path("empty")], [])
    Path("bad.json").write_text("{not json")
    with pytest.raises(OpenrsError, match="not a readable JSON file"):
        collect([Path("bad.json")], [])
    write_results(Path("pct/results.json"), "m", {"aime24": task(46.7)})
    with pytest.raises(OpenrsError, match=r"pass@1 = 46.7 is not a fraction"):
        collect([Path("pct")], [])
    with pytest.raises(OpenrsError, match="no training run in it"):
        collect([], [Path("empty")])


def test_cli_bad_results_exit_2_one_line(tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps({**header("ledger"), "tasks": {}}))
    r = run_openrs("report", "--results", str(bad), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "expected a 'results' record, found 'ledger'" in lines[0]
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()


def test_out_dir_of_the_user_is_never_overwritten(tmp_path, cli):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("my notes")
    code, _, err = cli("report", "--out", str(mine), "--format", "md,csv")
    assert code == 2 and "was not written by `openrs report`" in err
    assert (mine / "report.md").read_text() == "my notes"
    code, _, err = cli("report", "--format", "md,pdf")
    assert code == 2 and "unknown format 'pdf'" in err


def test_tables_only_run_writes_tables_and_report_md(tmp_path, cli):
    out = tmp_path / "rep"
    code, stdout, err = cli("report", "--out", str(out), "--format", "md,latex,csv")
    assert code == 0, err
    for name in ("table2", "table34"):
        for ext in ("md", "tex", "csv"):
            assert (out / "tables" / f"{name}.{ext}").stat().st_size > 300
    assert (out / "tables" / "table2.md").read_text() == table2(paper_models(), "md")
    md = (out / "report.md").read_text()
    assert "## Table 2" in md and "## Tables 3 and 4" in md and "![" not in md  # no images were asked for
    assert not (out / "figures").exists()
    # a second run into the same (openrs-made) directory is allowed
    code, _, err = cli("report", "--out", str(out), "--format", "csv")
    assert code == 0, err


def test_unscored_and_unknown_tasks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # openrs eval writes pass@1 None (and NaN CIs) for a task with nothing scored: skipped, not an error
    nan_ci = {**task(0.5), "ci95": [float("nan"), float("nan")]}
    write_results(Path("e/a/results.json"), "m", {"aime24": {**task(0.1), "pass@1": None}, "amc23": nan_ci},
                  label="a")
    rows = collect([Path("e")], []).rows
    assert set(rows[0].scores) == {"amc23"} and rows[0].scores["amc23"].ci == pytest.approx(100 * 1.96 * 0.05)
    write_results(Path("g/results.json"), "m", {"gsm8k": task(0.5)}, label="g")
    user = collect([Path("g")], [])
    assert user.rows == [] and "none of its tasks is a Table 2 benchmark" in user.notes[0]
    from openrs_cli.report import build_report

    with pytest.raises(OpenrsError, match="nothing to add from the paths given"):
        build_report([Path("g")], [], Path("out"), ("csv",))
    assert not Path("out").exists()


def test_size_of_a_published_model_from_its_hub_id(tmp_path, monkeypatch):
    """Re-evaluating the released Open-RS3 lands on Figure 1's size panel at 1.5B (models.csv hub_id)."""
    monkeypatch.chdir(tmp_path)
    write_results(Path("e/results.json"), "knoveleng/Open-RS3", {"aime24": task(0.3)})
    (row,) = collect([Path("e")], []).rows
    assert row.model == "Open-RS3" and row.size_b == 1.5


def test_a_limit_eval_is_marked_and_never_averaged(tmp_path):
    """`openrs eval --limit 5` scores 5 of AIME24's 30 problems: before, the report showed it as an AIME24 score
    beside the paper's full-benchmark numbers, unmarked, and with every task limited computed an average."""
    from openrs_cli.report.inputs import collect

    limited = {k: dict(t, n_problems=2) for k, t in FULL.items()}
    write_results(tmp_path / "lim" / "results.json", "runs/lim/final", limited, label="lim")
    write_results(tmp_path / "full" / "results.json", "runs/full/final",
                  {k: dict(t, n_problems=n) for (k, t), n in zip(FULL.items(), (30, 500, 40, 272, 675), strict=True)},
                  label="full")
    data = collect([tmp_path / "lim" / "results.json", tmp_path / "full" / "results.json"], [])
    rows = {r.model: r for r in data.rows}
    assert set(rows) == {"lim [subset]", "full"}
    assert rows["lim [subset]"].avg is None and rows["full"].avg is not None
    assert any("AIME24 2 of 30 problems" in n and "no average computed" in n for n in data.notes)
    assert rows["lim [subset]"].scores["aime24"].of == "2/30 problems" and rows["full"].scores["aime24"].of is None
    from openrs_cli.report.tables import table2

    md = table2(data.rows, "md")
    assert "(2/30 problems)" in md  # every table says what a partial score covers


def test_results_json_marks_override_the_count(tmp_path):
    """A task results.json marks incomplete (other --data of 30 rows) is partial even at the full count."""
    from openrs_cli.report.inputs import load_result

    t = dict(FULL["aime24"], n_problems=30, complete=False, coverage="30 problems from mine.jsonl, not the benchmark")
    write_results(tmp_path / "r" / "results.json", "runs/x/final", {"aime24": t}, label="x")
    res = load_result(tmp_path / "r" / "results.json")
    assert res.partial == {"aime24": (30, 30)} and res.scores["aime24"].of.startswith("30 problems from mine")


def test_an_eval_dir_with_a_cost_ledger_is_not_a_training_run(tmp_path):
    """The report had its own is_run_dir (any of metrics.jsonl, recipe.yaml, launch.json, cost/): an eval output
    dir, which holds cost/, was taken for a training run. One rule now: the recipe.yaml `openrs train` writes."""
    from openrs_cli.report.inputs import load_result

    res = write_results(tmp_path / "ev" / "results.json", "some/hub-model", {"aime24": task(0.3)})
    (tmp_path / "ev" / "cost").mkdir()
    (tmp_path / "ev" / "recipe.yaml").write_text("name: mine\n")  # a user's file, not openrs's
    assert load_result(res).run_dir is None


def test_report_shows_where_each_of_your_scores_came_from(tmp_path, cli):
    from openrs_cli.evaluate.backend_base import Placement
    from openrs_cli.evaluate.environment import environment

    env = environment(backend="transformers", engine="openrs", placement=Placement("cpu", ("0,1",)), batch_size=8,
                      dtype="float32", data_sha256={}, protocol={"name": "sober"})
    write_results(tmp_path / "r" / "results.json", "runs/mine/final", FULL, label="mine", environment=env)
    code, _, err = cli("report", "--results", str(tmp_path / "r"), "--out", str(tmp_path / "rep"), "--format", "md")
    assert code == 0, err
    md = (tmp_path / "rep" / "report.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("- mine: "))
    assert "transformers" in line and "CPU" in line and "float32" in line and "protocol sober" in line


def test_report_shows_the_checkpoint_chosen_on_validation(tmp_path, monkeypatch):
    """With RUN/select/selection.json the run's row is the chosen checkpoint's test scores, not the last one's."""
    from openrs_cli.files import write_json_atomic
    from openrs_cli.report.inputs import collect
    from openrs_cli.schema import record

    monkeypatch.chdir(tmp_path)
    run = Path("runs/grpo-a")
    for s in (10, 20):
        (run / f"checkpoint-{s}").mkdir(parents=True)
    (run / "recipe.yaml").write_text("# openrs resolved recipe: kind=recipe\nname: grpo-a\n")
    write_results(Path("evals/c10/results.json"), str(run / "checkpoint-10"), {"aime24": task(0.4)})
    write_results(Path("evals/c20/results.json"), str(run / "checkpoint-20"), {"aime24": task(0.2)})
    rows = collect([Path("evals")], []).rows
    assert [r.model for r in rows] == ["grpo-a (step 20)"]  # without a selection: the last checkpoint
    chosen = {"checkpoint": "checkpoint-10", "step": 10, "model": str(run / "checkpoint-10"), "pass@1": 0.3}
    write_json_atomic(run / "select" / "selection.json",
                      record("selection", rule="r", candidates=[chosen], chosen=chosen, looked_at=[]))
    rows = collect([Path("evals")], []).rows
    assert [r.model for r in rows] == ["grpo-a (step 10) [selected on validation]"]
    assert rows[0].scores["aime24"].mean == pytest.approx(40.0)
