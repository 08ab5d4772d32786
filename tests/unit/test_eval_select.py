"""`openrs eval select RUN`: checkpoints scored on the validation split only, chosen by the stated rule."""

import json
from pathlib import Path

import pytest

from openrs_cli import evalsets
from openrs_cli.evaluate import runner
from openrs_cli.evaluate.backend_base import Completion
from openrs_cli.evaluate.select import choose, load_selection, select
from openrs_cli.evaluate.tasks import TASKS
from tests.conftest import run_openrs

TEST_PROBLEMS = {r["problem"] for name in ("aime24", "amc23", "math500", "minerva", "olympiadbench")
                 for r in evalsets.load(name)}


def fake_run(root: Path, steps=(2, 4), weights_from=None) -> Path:
    """A run dir as `openrs train` leaves it: its recipe.yaml, complete checkpoints, final/ (as the last one)."""
    import shutil

    from openrs_cli.recipes import load_recipe
    from openrs_cli.train.rundir import recipe_yaml_text

    run = root / "runs" / "r"
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text(recipe_yaml_text(load_recipe("tiny")))
    for s in steps:
        c = run / f"checkpoint-{s}"
        if weights_from:
            shutil.copytree(weights_from, c)
        else:
            c.mkdir()
            (c / "config.json").write_text("{}")
            (c / "model.safetensors").write_bytes(b"x")
        (c / "optimizer.pt").write_bytes(b"x")
        (c / "trainer_state.json").write_text(json.dumps({"global_step": s}))
    return run


class ByCheckpoint:
    """Answers the first `right[checkpoint]` validation problems correctly (the gold, boxed), the rest wrongly."""

    name = "scripted"

    def __init__(self, model: str, right: dict[str, int], seen: list):
        self.model, self.right, self.seen = model, right, seen
        self.golds = {r["problem"]: r["answer"] for r in evalsets.load("validation")}
        self.order = list(self.golds)

    def render(self, messages):
        return messages[0]["content"]

    def generate(self, texts, ns, seeds, sampling):
        out = []
        for t, n in zip(texts, ns, strict=True):
            problem = next(p for p in self.order if t.endswith(p))
            self.seen.append(problem)
            ok = self.order.index(problem) < self.right[Path(self.model).name]
            out.append([Completion(f"so $\\boxed{{{self.golds[problem] if ok else '-987'}}}$", 9, "stop")] * n)
        return out

    def close(self):
        pass


def test_the_rule_picks_the_best_validation_score_and_breaks_ties_by_steps():
    c = [{"checkpoint": "checkpoint-2", "step": 2, "pass@1": 0.4}, {"checkpoint": "checkpoint-4", "step": 4,
                                                                       "pass@1": 0.6},
         {"checkpoint": "checkpoint-6", "step": 6, "pass@1": 0.6}]
    assert choose(c)["checkpoint"] == "checkpoint-4"  # best score; of the two best, the fewer steps
    assert choose(c[:1] + [{"checkpoint": "x", "step": 8, "pass@1": None}])["checkpoint"] == "checkpoint-2"


def test_select_on_two_checkpoints_picks_by_validation_and_touches_no_test_set(tmp_path, monkeypatch):
    run = fake_run(tmp_path)
    seen: list[str] = []
    right = {"checkpoint-2": 1, "checkpoint-4": 3}
    monkeypatch.setattr(runner, "make_backend", lambda backend, model, *a, **k: ByCheckpoint(model, right, seen))
    monkeypatch.setattr(runner, "pick_backend", lambda b: "scripted")
    sel = select(run, samples=2, limit=5, max_new_tokens=16, cost=False)
    assert [c["checkpoint"] for c in sel["candidates"]] == ["checkpoint-2", "checkpoint-4"]
    assert [c["pass@1"] for c in sel["candidates"]] == [pytest.approx(0.2), pytest.approx(0.6)]
    assert sel["chosen"]["checkpoint"] == "checkpoint-4" and "highest validation pass@1" in sel["rule"]
    assert {x["benchmark"] for x in sel["looked_at"]} == {"validation"} and len(sel["looked_at"]) == 2
    assert seen and not set(seen) & TEST_PROBLEMS  # no test problem was ever generated for
    for name in ("checkpoint-2", "checkpoint-4"):
        recs = [json.loads(x) for x in (run / "select" / name / "generations.jsonl").read_text().splitlines()]
        assert {r["task"] for r in recs} == {"validation"} and len(recs) == 5 * 2
    assert load_selection(run)["chosen"]["model"] == str(run / "checkpoint-4")
    assert not [t for t in TASKS if (run / "select" / t).exists()]


def test_validation_split_is_decontaminated_and_held_out_of_training():
    from openrs_cli.data.decontam import EvalIndex
    from openrs_cli.recipes import load_recipe
    from openrs_cli.train.data import load_rows

    rows = evalsets.load("validation")
    assert len(rows) == 100 and not {r["problem"] for r in rows} & TEST_PROBLEMS
    index = EvalIndex(["aime24", "amc23", "math500", "minerva", "olympiadbench"], 8)
    assert not any(index.matches(r["problem"]) for r in rows)
    held = evalsets.validation_ids()
    train = load_rows(load_recipe("tiny", ["dataset.limit=null"]).dataset)
    assert len(train) == 2000 - 100 and not held & {r["id"] for r in train}


@pytest.mark.slow
def test_cli_select_on_a_tiny_run(tmp_path, tiny_model_dir):
    run = fake_run(tmp_path, weights_from=tiny_model_dir)
    r = run_openrs("eval", "select", str(run), "--limit", "3", "--samples", "1", "--max-new-tokens", "8",
                   "--no-cost", "--backend", "transformers")
    assert r.returncode == 0, r.stderr[-2000:]
    sel = json.loads((run / "select" / "selection.json").read_text())
    assert sel["kind"] == "selection" and sel["chosen"]["checkpoint"] in ("checkpoint-2", "checkpoint-4")
    assert "chosen:" in r.stdout and "rule: highest validation pass@1" in r.stdout


def test_whole_search_cost_rows_come_from_the_ledgers(tmp_path, cli):
    """4 A40s train 4 steps of 1 h each; select chose step 2; two validation evals of 0.5 h on one A40 each. From
    the ledgers: 8 GPU-h up to the chosen step, 8 past it, 1 for the evals, 17 in all ($0.44/GPU-h)."""
    from openrs_cli.cost import FakeBackend, FakeClock, FakeDevice, open_monitor
    from openrs_cli.cost.summary import search_cost
    from openrs_cli.files import write_json_atomic
    from openrs_cli.schema import record

    run = fake_run(tmp_path, steps=(2, 4))
    clock = FakeClock()
    mon = open_monitor(run, kind="train", backend=FakeBackend([FakeDevice(name="NVIDIA A40") for _ in range(4)],
                                                               clock=clock), clock=clock, interval_s=60,
                       heartbeat_s=600, thread=False)
    for step in range(1, 5):
        mon.begin_window("train_step", phase=True, step=step)
        for _ in range(60):
            clock.advance(60)
            mon.tick()
        mon.end_window("train_step")
    mon.close()
    for name in ("checkpoint-2", "checkpoint-4"):
        c = FakeClock()
        m = open_monitor(run / "select" / name, kind="eval", clock=c, interval_s=60, heartbeat_s=600, thread=False,
                         backend=FakeBackend([FakeDevice(name="NVIDIA A40", uuid=f"GPU-{name}")], clock=c))
        for _ in range(30):
            c.advance(60)
            m.tick()
        m.close()
    chosen = {"checkpoint": "checkpoint-2", "step": 2, "model": str(run / "checkpoint-2"), "pass@1": 0.5}
    write_json_atomic(run / "select" / "selection.json",
                      record("selection", rule="r", candidates=[chosen], chosen=chosen, looked_at=[]))
    s = search_cost(run)
    assert s["chosen"]["gpu_hours"] == pytest.approx(8.0) and s["trained_past_chosen"]["gpu_hours"] == pytest.approx(8.0)
    assert s["selection_evals"]["gpu_hours"] == pytest.approx(1.0) and s["selection_evals_count"] == 2
    assert s["whole_search"]["gpu_hours"] == pytest.approx(17.0)
    assert s["whole_search"]["cost_usd"] == pytest.approx(17 * 0.44) and s["chosen"]["cost_usd"] == pytest.approx(8 * 0.44)
    code, out, err = cli("cost", "summary", str(run))
    assert code == 0, err
    assert "the search behind checkpoint-2" in out and "training past it" in out and "whole search" in out
    assert "17.00" in out and "$7.48" in out
    from openrs_cli.report.inputs import collect

    rows = {r.model: r for r in collect([], [run]).cost_rows}  # the report's Tables 3/4 rows, from the same ledgers
    assert rows["r (chosen: training to step 2)"].gpu_hours == pytest.approx(8.0)
    assert rows["r (whole search: every step trained and every validation eval)"].gpu_hours == pytest.approx(17.0)
