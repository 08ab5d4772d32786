"""The eval runner with a scripted backend (no model): batching into units, resume, growing --samples,
metrics from real grading of known answers."""

import json

import pytest

from openrs_cli.evaluate import runner
from openrs_cli.evaluate.generation import Completion

BOX = "Therefore, the final answer is: $\\boxed{%s}$. I hope it is correct"


class ScriptedBackend:
    """Answers amc23 problems right on even sample indices (by the prompt's problem text), wrong on odd ones."""

    name = "scripted"

    def __init__(self, answers: dict[str, str]):
        self.answers, self.calls = answers, []

    def render(self, messages):
        return messages[0]["content"]

    def generate(self, texts, ns, seeds, sampling):
        self.calls.append(list(ns))
        out = []
        for t, n in zip(texts, ns, strict=True):
            gold = next(a for p, a in self.answers.items() if t.endswith(p))
            out.append([Completion(BOX % (gold if i % 2 == 0 else "-7"), 9, "stop") for i in range(n)])
        return out

    def close(self):
        pass


@pytest.fixture()
def scripted(monkeypatch):
    from openrs_cli.evaluate.tasks import get_task, load_task

    answers = {p.problem: p.gold for p in load_task(get_task("amc23")).problems}
    holder = {}

    def make(*a, **k):
        holder["be"] = ScriptedBackend(answers)
        return holder["be"]

    monkeypatch.setattr(runner, "make_backend", make)
    monkeypatch.setattr(runner, "pick_backend", lambda b: "scripted")
    return holder


def cfg(out, **kw):
    return runner.EvalConfig(model="scripted", tasks="amc23", limit=3, max_new_tokens=8, out_dir=str(out),
                             cost=False, batch_size=4, **kw)


def test_runner_batches_grades_and_scores(scripted, tmp_path):
    events = []
    res = runner.run_eval(cfg(tmp_path, samples=2), on_progress=events.append)
    # 3 problems x 2 samples = 6 sequences in batches of 4: [p0 x2, p1 x2], [p2 x2]
    assert scripted["be"].calls == [[2, 2], [2]]
    t = res["tasks"]["amc23"]
    assert t["pass@1"] == 0.5 and t["pass@k"] == {"1": 0.5, "2": 1.0} and t["n_problems"] == 3
    assert t["verdicts"] == {"correct": 3, "wrong": 3}
    assert events[-1]["done"] == events[-1]["total"] == 6 and events[-1]["accuracy"] == 0.5
    recs = [json.loads(x) for x in (tmp_path / "generations.jsonl").read_text().splitlines()]
    assert [(r["id"], r["sample"], r["correct"]) for r in recs][:2] == [("amc23-0", 0, True), ("amc23-0", 1, False)]
    assert json.loads((tmp_path / "results.json").read_text())["tasks"]["amc23"]["pass@1"] == 0.5


def test_runner_resumes_and_grows_samples(scripted, tmp_path):
    runner.run_eval(cfg(tmp_path, samples=1))
    assert scripted["be"].calls == [[1, 1, 1]]
    res = runner.run_eval(cfg(tmp_path, samples=3))  # only samples 1 and 2 are missing
    assert scripted["be"].calls == [[2, 2], [2]]
    assert res["tasks"]["amc23"]["samples"] == 3
    assert res["tasks"]["amc23"]["pass@1"] == pytest.approx(2 / 3)  # samples 0 and 2 right, 1 wrong
    calls_before = list(scripted["be"].calls)
    res = runner.run_eval(cfg(tmp_path, samples=3))  # nothing left: no backend is even built
    assert scripted["be"].calls == calls_before
    # fewer samples than on disk: results use the first k of each problem
    res = runner.run_eval(cfg(tmp_path, samples=1))
    assert res["tasks"]["amc23"]["pass@1"] == 1.0 and res["tasks"]["amc23"]["samples"] == 1


@pytest.mark.parametrize(("kw", "msg"), [
    ({"max_new_tokens": 0}, "--max-new-tokens"), ({"temperature": -1.0}, "--temperature"),
    ({"top_p": 2.0}, "--top-p"), ({"top_p": 0.0}, "--top-p"), ({"batch_size": -1}, "--batch-size"),
    ({"batch_size": 0}, "--batch-size"), ({"data_parallel": 0}, "--data-parallel"),
    ({"engine": "foo"}, "unknown engine"), ({"backend": "foo"}, "unknown backend"),
])
def test_bad_settings_fail_before_the_out_dir_is_touched(scripted, tmp_path, kw, msg):
    from openrs_cli.errors import OpenrsError

    c = cfg(tmp_path / "out", samples=1)
    for k, v in kw.items():
        setattr(c, k, v)
    with pytest.raises(OpenrsError, match=msg):
        runner.run_eval(c)
    assert not (tmp_path / "out").exists()  # no eval-run.json recording a setting that cannot run
    runner.run_eval(cfg(tmp_path / "out", samples=1))  # the same dir then works with good settings


def test_out_path_that_cannot_be_a_directory_is_one_line(scripted, tmp_path):
    from openrs_cli.errors import RunDirError

    (tmp_path / "afile").write_text("mine")
    with pytest.raises(RunDirError, match="cannot create the output directory"):
        runner.run_eval(cfg(tmp_path / "afile", samples=1))  # was FileExistsError
    assert (tmp_path / "afile").read_text() == "mine"
    with pytest.raises(RunDirError, match="cannot create"):
        runner.run_eval(cfg(tmp_path / "afile" / "sub", samples=1))  # was NotADirectoryError


def _model_dir(d, weights=b"w" * 64):
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text('{"model_type": "qwen2"}')
    (d / "model.safetensors").write_bytes(weights)
    return d


def _tree(d):
    import hashlib

    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


def test_changed_weights_never_reuse_samples(scripted, tmp_path):
    from openrs_cli.errors import RunDirError

    m = _model_dir(tmp_path / "m")
    out = tmp_path / "out"
    c = cfg(out, samples=1)
    c.model = str(m)
    res = runner.run_eval(c)
    assert res["model_fingerprint"]["files"].keys() == {"config.json", "model.safetensors"}
    first = scripted["be"]
    (m / "model.safetensors").write_bytes(b"v" * 64)  # retrained at the same path
    before = _tree(out)
    with pytest.raises(RunDirError, match=r"other weights .*changed: model.safetensors.*--fresh"):
        runner.run_eval(c)
    assert _tree(out) == before and scripted["be"] is first  # refused before any backend was built
    c.fresh = True
    runner.run_eval(c)  # starts over: every sample generated again
    fresh = scripted["be"]
    assert fresh is not first and fresh.calls == [[1, 1, 1]]
    c.fresh = False
    runner.run_eval(c)  # and the new weights then resume: nothing left to generate
    assert scripted["be"] is fresh


def test_fingerprint_of_a_large_file_reads_its_edges_only(tmp_path):
    from openrs_cli.evaluate import fingerprint

    big = tmp_path / "model.safetensors"
    with open(big, "wb") as f:
        f.truncate(fingerprint.WHOLE_MAX + 8 * fingerprint.EDGE)  # sparse
    a = fingerprint.file_digest(big)
    with open(big, "r+b") as f:
        f.seek(big.stat().st_size - 10)
        f.write(b"x")  # the last tensor changed
    assert fingerprint.file_digest(big) != a


def test_one_model_spelled_many_ways_resumes(scripted, tmp_path, monkeypatch):
    m = _model_dir(tmp_path / "runs" / "tiny" / "final")
    (tmp_path / "link").symlink_to(m, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    c = cfg(tmp_path / "out", samples=1)
    c.model = "runs/tiny/final"
    runner.run_eval(c)
    first = scripted["be"]
    for spelling in ("./runs/tiny/final", "runs/tiny/final/", str(m), "link", "./link/"):
        c.model = spelling
        res = runner.run_eval(c)  # refused before ("holds an eval made with model=...")
        assert scripted["be"] is first and res["tasks"]["amc23"]["n_problems"] == 3
