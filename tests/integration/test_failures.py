"""Failure injection: bad input ends with exit code 2 and one line without a traceback, and nothing the user had is
lost or overwritten. Each case runs the real `openrs` entry point in a subprocess, as a user would."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import run_openrs


@dataclass
class Case:
    id: str
    args: Callable[[Path], list[str]]
    expect: str  # in the one error line (code 2), or in stdout+stderr (clean recovery, code 0)
    setup: Callable[[Path], None] = lambda d: None
    slow: bool = False
    env: dict = field(default_factory=dict)
    code: int = 2
    check: Callable[[Path], None] = lambda d: None  # after the run: what must hold in the directory


def _write(name: str, text: str | bytes) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)

    return setup


def _recipe(body: str) -> Callable[[Path], None]:
    return _write("r.yaml", "base: exp3\n" + body)


VALIDATE = lambda d: ["recipes", "validate", str(d / "r.yaml")]  # noqa: E731
EVAL = ["eval", "--model", "openrs-tiny", "--tasks", "aime24", "--limit", "2", "--max-new-tokens", "8", "--no-cost"]


def _build(d: Path, source: str) -> list[str]:
    return ["data", "build", "custom", "--source", str(d / source), "--out", str(d / "out")]


def _parquet(path: Path, truncate: bool = False) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"problem": [f"What is {i} + 1?" for i in range(40)],
                             "answer": [str(i + 1) for i in range(40)]}), path)
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])


def _absent(p: Path) -> None:
    assert not p.exists(), f"{p} was created by a failed command"


def _torn_eval(out: Path) -> None:
    """A first run that was killed: one complete batch on disk plus half a line."""
    args = [a if a != "2" else "1" for a in EVAL]  # the first of the two problems
    r = run_openrs(*args, "--out", str(out))
    assert r.returncode == 0, r.stderr[-500:]
    with open(out / "generations.jsonl", "a") as f:
        f.write('{"task": "aime24", "id": "aime24-6')


def _evaluated_then_retrained(d: Path) -> None:
    """An eval of a model dir, then `openrs train --overwrite` put other weights at the same path."""
    import shutil

    from openrs_cli.tiny import build_tiny_model, ensure_tiny_model

    shutil.copytree(ensure_tiny_model(), d / "m")
    r = run_openrs(*_eval_model(d), "--out", str(d / "evm"))
    assert r.returncode == 0, r.stderr[-500:]
    build_tiny_model(d / "m", seed=1)


def _eval_model(d: Path) -> list[str]:
    return ["eval", "--model", str(d / "m"), *EVAL[3:]]


def _two_runs(d: Path) -> None:
    import os
    import shutil

    from openrs_cli.tiny import ensure_tiny_model

    for i, name in enumerate(("old", "new")):
        shutil.copytree(ensure_tiny_model(), d / "runs" / name / "final")
        os.utime(d / "runs" / name / "final" / "config.json", (1e9 + i, 1e9 + i))


def _empty_dir(p: Path) -> None:
    assert p.is_dir() and not any(p.iterdir()), f"{p}: the user's directory was removed or left with files"


def _no_duplicates(out: Path) -> None:
    import json

    recs = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines() if x.strip().endswith("}")]
    keys = [(r["task"], r["id"], r.get("sample", 0)) for r in recs]
    assert len(keys) == len(set(keys)) == 2, keys
    assert json.loads((out / "results.json").read_text())["tasks"]["aime24"]["n_problems"] == 2


def _ledger(run: Path, torn: bool = False, schema_version: int | None = None, gpu: str = "NVIDIA A40") -> None:
    import json

    from openrs_cli.cost import FakeBackend, FakeClock, FakeDevice, open_monitor

    clock = FakeClock()
    mon = open_monitor(run, kind="train", backend=FakeBackend([FakeDevice(name=gpu, power_w=250.0)], clock=clock),
                       clock=clock, interval_s=600, heartbeat_s=3600, thread=False)
    for _ in range(6):
        clock.advance(600)
        mon.tick()
    mon.close()
    ledger = next((run / "cost").glob("ledger-*.jsonl"))
    if schema_version is not None:
        lines = ledger.read_text().splitlines()
        first = json.loads(lines[0])
        first["schema_version"] = schema_version
        ledger.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    if torn:
        with open(ledger, "a") as f:
            f.write('{"kind": "ledger", "record": "interval", "gpu_uu')

CASES: list[Case] = [
    # recipes
    Case("recipe-unknown-key", VALIDATE, "did you mean 'optim.learning_rate'", _recipe("optim:\n  learnin_rate: 1\n")),
    Case("recipe-wrong-type", VALIDATE, "optim.max_steps", _recipe("optim:\n  max_steps: lots\n")),
    Case("recipe-negative-lr", VALIDATE, "optim.learning_rate", _recipe("optim:\n  learning_rate: -1.0e-6\n")),
    Case("recipe-batch-not-divisible", VALIDATE, "is not divisible by generation.num_generations",
         _recipe("generation:\n  num_generations: 5\n")),
    Case("recipe-weights-mismatch", VALIDATE, "give one weight per function", _recipe("rewards:\n  weights: [1.0]\n")),
    Case("recipe-missing-file", lambda d: ["recipes", "validate", str(d / "nope.yaml")], "does not exist"),
    Case("recipe-yaml-syntax", VALIDATE, "YAML syntax error", _write("r.yaml", "optim: [1, 2\n")),
    Case("recipe-empty-file", VALIDATE, "the recipe is empty", _write("r.yaml", "")),
    Case("recipe-unknown-name", lambda d: ["recipes", "show", "exp4"], "did you mean 'exp3'"),
    # overrides
    Case("override-no-equals", lambda d: ["recipes", "show", "exp3", "optim.learning_rate"], "has no '='"),
    Case("override-unknown-path", lambda d: ["recipes", "show", "exp3", "optim.learningrate=1"],
         "did you mean 'optim.learning_rate'"),
    Case("recipes-cp-existing", lambda d: ["recipes", "cp", "exp3", str(d / "mine.yaml")], "already exists",
         _write("mine.yaml", "# my recipe\n")),
    Case("train-override-typo", lambda d: ["train", "tiny", "optim.learnin_rate=1", "--dry-run"],
         "did you mean 'optim.learning_rate'"),
    # datasets (openrs data build)
    Case("data-missing-file", lambda d: _build(d, "nope.jsonl"), "does not exist"),
    Case("data-missing-columns", lambda d: _build(d, "d.jsonl"), "no column 'problem'",
         _write("d.jsonl", '{"question": "What is 1+1?", "answer": "2"}\n')),
    Case("data-empty", lambda d: _build(d, "d.jsonl"), "has no rows", _write("d.jsonl", "")),
    Case("data-non-utf8", lambda d: _build(d, "d.jsonl"), "not UTF-8",
         _write("d.jsonl", b'{"problem": "caf\xe9 \xff", "answer": "1"}\n')),
    Case("data-truncated-parquet", lambda d: _build(d, "d.parquet"), "not a readable Parquet file",
         lambda d: _parquet(d / "d.parquet", truncate=True)),
    Case("data-gold-never-parses", lambda d: _build(d, "d.jsonl"), "the build kept no rows",
         _write("d.jsonl", "".join(f'{{"problem": "Problem {i} asks about a shape.", "answer": "}}{{"}}\n'
                                   for i in range(5)))),
    Case("data-existing-output", lambda d: _build(d, "d.parquet"), "--overwrite",
         lambda d: (_parquet(d / "d.parquet"), _write("out/manifest.json", '{"mine": true}\n')(d))),
    # benchmarks and eval
    Case("eval-unknown-task", lambda d: ["eval", "--model", "openrs-tiny", "--tasks", "aime25"],
         "valid tasks: aime24, amc23, math_500, minerva, olympiadbench"),
    Case("eval-unwritable-out", lambda d: [*EVAL, "--out", str(d / "afile" / "sub")], "Not a directory",
         _write("afile", "a file, not a directory\n")),
    Case("eval-model-not-a-model", lambda d: ["eval", "--model", str(d / "m"), "--tasks", "aime24"],
         "is not a model directory", _write("m/notes.txt", "not weights\n")),
    Case("eval-model-missing", lambda d: ["eval", "--model", str(d / "nope"), "--tasks", "aime24"],
         "does not exist"),
    Case("eval-torn-generations-rerun", lambda d: [*EVAL, "--out", str(d / "ev")], "wrote", slow=True, code=0,
         setup=lambda d: _torn_eval(d / "ev"), check=lambda d: _no_duplicates(d / "ev")),
    Case("eval-retrained-weights-rerun", lambda d: [*_eval_model(d), "--out", str(d / "evm")],
         "holds samples of other weights", slow=True, setup=_evaluated_then_retrained),
    Case("eval-foreign-out-dir", lambda d: [*EVAL, "--out", str(d / "mine")], "holds files openrs eval did not write",
         lambda d: (_write("mine/results.json", '{"my": "scores"}\n')(d),
                    _write("mine/generations.jsonl", '{"id": "aime24-60", "completion": "mine"}\n')(d))),
    Case("eval-out-dir-with-notes", lambda d: [*EVAL, "--out", str(d / "evn")], "(notes.txt)", slow=True,
         setup=lambda d: (_torn_eval(d / "evn"), _write("evn/notes.txt", "my notes\n")(d))),
    Case("eval-model-unloadable-new-out", lambda d: [*_eval_model(d), "--out", str(d / "new" / "ev1")],
         "cannot load model", slow=True, setup=_write("m/config.json", '{"model_type": "qwen2"}\n'),
         check=lambda d: _absent(d / "new")),
    Case("eval-model-unloadable-default-out", _eval_model, "cannot load model", slow=True,
         setup=_write("m/config.json", '{"model_type": "qwen2"}\n'), check=lambda d: _absent(d / "evals")),
    Case("eval-model-unloadable-users-dir", lambda d: [*_eval_model(d), "--out", str(d / "mine")],
         "cannot load model", slow=True,
         setup=lambda d: (_write("m/config.json", '{"model_type": "qwen2"}\n')(d), (d / "mine").mkdir()),
         check=lambda d: _empty_dir(d / "mine")),
    Case("eval-no-model-no-runs", lambda d: ["eval", "--tasks", "aime24,amc23"], "knoveleng/Open-RS3",
         _write("runs/notes/metrics.jsonl", "{}\n"), check=lambda d: _absent(d / "evals")),
    Case("eval-no-model-newest-run", lambda d: ["eval", *EVAL[3:]], "evaluating runs/new/final, the newest", slow=True,
         code=0, setup=_two_runs, check=lambda d: _absent(d / "evals" / "old-final")),
    # train
    Case("train-existing-run-dir", lambda d: ["train", "tiny", "--run-dir", str(d / "run")], "--overwrite",
         _write("run/notes.txt", "my run\n")),
    Case("train-model-not-a-model", lambda d: ["train", "tiny", f"model.id={d / 'm'}", "--run-dir", str(d / "r")],
         "is not a model directory", _write("m/config.txt", "no\n"), check=lambda d: _absent(d / "r")),
    Case("train-resume-missing", lambda d: ["train", "tiny", "--resume", "--run-dir", str(d / "none")],
         "cannot resume"),
    # cost
    Case("cost-torn-ledger-line", lambda d: ["cost", "summary", str(d / "run")], "wall time", code=0,
         setup=lambda d: _ledger(d / "run", torn=True)),
    Case("cost-newer-schema", lambda d: ["cost", "summary", str(d / "run")], "newer",
         lambda d: _ledger(d / "run", schema_version=99)),
    Case("cost-unknown-gpu", lambda d: ["cost", "summary", str(d / "run")], "no dollar figure", code=0,
         setup=lambda d: _ledger(d / "run", gpu="NVIDIA GB300 Prototype")),
    Case("cost-bad-price", lambda d: ["cost", "summary", str(d / "run"), "--price", "A40=abc"], "not a number",
         lambda d: _ledger(d / "run")),
    Case("cost-no-ledger", lambda d: ["cost", "summary", str(d)], "no cost ledger"),
    # report
    Case("report-other-schema", lambda d: ["report", "--results", str(d / "results.json"), "--out", str(d / "o")],
         "expected a 'results' record", _write("results.json", '{"kind": "metrics", "schema_version": 1}\n'),
         check=lambda d: _absent(d / "o")),
    Case("report-no-results", lambda d: ["report", "--results", str(d / "empty"), "--out", str(d / "o")],
         "no results.json", lambda d: (d / "empty").mkdir()),
    Case("report-foreign-out-dir", lambda d: ["report", "--out", str(d / "mine")], "was not written by",
         _write("mine/notes.txt", "my notes\n")),
]


def _snapshot(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else [])
                                  for c in CASES])
def test_failure(case: Case, tmp_path: Path) -> None:
    case.setup(tmp_path)
    before = _snapshot(tmp_path)
    r = run_openrs(*case.args(tmp_path), cwd=tmp_path, env=case.env)
    assert r.returncode == case.code, (r.returncode, r.stdout[-800:], r.stderr[-800:])
    assert "Traceback" not in r.stderr
    if case.code == 2:
        lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith(("WARNING", "[20"))]
        assert len(lines) == 1, r.stderr
        assert lines[0].startswith("error: ") and case.expect in lines[0], lines[0]
    else:
        assert case.expect in r.stdout + r.stderr
    case.check(tmp_path)
    after = _snapshot(tmp_path)
    changed = [k for k, v in before.items() if after.get(k) != v and not k.startswith(("ev/", "run/cost/"))]
    assert not changed, f"user files changed: {changed}"


def _run_in_process(args: list[str], capsys) -> tuple[int, str]:
    """`openrs ARGS` through the real entry point in this process (so a test can inject a failure)."""
    import sys

    from openrs_cli.main import run

    old = sys.argv
    sys.argv = ["openrs", *args]
    try:
        run()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = old
    return code, capsys.readouterr().err


def test_tampered_bundled_benchmark(tmp_path, monkeypatch, capsys):
    import shutil

    from openrs_cli import evalsets

    data = tmp_path / "data"
    shutil.copytree(evalsets.DATA_DIR, data)
    (data / "aime24.jsonl").write_text((data / "aime24.jsonl").read_text().replace("204", "205", 1))
    monkeypatch.setattr(evalsets, "DATA_DIR", data)
    code, err = _run_in_process(["eval", "score", str(_write_completions(tmp_path)), "--task", "aime24"], capsys)
    assert code == 2 and "fails its sha256 check" in err and "Traceback" not in err
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1


def _write_completions(d: Path) -> Path:
    p = d / "mine.jsonl"
    p.write_text('{"id": "aime24-60", "completion": "so \\\\boxed{204}"}\n')
    return p


@pytest.mark.slow
def test_disk_full_mid_eval_then_rerun(tmp_path, monkeypatch, capsys):
    """ENOSPC while saving generations: one line, exit 2, nothing saved is damaged; with space back, a rerun
    completes every sample exactly once."""
    import errno
    import json

    from openrs_cli.evaluate import store

    out = tmp_path / "ev"
    args = [*EVAL, "--out", str(out), "--batch-size", "1"]
    calls = {"n": 0}
    real_fsync = store.os.fsync

    def full_after_first(fd):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(out / "generations.jsonl"))
        return real_fsync(fd)

    monkeypatch.setattr(store.os, "fsync", full_after_first)
    code, err = _run_in_process(args, capsys)
    assert code == 2 and "No space left on device" in err and "Traceback" not in err
    monkeypatch.setattr(store.os, "fsync", real_fsync)
    code, err = _run_in_process(args, capsys)
    assert code == 0, err
    recs = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines() if x.strip().endswith("}")]
    keys = [(r["task"], r["id"], r.get("sample", 0)) for r in recs]
    assert len(keys) == len(set(keys)) == 2


def test_every_command_group_has_bad_input_cases(tmp_path):
    """Each verb that takes user input has failure cases here, with unique ids (a case dropped or a group left out
    fails this test; counting cases alone could not)."""
    groups = {}
    for c in CASES:
        groups.setdefault(c.args(tmp_path)[0], []).append(c.id)
    assert {"recipes", "data", "train", "eval", "cost", "report"} <= set(groups), groups
    assert len({c.id for c in CASES}) == len(CASES)
