"""`openrs cost track -- CMD`: the vLLM server node's GPUs billed into the run's ledger (real subprocesses, a fake
NVML backend, no GPU). Waits poll for what they wait for, with generous limits, and nothing checks a duration."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

from openrs_cli.cost import FakeBackend, FakeClock, FakeDevice, open_monitor
from openrs_cli.cost.ledger import ledger_files, read_ledger
from openrs_cli.cost.summary import summarize_run
from tests.conftest import run_openrs

FAKE_ONE = {"OPENRS_NVML_BACKEND": 'fake:{"count": 1}', "CUDA_VISIBLE_DEVICES": "0"}
LIMIT_S = 180  # a guard against a hang on a busy machine, not a speed check


def _records(run_dir, kind=None):
    recs = [r for f in ledger_files(run_dir) for r in read_ledger(f)]
    return [r for r in recs if kind is None or r["record"] == kind]


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_the_wrapped_commands_gpu_is_billed(tmp_path):
    r = run_openrs("cost", "track", "--run-dir", str(tmp_path), "--",
                   *_py("import time; time.sleep(1.5); print('served')"), env=FAKE_ONE, timeout=LIMIT_S)
    assert r.returncode == 0, r.stderr
    assert "served" in r.stdout  # the child's stdout is the command's own
    s = summarize_run(tmp_path)
    assert s["gpu_count"] == 1 and s["gpu_hours"] > 0 and s["status"] == "ok"
    (start,) = _records(tmp_path, "run_start")
    assert start["run_kind"] == "vllm-server" and start["role"] == "sampler" and start["backend"] == "fake"
    assert [d["uuid"] for d in start["devices"]] == ["GPU-fake-fake-0"]  # CUDA_VISIBLE_DEVICES=0


def test_the_childs_exit_code_is_passed_through(tmp_path):
    r = run_openrs("cost", "track", "--run-dir", str(tmp_path), "--kind", "vllm-server", "--",
                   *_py("raise SystemExit(3)"), env=FAKE_ONE, timeout=LIMIT_S)
    assert r.returncode == 3, r.stderr
    (end,) = _records(tmp_path, "run_end")
    assert end["status"] == "error"


def test_sigterm_stops_the_child_and_still_closes_the_ledger(tmp_path):
    up = tmp_path / "child.pid"
    child = ("import os, pathlib, sys, time; p = pathlib.Path(sys.argv[1]); p.with_suffix('.tmp').write_text("
             "str(os.getpid())); p.with_suffix('.tmp').rename(p); time.sleep(600)")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from openrs_cli.main import run; run()", "cost", "track", "--run-dir",
         str(tmp_path / "run"), "--no-wait", "--", *_py(child), str(up)],
        env={**os.environ, **FAKE_ONE}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + LIMIT_S
        while not up.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the wrapped command never started"
            time.sleep(0.05)
        pid = int(up.read_text())
        proc.send_signal(signal.SIGTERM)  # as srun and scancel stop a step
        _, err = proc.communicate(timeout=LIMIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, err  # the child died of the forwarded SIGTERM
    try:
        os.kill(pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive
    (end,) = _records(tmp_path / "run", "run_end")
    assert end["status"] == "interrupted"
    assert summarize_run(tmp_path / "run")["gpu_count"] == 1


def test_a_command_that_does_not_exist_is_one_line(tmp_path):
    r = run_openrs("cost", "track", "--run-dir", str(tmp_path), "--", "openrs-no-such-command", "--flag",
                   env=FAKE_ONE, timeout=LIMIT_S)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "openrs-no-such-command" in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "cost").exists()  # nothing ran, nothing billed


def test_training_and_vllm_hosts_merge_in_one_summary(tmp_path, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.setenv("OPENRS_HOST", "train-node")
    clock = FakeClock(time.time())
    be = FakeBackend([FakeDevice(uuid="GPU-train-0"), FakeDevice(uuid="GPU-train-1")], clock=clock)
    mon = open_monitor(run, kind="train", backend=be, clock=clock, interval_s=60, heartbeat_s=600, thread=False)
    for _ in range(60):
        clock.advance(60)
        mon.tick()
    mon.close("ok")
    r = run_openrs("cost", "track", "--run-dir", str(run), "--kind", "vllm-server", "--", *_py("pass"),
                   env={**FAKE_ONE, "OPENRS_HOST": "vllm-node"}, timeout=LIMIT_S)
    assert r.returncode == 0, r.stderr
    s = summarize_run(run)
    assert s["hosts"] == ["train-node", "vllm-node"]
    assert s["gpu_count"] == 3 and {g["uuid"] for g in s["gpus"]} == {"GPU-train-0", "GPU-train-1", "GPU-fake-fake-0"}
    kinds = {r["host"]: r["run_kind"] for r in _records(run, "run_start")}
    assert kinds == {"train-node": "train", "vllm-node": "vllm-server"}


def test_without_nvml_the_null_backend_records_wall_time(tmp_path):
    r = run_openrs("cost", "track", "--run-dir", str(tmp_path), "--", *_py("pass"),
                   env={"OPENRS_NVML_BACKEND": "null", "CUDA_VISIBLE_DEVICES": "0"}, timeout=LIMIT_S)
    assert r.returncode == 0, r.stderr
    (start,) = _records(tmp_path, "run_start")
    assert start["backend"] == "null" and len(start["devices"]) == 1
    assert summarize_run(tmp_path)["gpu_count"] == 1


def test_a_monitor_that_cannot_open_does_not_stop_the_command(cli, tmp_path, monkeypatch, caplog):
    def broken(*a, **kw):
        raise RuntimeError("no ledger today")

    monkeypatch.setattr("openrs_cli.cost.monitor.open_monitor", broken)
    out = tmp_path / "ran.json"
    with caplog.at_level(logging.WARNING, logger="openrs.cost"):
        code, _, err = cli("cost", "track", "--run-dir", str(tmp_path), "--",
                           *_py(f"import json; json.dump('ran', open({str(out)!r}, 'w'))"))
    assert code == 0, err
    assert json.loads(out.read_text()) == "ran"
    assert "no ledger today" in caplog.text and "runs without it" in caplog.text


def test_the_ledger_waits_for_the_run_directory_unless_told_not_to(tmp_path):
    later = tmp_path / "later"
    make = (f"import pathlib, time; d = pathlib.Path({str(later)!r}); d.mkdir(); t = time.monotonic()\n"
            f"while not list(d.glob('cost/ledger-*.jsonl')) and time.monotonic() - t < {LIMIT_S}: time.sleep(0.05)")
    r = run_openrs("cost", "track", "--run-dir", str(later), "--", *_py(make), env=FAKE_ONE, timeout=LIMIT_S)
    assert r.returncode == 0, r.stderr
    assert "opens when the run creates it" in r.stderr
    assert _records(later, "run_end")[0]["status"] == "ok"  # opened once the command made the directory
    never = tmp_path / "never"
    r = run_openrs("cost", "track", "--run-dir", str(never), "--", *_py("pass"), env=FAKE_ONE, timeout=LIMIT_S)
    assert r.returncode == 0 and "nothing was billed" in r.stderr and not never.exists()
    now = tmp_path / "now"
    r = run_openrs("cost", "track", "--run-dir", str(now), "--no-wait", "--", *_py("pass"), env=FAKE_ONE,
                   timeout=LIMIT_S)
    assert r.returncode == 0 and summarize_run(now)["gpu_count"] == 1
