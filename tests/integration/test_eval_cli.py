"""End-to-end `openrs eval` with the tiny model: both files written, SIGKILL + rerun resumes without duplicates,
`eval compare` on two real runs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_openrs

pytestmark = pytest.mark.slow


def _keys(path: Path) -> list[tuple]:
    out = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        out.append((r["task"], r["id"], r["sample"]))
    return out


def test_acceptance_run_writes_both_files(tiny_model_dir, tmp_path, cli):
    out = tmp_path / "ev"
    args = ["eval", "--model", str(tiny_model_dir), "--tasks", "aime24,amc23", "--samples", "2", "--limit", "5",
            "--max-new-tokens", "64", "--out", str(out)]
    r = run_openrs(*args, env={"OPENRS_NVML_BACKEND": "null"})
    assert r.returncode == 0, r.stderr[-2000:]
    keys = _keys(out / "generations.jsonl")
    assert len(keys) == len(set(keys)) == 2 * 5 * 2
    res = json.loads((out / "results.json").read_text())
    assert res["kind"] == "results" and res["schema_version"] == 1 and res["backend"] == "transformers"
    assert res["sampling"]["samples"] == 2 and res["sampling"]["temperature"] == 0.6
    for t, full in (("aime24", 30), ("amc23", 40)):
        tr = res["tasks"][t]
        assert tr["n_problems"] == 5 and tr["samples"] == 2 and set(tr["pass@k"]) == {"1", "2"}
        assert 0 <= tr["pass@1"] <= 1 and len(tr["ci95"]) == 2 and tr["data_sha256"]
        # --limit 5 is marked in results.json itself, and kept out of the average
        assert tr["complete"] is False and tr["coverage"] == f"5/{full} problems" and tr["benchmark_problems"] == full
    assert res["average"] == {"pass@1": None, "tasks": [], "left_out": ["aime24", "amc23"]}
    spec = json.loads((out / "eval-run.json").read_text())  # the settings file has a header of its own kind
    assert spec["kind"] == "eval_run" and spec["schema_version"] == 1
    code, _, err = cli("report", "--results", str(out / "eval-run.json"), "--out", str(tmp_path / "rep"))
    assert code == 2 and "expected a 'results' record, found 'eval_run'" in err
    ledger = Path(res["cost_ledger"])  # the eval's cost ledger, with its generation phase
    assert ledger.is_file() and '"generation"' in ledger.read_text()
    from openrs_cli.evaluate.backend_base import sample_seed

    recs = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]
    assert all(r["seed"] == sample_seed(1234, r["task"], r["id"], r["sample"]) for r in recs)  # one per sample
    assert len({r["seed"] for r in recs}) == len(recs)
    rec = recs[0]
    assert rec["kind"] == "generation" and rec["prompt"].startswith("<|im_start|>user\nSolve the following")
    assert {"completion", "pred", "verdict", "n_tokens", "finish_reason", "sample"} <= set(rec)
    # a rerun of the same command generates nothing new and gives the same scores
    code, stdout, err = cli(*args, "--json")
    assert code == 0, err
    assert _keys(out / "generations.jsonl") == keys
    assert json.loads(stdout)["tasks"]["aime24"]["pass@1"] == res["tasks"]["aime24"]["pass@1"]
    # other sampling settings refuse to mix into this directory
    code, _, err = cli(*args, "--temperature", "0")
    assert code == 2 and "temperature=0.6" in err


def _start_and_wait_for_samples(args: list[str], gen, **popen):
    """Start `openrs ARGS` and return once it has saved 2 samples to `gen` (still running)."""
    cmd = [sys.executable, "-c", "from openrs_cli.main import run; run()", *args]
    p = subprocess.Popen(cmd, env=os.environ.copy(), **popen)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if gen.exists() and gen.read_text().count("\n") >= 2:
            break
        time.sleep(0.02)
    if p.poll() is not None:
        raise AssertionError("the run finished before it could be stopped; make it longer")
    return p


def test_sigkill_mid_run_then_rerun_completes_without_duplicates(tiny_model_dir, tmp_path, cli):
    out = tmp_path / "ev"
    gen = out / "generations.jsonl"
    args = ["eval", "--model", str(tiny_model_dir), "--tasks", "aime24,amc23", "--samples", "2", "--limit", "3",
            "--max-new-tokens", "128", "--batch-size", "1", "--out", str(out), "--no-cost"]
    p = _start_and_wait_for_samples(args, gen, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    before = _keys(gen)
    assert 2 <= len(before) < 12 and not (out / "results.json").exists()
    # simulate the worst case too: the kill landed in the middle of a line
    with open(gen, "a") as f:
        f.write('{"task": "aime24", "id": "aime24-6')
    code, _, err = cli(*args)
    assert code == 0, err
    after = _keys(gen)
    assert len(after) == len(set(after)) == 12  # 2 tasks x 3 problems x 2 samples, each once
    assert after[: len(before)] == before  # what was done was kept, not redone
    res = json.loads((out / "results.json").read_text())
    assert res["tasks"]["aime24"]["n_problems"] == 3 and res["tasks"]["amc23"]["samples"] == 2


def test_ctrl_c_mid_run_keeps_samples_in_one_line(tiny_model_dir, tmp_path, cli):
    """Ctrl-C (SIGINT to the whole foreground group, as a terminal sends it): exit 130, one line naming the samples
    kept and how to continue, no traceback from any process; the rerun says how many were already done."""
    out = tmp_path / "ev"
    gen = out / "generations.jsonl"
    args = ["eval", "--model", str(tiny_model_dir), "--tasks", "aime24,amc23", "--samples", "2", "--limit", "3",
            "--max-new-tokens", "128", "--batch-size", "1", "--out", str(out), "--no-cost"]
    p = _start_and_wait_for_samples(args, gen, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)
    try:
        os.killpg(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    saved = len(_keys(gen))
    assert p.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-2000:]
    # transformers' own loading bar, and the plain progress line a slow (busy) machine prints every 30 s
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("Loading weights", "generating "))]
    assert lines == [f"interrupted: {saved} of 12 samples saved in {out}; rerun the same command to continue"], err
    r = run_openrs(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming: {saved} of 12 samples already done in {out}" in r.stderr
    assert len(_keys(gen)) == 12


def test_compare_two_runs(tiny_model_dir, tmp_path, cli):
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"ev{seed}"
        code, _, err = cli("eval", "--model", str(tiny_model_dir), "--tasks", "amc23", "--limit", "4",
                           "--max-new-tokens", "16", "--seed", seed, "--out", str(out), "--no-cost")
        assert code == 0, err
        outs.append(out)
    code, stdout, err = cli("eval", "compare", str(outs[0]), str(outs[1] / "results.json"), "--json")
    assert code == 0, err
    res = json.loads(stdout)
    assert res["amc23"]["n"] == 4 and res["amc23"]["inside_noise"] is True
    code, stdout, err = cli("eval", "compare", str(outs[0]), str(outs[1]))
    assert code == 0 and "inside noise" in stdout
    code, _, err = cli("eval", "compare", str(outs[0]), str(tmp_path / "nothing"))
    assert code == 2 and "no results.json" in err


def test_eval_without_model_or_with_unknown_task(cli):
    code, _, err = cli("eval", "--tasks", "aime24")
    assert code == 2 and "--model" in err
    code, _, err = cli("eval", "--model", "openrs-tiny", "--tasks", "gsm8k")
    assert code == 2 and "valid tasks: aime24, amc23, math_500, minerva, olympiadbench" in err


def test_retrain_then_rerun_never_reuses_the_old_weights_samples(tmp_path, cli):
    """Scenario 1 of the eval-trust issue, end to end through the real CLI: `openrs train tiny`, `openrs eval`, then
    `openrs train tiny --overwrite` (another seed: other weights at the same path) and the same eval command. It used
    to print `wrote .../results.json (0.0 s)` from the old weights' samples; it must refuse, and `--fresh` must
    regenerate every sample from the new weights."""
    run = tmp_path / "runs" / "tiny"
    train = ["train", "tiny", "--run-dir", str(run), "--no-cost", "optim.max_steps=2", "output.save_steps=2"]
    r = run_openrs(*train, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "ev"
    ev = ["eval", "--model", str(run / "final"), "--tasks", "amc23", "--limit", "3", "--max-new-tokens", "16",
          "--out", str(out), "--no-cost"]
    r = run_openrs(*ev)
    assert r.returncode == 0, r.stderr[-2000:]
    first = {(x["id"], x["sample"]): x["completion"] for x in map(json.loads, (out / "generations.jsonl").open())}
    r = run_openrs(*train, "--overwrite", "optim.seed=7", timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_openrs(*ev)
    assert r.returncode == 2 and "holds samples of other weights" in r.stderr and "--fresh" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert {(x["id"], x["sample"]) for x in map(json.loads, (out / "generations.jsonl").open())} == set(first)
    r = run_openrs(*ev, "--fresh")
    assert r.returncode == 0, r.stderr[-2000:]
    recs = [json.loads(x) for x in (out / "generations.jsonl").open()]
    assert {(x["id"], x["sample"]) for x in recs} == set(first) and len(recs) == len(first)  # all regenerated, once
    from openrs_cli.evaluate.fingerprint import model_fingerprint

    res = json.loads((out / "results.json").read_text())
    assert res["model_fingerprint"]["sha256"] == model_fingerprint(str(run / "final"), None)["sha256"]
