"""`openrs train tiny` end to end through real `accelerate launch` subprocesses on CPU (marked slow).

Covers: the run directory layout (train/rundir.py), a final/ model that loads and generates, weights that moved under the
dense toy reward, SIGKILL after the first checkpoint + --resume reaching max_steps with every optimiser step
done exactly once, and the DeepSpeed ZeRO-2 (CPU) accelerate config.
"""

from __future__ import annotations

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

METRIC_KEYS = {"step", "reward_mean", "reward_std", "completion_length_mean", "completion_length_max",
               "max_completion_length", "truncated_frac", "non_english_frac", "kl", "learning_rate",
               "step_time_s", "generation_time_s", "optimisation_time_s"}


def _records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_tiny_end_to_end(tmp_path, tiny_model_dir):
    run = tmp_path / "run"
    t0 = time.time()
    r = run_openrs("train", "tiny", "--run-dir", str(run), timeout=400)
    wall = time.time() - t0
    assert r.returncode == 0, r.stderr[-3000:] + (run / "logs" / "train.log").read_text()[-3000:]
    assert wall < 180, f"openrs train tiny took {wall:.0f}s"
    assert "step 4/4" in r.stdout and "done:" in r.stdout  # plain progress lines when not a terminal
    for name in ("recipe.yaml", "launch.json", "metrics.jsonl", "completions.jsonl", "checkpoint-2", "checkpoint-4",
                 "final/config.json", "final/tokenizer.json", "cost"):
        assert (run / name).exists(), name
    launch = json.loads((run / "launch.json").read_text())
    assert launch["kind"] == "launch" and launch["versions"]["trl"] and launch["placement"]["mode"] == "cpu"
    assert "accelerate" in launch["commands"][0]["argv"][0] and "openrs_cli.train.worker" in launch["commands"][0]["argv"]
    metrics = _records(run / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    for m in metrics:
        assert METRIC_KEYS <= set(m), METRIC_KEYS - set(m)
        assert m["kind"] == "metrics" and m["max_completion_length"] == 32
        assert 0 <= m["generation_time_s"] <= m["step_time_s"]
        assert {f"rewards/{n}/mean" for n in ("accuracy", "format", "toy_digits")} <= set(m)
    comps = _records(run / "completions.jsonl")
    assert {c["step"] for c in comps} == {2, 4} and all(c["kind"] == "completions" for c in comps)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run / "final")
    model = AutoModelForCausalLM.from_pretrained(run / "final")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    changed = sum(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), base.state_dict().values(), strict=True))
    assert changed >= 0.9 * len(base.state_dict())  # the dense toy_digits reward moved (nearly) every tensor
    ids = tok.apply_chat_template([{"role": "user", "content": "1+1?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]

    # A resumed run reproduces the uninterrupted one: a copy of this run cut back to checkpoint-2 (as a kill after
    # that checkpoint leaves it), resumed, gives steps 3 and 4 the same sampled rewards and losses.
    import shutil

    cut = tmp_path / "cut"
    shutil.copytree(run, cut)
    for name in ("checkpoint-4", "final"):
        shutil.rmtree(cut / name)
    r = run_openrs("train", "tiny", "--resume", "--run-dir", str(cut), "--no-cost", timeout=400)
    assert r.returncode == 0, r.stderr[-3000:] + (cut / "logs" / "train.log").read_text()[-3000:]
    resumed = _records(cut / "metrics.jsonl")
    assert [m["step"] for m in resumed] == [1, 2, 3, 4]
    for a, b in zip(metrics[2:], resumed[2:], strict=True):
        for key in ("reward_mean", "reward_std", "loss", "kl", "completion_length_mean"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key, a[key], b[key])


def test_sigkill_mid_run_then_resume(tmp_path):
    run = tmp_path / "run"
    args = ["train", "tiny", "optim.max_steps=8", "output.save_steps=2", "--run-dir", str(run), "--no-cost"]
    proc = subprocess.Popen([sys.executable, "-c", "from openrs_cli.main import run; run()", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    from openrs_cli.train.rundir import is_complete

    deadline = time.time() + 300
    while time.time() < deadline and not is_complete(run / "checkpoint-2"):
        assert proc.poll() is None, "training ended before its first checkpoint"
        time.sleep(0.2)
    import psutil

    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    assert any("openrs_cli.train.worker" in " ".join(p.cmdline()) for p in tree[1:])
    for p in tree:  # the launcher, accelerate and the worker, mid-run (as an OOM killer or scheduler would)
        p.send_signal(signal.SIGKILL)
    proc.wait()
    psutil.wait_procs(tree[1:], timeout=30)
    assert not (run / "final").exists() and not (run / "checkpoint-8").exists()

    r = run_openrs("train", "tiny", "--resume", "--run-dir", str(run), "--no-cost", timeout=400)
    assert r.returncode == 0, r.stderr[-3000:] + (run / "logs" / "train.log").read_text()[-3000:]
    state = json.loads((run / "checkpoint-8" / "trainer_state.json").read_text())
    assert state["global_step"] == 8 and state["max_steps"] == 8
    steps = [m["step"] for m in _records(run / "metrics.jsonl")]
    assert steps == list(range(1, 9))  # every optimiser step exactly once across the two launches
    launch = json.loads((run / "launch.json").read_text())
    assert launch["resume_from"].endswith(tuple(f"checkpoint-{s}" for s in range(2, 8, 2)))
    assert len(launch["history"]) == 1 and "--resume-from" in launch["commands"][0]["argv"]
    assert (run / "final" / "model.safetensors").is_file()


def test_killing_the_launcher_stops_the_worker(tmp_path):
    """SIGKILL of `openrs train` alone must not leave a rank training unobserved, and frees the run dir lock."""
    import psutil

    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", "from openrs_cli.main import run; run()", "train", "tiny",
                             "optim.max_steps=50", "--run-dir", str(run), "--no-cost"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (run / "metrics.jsonl").is_file():
        assert proc.poll() is None
        time.sleep(0.2)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children
    proc.kill()
    proc.wait()
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
    from openrs_cli.train.rundir import lock_run_dir

    os.close(lock_run_dir(run))  # nobody holds the run directory any more


def test_zero2_cpu_deepspeed(tmp_path):
    run = tmp_path / "run"
    r = run_openrs("train", "tiny", "launch.accelerate_config=zero2-cpu", "optim.max_steps=2", "--run-dir", str(run),
                   "--no-cost", timeout=600)
    log = (run / "logs" / "train.log").read_text()
    assert r.returncode == 0, r.stderr[-3000:] + log[-3000:]
    assert "DeepSpeed" in log or "deepspeed" in log
    assert [m["step"] for m in _records(run / "metrics.jsonl")] == [1, 2]
    assert (run / "final" / "config.json").is_file()
