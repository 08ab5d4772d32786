"""Named eval protocols (--protocol, `openrs eval protocols`), the seeds metrics, and the environment record
results.json carries (with a fake GPU environment)."""

import json

import pytest

from openrs_cli.errors import TaskError
from openrs_cli.evaluate import metrics
from openrs_cli.evaluate.protocols import get_protocol, protocols, resolve
from tests.conftest import run_openrs


def test_protocols_are_data_with_sources():
    known = protocols()
    assert set(known) == {"paper", "sober", "open-r1"}
    assert all(p.source for p in known.values())
    sober = get_protocol("sober")
    assert (sober.temperature, sober.top_p, sober.max_new_tokens) == (0.8, 0.9, 32768)
    assert [sober.samples_for(t) for t in ("aime24", "amc23", "math_500", "minerva", "olympiadbench")] == \
        [10, 10, 3, 3, 3]
    assert get_protocol("open-r1").samples_for("aime24") == 64 and get_protocol("paper").samples_for("aime24") == 1
    with pytest.raises(TaskError, match="unknown protocol 'soberr'; valid: paper, sober, open-r1"):
        get_protocol("soberr")


def test_explicit_flags_override_and_are_recorded():
    r = resolve("sober", ["aime24", "math_500"])
    assert (r.temperature, r.top_p, r.samples_per_task, r.overrides) == (0.8, 0.9, {"aime24": 10, "math_500": 3}, {})
    r = resolve("sober", ["aime24", "math_500"], temperature=0.5, samples=2)
    assert r.temperature == 0.5 and r.top_p == 0.9 and r.samples_per_task == {"aime24": 2, "math_500": 2}
    assert r.record()["overrides"] == {"temperature": 0.5, "samples": 2} and r.record()["name"] == "sober"
    r = resolve(None, ["aime24"])  # no --protocol: the paper's values, as before
    assert (r.protocol, r.temperature, r.top_p, r.max_new_tokens, r.samples) == ("paper", 0.6, 0.95, 32768, 1)


def test_seeds_mean_and_std_across_sample_indices():
    per = {"a": [(True, "1"), (False, "2"), (True, "1")], "b": [(False, "3"), (False, "3"), (True, "4")]}
    s = metrics.task_metrics(per)["seeds"]
    assert s["n"] == 3 and s["pass@1"] == [0.5, 0.0, 1.0]
    assert s["mean"] == pytest.approx(0.5) and s["std"] == pytest.approx(0.5)
    assert metrics.task_metrics({"a": [(True, "1")]})["seeds"] is None  # one sample: no spread to report


def test_environment_record_with_a_fake_gpu_machine(monkeypatch):
    from openrs_cli.evaluate.backend_base import Placement
    from openrs_cli.evaluate.environment import environment, summary_line

    monkeypatch.setenv("OPENRS_NVML_BACKEND", json.dumps({"count": 4, "name": "NVIDIA H200"}).join(["fake:", ""]))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    env = environment(backend="vllm", engine="openrs", placement=Placement("cuda", ("0", "1")), batch_size=64,
                      dtype="bfloat16", data_sha256={"aime24": "ab" * 32}, protocol={"name": "sober"})
    assert env["gpu_count"] == 2 and env["gpu_model"] == "NVIDIA H200" and len(env["gpus"]) == 2
    assert env["driver"] == "fake" and env["data_parallel"] == 2 and env["tensor_parallel"] == 1
    assert env["dtype"] == "bfloat16" and env["batch_size"] == 64 and env["protocol"] == "sober"
    assert env["grader"]["name"] == "math-verify" and env["grader"]["version"]
    assert env["versions"]["torch"] and env["data_sha256"] == {"aime24": "ab" * 32} and env["openrs_version"]
    line = summary_line(env)
    assert "2 x NVIDIA H200" in line and "dp 2, tp 1" in line and "protocol sober" in line and "bfloat16" in line


@pytest.mark.slow
def test_cli_protocol_sober_records_its_values_and_ten_seeds(tiny_model_dir, tmp_path):
    out = tmp_path / "ev"
    r = run_openrs("eval", "--model", str(tiny_model_dir), "--protocol", "sober", "--tasks", "aime24,math_500",
                   "--limit", "2", "--max-new-tokens", "4", "--out", str(out), "--no-cost")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((out / "results.json").read_text())
    assert res["sampling"]["temperature"] == 0.8 and res["sampling"]["top_p"] == 0.9
    assert res["sampling"]["samples_per_task"] == {"aime24": 10, "math_500": 3}
    assert res["protocol"]["name"] == "sober" and res["protocol"]["overrides"] == {"max_new_tokens": 4}
    assert res["tasks"]["aime24"]["samples"] == 10 and res["tasks"]["aime24"]["seeds"]["n"] == 10
    assert res["tasks"]["math_500"]["samples"] == 3
    recs = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]
    assert len(recs) == 2 * 10 + 2 * 3 and len({x["seed"] for x in recs}) == len(recs)
    env = res["environment"]
    assert env["backend"] == "transformers" and env["gpu_count"] == 0 and env["dtype"] == "float32"
    assert env["protocol"] == "sober" and env["batch_size"] and env["data_sha256"]["aime24"]
    r = run_openrs("eval", "protocols", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["sober"]["samples"]["aime24"] == 10


def test_compare_with_several_seeds_resamples_problems_and_seeds():
    """Two runs of 10 seeds on 30 problems: the two-level bootstrap (problems x seeds) is wider than the
    problem-level one on the per-problem means, and with one sample per problem it falls back to problems."""
    import random

    from openrs_cli.evaluate.scoring import compare_results

    rng = random.Random(0)
    pa = {f"p{i}": [c, 10] for i in range(30) for c in [rng.randint(0, 10)]}
    pb = {f"p{i}": [max(0, min(10, pa[f"p{i}"][0] + rng.randint(-3, 2))), 10] for i in range(30)}
    a = {"label": "a", "tasks": {"aime24": {"per_problem": pa}}}
    b = {"label": "b", "tasks": {"aime24": {"per_problem": pb}}}
    two = compare_results(a, b)["aime24"]
    one = metrics.paired_bootstrap([v[0] / 10 for v in pa.values()], [v[0] / 10 for v in pb.values()])
    assert two["levels"] == "problems x seeds" and two["diff"] == pytest.approx(one["diff"])
    assert two["ci95"][1] - two["ci95"][0] > one["ci95"][1] - one["ci95"][0]
    single = {k: [int(v[0] >= 5), 1] for k, v in pa.items()}
    res = compare_results({"label": "a", "tasks": {"aime24": {"per_problem": single}}},
                          {"label": "b", "tasks": {"aime24": {"per_problem": single}}})["aime24"]
    assert res["levels"] == "problems" and res["diff"] == 0


def test_results_json_carries_the_environment_on_a_fake_gpu_machine(tmp_path, monkeypatch):
    """An eval through the runner on a machine whose NVML is the fake backend (2 x H200): results.json's
    environment names the GPU the backend used, the driver, dtype and batch size, without touching CUDA."""
    from openrs_cli.evaluate import backend_base, runner
    from openrs_cli.evaluate.tasks import get_task, load_task
    from tests.unit.test_eval_runner import ScriptedBackend

    monkeypatch.setenv("OPENRS_NVML_BACKEND", 'fake:{"count": 2, "name": "NVIDIA H200"}')
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setattr(backend_base, "nvml_gpu_count", lambda: 2)
    answers = {p.problem: p.gold for p in load_task(get_task("amc23")).problems}
    monkeypatch.setattr(runner, "make_backend", lambda *a, **k: ScriptedBackend(answers))
    monkeypatch.setattr(runner, "pick_backend", lambda b: "transformers")
    res = runner.run_eval(runner.EvalConfig(model="m", tasks="amc23", limit=2, max_new_tokens=8, cost=False,
                                            batch_size=4, out_dir=str(tmp_path / "ev")))
    env = json.loads((tmp_path / "ev" / "results.json").read_text())["environment"]
    assert env == res["environment"]
    assert env["gpu_count"] == 1 and env["gpu_model"] == "NVIDIA H200" and env["device"] == "cuda"
    assert env["driver"] == "fake" and env["batch_size"] == 4 and env["data_parallel"] == 1
    assert env["grader"]["version"] and env["data_sha256"]["amc23"] == res["tasks"]["amc23"]["data_sha256"]
