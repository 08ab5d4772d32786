"""Multi-node training: the Slurm job script (pinned on its text), the multi-machine checks, the vLLM GPUs of
machines other than 0, and the shared run directory (machine 0 owns it, the others join). No Slurm needed."""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess

import pytest

from openrs_cli.errors import OpenrsError, RunDirError
from openrs_cli.recipes import load_recipe
from openrs_cli.train import rundir
from openrs_cli.train.api import train
from openrs_cli.train.launch import MultiNode, place, plan_launch
from openrs_cli.train.slurm import SlurmShape, job_layout, openrs_argv, parse_vllm_server, slurm_job


def test_exp3_three_nodes_dry_run_prints_only_the_script(cli, tmp_path):
    rd = tmp_path / "r"
    code, out, err = cli("train", "exp3", "--slurm", "--nodes", "3", "--gpus-per-node", "4", "--dry-run",
                         "--run-dir", str(rd), "--partition", "gpu", "--time", "1-00:00:00", "--account", "lab",
                         "--sbatch-arg=--qos=high")
    assert code == 0, err
    assert out.startswith("#!/bin/bash\n") and "global batch" not in out.split("#SBATCH --requeue")[0]
    assert subprocess.run(["bash", "-n"], input=out, text=True).returncode == 0
    lines = out.splitlines()
    for want in ["#SBATCH --nodes=3", "#SBATCH --ntasks-per-node=1", "#SBATCH --gres=gpu:4", "#SBATCH --requeue",
                 "#SBATCH --partition=gpu", "#SBATCH --time=1-00:00:00", "#SBATCH --account=lab",
                 "#SBATCH --qos=high", f"#SBATCH --output={rd}/logs/slurm-%j.out",
                 'mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")',
                 'export MAIN_HOST="${NODES[0]}"', 'TRAIN_NODES="$(IFS=,; echo "${NODES[*]:0:2}")"',
                 'export VLLM_HOST="${NODES[2]}"']:  # the vLLM server's node is the last of the three
        assert want in lines, want
    vllm = next(x for x in lines if "vllm-serve" in x)
    assert vllm.startswith('srun --nodes=1 --ntasks=1 --nodelist="$VLLM_HOST" --kill-on-bad-exit=1 --gres=gpu:1 ')
    assert "--host 0.0.0.0 --port 8000" in vllm and vllm.endswith("&")  # reachable from the training nodes
    # the vLLM step runs under `openrs cost track`, which bills the server node's GPUs into the run's ledger
    openrs = shlex.join(openrs_argv())  # the executable the training nodes' `openrs train` uses
    assert f" {openrs} cost track --run-dir {rd} --kind vllm-server -- " in vllm, vllm
    assert vllm.index(" cost track ") < vllm.index("/trl vllm-serve ")
    assert "# the vLLM server, billed by `openrs cost track`: machine 0's trainer (TRL's client) waits for its " \
        "/health" in lines
    step = next(x for x in lines if x.startswith("srun --nodes=2"))
    assert '--nodelist="$TRAIN_NODES" --kill-on-bad-exit=1 --gres=gpu:4' in step
    for want in [f"train {rd}/recipe.yaml --run-dir {rd} --resume", "--num-machines 2",
                 '--machine-rank "$SLURM_NODEID"', '--main-process-ip "$MAIN_HOST" --main-process-port 29500',
                 '--vllm-server "$VLLM_HOST:8000:51216"']:
        assert want in step, want
    # the plan on stderr: the shape's global batch, the warning and the override that restores the recipe's
    assert "global batch 192" in err and "recipe's 72" in err
    assert ("add: launch.num_processes=4 optim.per_device_train_batch_size=3 optim.gradient_accumulation_steps=3"
            in err)
    assert "--num_processes 8 --num_machines 2" in err  # machine 0's accelerate command, 2 nodes x 4 ranks
    assert not rd.exists()  # a dry run writes nothing


def test_without_cost_accounting_the_vllm_step_is_not_tracked(tmp_path):
    job = slurm_job("exp3", shape=SlurmShape(nodes=3, gpus_per_node=4), run_dir=tmp_path / "r", dry_run=True,
                    cost=False)
    vllm = next(x for x in job.script.splitlines() if "vllm-serve" in x)
    assert "cost track" not in job.script and "/trl vllm-serve " in vllm
    assert subprocess.run(["bash", "-n"], input=job.script, text=True).returncode == 0


def test_the_suggested_override_restores_the_recipes_global_batch():
    shape = SlurmShape(nodes=3, gpus_per_node=4)
    exp3 = load_recipe("exp3")
    lay = job_layout(exp3, shape, exp3)
    assert (lay.recipe_batch, lay.global_batch, lay.train_nodes, lay.ranks_per_node) == (72, 192, 2, 4)
    fix = lay.notes[-1].split("to restore it add: ")[1].split()
    again = job_layout(load_recipe("exp3", fix), shape, exp3)  # the fix passes the recipe's own checks too
    assert again.global_batch == 72 and not any("warning" in n for n in again.notes)
    same = job_layout(exp3, SlurmShape(nodes=2, gpus_per_node=3), exp3)  # the paper's 3 ranks
    assert same.global_batch == 72 and not any("warning" in n for n in same.notes)
    assert "divide 72" in job_layout(exp3, SlurmShape(nodes=6, gpus_per_node=7), exp3).notes[-1]
    assert not any("warning" in n for n in job_layout(exp3, shape).notes)  # a resume: the checkpoint's batch


def test_slurm_shapes_that_cannot_run_are_one_line_errors(cli, tmp_path):
    code, _, err = cli("train", "exp3", "--slurm", "--nodes", "1", "--gpus-per-node", "4", "--dry-run")
    assert code == 2 and "--nodes 2" in err
    code, _, err = cli("train", "tiny", "--slurm", "--gpus-per-node", "2", "--dry-run")
    assert code == 2 and "launch.cpu" in err
    code, _, err = cli("train", "tiny", "--slurm", "--submit", "--dry-run")
    assert code == 2 and "contradict" in err
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "keep.txt").write_text("mine")
    code, _, err = cli("train", "tiny", "--slurm", "--run-dir", str(tmp_path / "r"))
    assert code == 2 and "--overwrite" in err and (tmp_path / "r" / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "r" / "train.sbatch").exists()


def test_written_script_and_submit(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    calls = []

    def fake_sbatch(argv, **kw):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, "4242;cluster\n", "")

    rd = tmp_path / "r"
    job = slurm_job("tiny", ["optim.max_steps=2"], shape=SlurmShape(nodes=1), run_dir=rd, submit_job=True,
                    runner=fake_sbatch)
    assert job.job_id == "4242" and calls == [["sbatch", "--parsable", str(rd / "train.sbatch")]]
    assert (rd / "train.sbatch").read_text() == job.script and (rd / "logs").is_dir()
    assert rundir.is_run_dir(rd) and "max_steps: 2" in (rd / "recipe.yaml").read_text()
    assert "vllm-serve" not in job.script and "--gres" not in job.script  # a CPU recipe: every node trains
    assert f"train {rd}/recipe.yaml --run-dir {rd} --resume --num-machines 1" in job.script
    # the first launch of that job: --resume on the directory the submission made starts at step 0
    assert rundir.prepare_resume(rd) is None


def test_more_machines_need_the_main_process_address(cli):
    code, _, err = cli("train", "tiny", "--num-machines", "2")
    assert code == 2 and "--main-process-ip" in err and len(err.splitlines()) == 1
    code, _, err = cli("train", "exp3", "--dry-run", "--gpus", "4", "--num-machines", "2", "--machine-rank", "2",
                       "--main-process-ip", "10.0.0.1")
    assert code == 2 and "--machine-rank 2" in err
    with pytest.raises(OpenrsError, match="--main-process-ip"):
        plan_launch(load_recipe("tiny"), "runs/x", gpus=0, multinode=MultiNode(num_machines=2))


def test_a_cpu_recipe_is_refused_on_several_machines(cli):
    """accelerate's cpu config (distributed_type NO) ignores --num-machines: each machine would train alone into
    the same run directory (seen: two machine ranks on one host both trained steps 1-2 as world size 1)."""
    code, _, err = cli("train", "tiny", "--num-machines", "2", "--main-process-ip", "127.0.0.1", "--dry-run")
    assert code == 2 and "train alone" in err
    code, _, err = cli("train", "tiny", "--slurm", "--nodes", "2", "--dry-run")
    assert code == 2 and "--nodes 1" in err


def test_only_machine_0_reserves_the_vllm_gpu():
    exp3 = load_recipe("exp3")
    m0 = place(exp3, 4, MultiNode(2, 0, "10.0.0.1"))
    m1 = place(exp3, 4, MultiNode(2, 1, "10.0.0.1"))
    assert (m0.train_gpus, m0.vllm_gpus) == ((0, 1, 2), (3,))
    assert (m1.train_gpus, m1.vllm_gpus) == ((0, 1, 2), ())  # same ranks per machine, no idle GPU billed
    assert any("runs no vLLM server" in n for n in m1.notes)


def test_trainer_reaches_a_vllm_server_on_another_node(tmp_path):
    mn = MultiNode(2, 0, "node1", 29500, vllm_server=("node3", 8000, 51216))
    plan = plan_launch(load_recipe("exp3", ["launch.num_processes=4"]), tmp_path, gpus=4, multinode=mn)
    assert plan.command("vllm") is None and plan.placement.vllm_gpus == ()
    assert plan.placement.train_gpus == (0, 1, 2, 3) and plan.placement.mode == "gpu+vllm-remote"
    assert (plan.grpo["vllm_server_host"], plan.grpo["vllm_server_port"], plan.grpo["vllm_group_port"]) == \
        ("node3", 8000, 51216)
    a = list(plan.command("train").argv)
    assert a[a.index("--vllm-host") + 1] == "node3" and a[a.index("--num_processes") + 1] == "8"
    assert parse_vllm_server("node3:8000:51216") == ("node3", 8000, 51216)
    assert parse_vllm_server("node3") == ("node3", 8000, 51216)
    with pytest.raises(OpenrsError, match="HOST:PORT:GROUP_PORT"):
        parse_vllm_server("node3:x:y")


class _Proc:
    pid, returncode = -1, 0

    def poll(self):
        return 0

    def wait(self, timeout=None):
        return 0


def _sha(rd):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in rd.iterdir() if p.is_file()}


GPU_TINY = ["launch.cpu=false"]  # a GPU placement (one rank per machine) of the tiny recipe, on a faked GPU


@pytest.fixture()
def one_gpu(monkeypatch):
    monkeypatch.setattr("openrs_cli.train.api.detect_gpus", lambda: [{"index": 0, "name": "fake", "uuid": "GPU-0",
                                                                      "nvml_index": 0}])


def test_other_machines_join_machine_0s_run_directory(tmp_path, monkeypatch, one_gpu):
    rd = tmp_path / "r"
    monkeypatch.delenv("OPENRS_LAUNCH_ID", raising=False)
    started = []
    runner = lambda cmd, log: started.append(cmd) or _Proc()  # noqa: E731
    train("tiny", GPU_TINY, run_dir=rd, multinode=MultiNode(2, 0, "127.0.0.1"), cost=False, runner=runner)
    before = _sha(rd)
    held = rundir.lock_run_dir(rd)  # machine 0's lock is held while machine 1 joins (one flock on a shared disk)
    try:
        res = train("tiny", GPU_TINY, run_dir=rd, multinode=MultiNode(2, 1, "127.0.0.1"), cost=False, runner=runner)
    finally:
        import os

        os.close(held)
    assert res.returncode == 0 and len(started) == 2
    a = list(started[1].argv)
    assert a[a.index("--machine_rank") + 1] == "1"
    after = _sha(rd)
    assert {k: after[k] for k in before} == before  # recipe.yaml and launch.json stay machine 0's
    with pytest.raises(RunDirError, match="only machine rank 0"):
        train("tiny", GPU_TINY, run_dir=rd, overwrite=True, multinode=MultiNode(2, 1, "127.0.0.1"), cost=False,
              runner=runner)
    assert (rd / "recipe.yaml").is_file()


def _ckpt(rd, step, ranks):
    d = rd / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"x")
    (d / "optimizer.pt").write_bytes(b"x")
    (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    for r in range(ranks):
        (d / ("rng_state.pth" if ranks == 1 else f"rng_state_{r}.pth")).write_bytes(b"x")
    return d


def test_every_machine_resumes_from_machine_0s_checkpoint(tmp_path, monkeypatch, one_gpu):
    rd = tmp_path / "r"
    train("tiny", GPU_TINY, run_dir=rd, multinode=MultiNode(2, 0, "127.0.0.1"), cost=False,
          runner=lambda c, log: _Proc())
    two = _ckpt(rd, 2, 2)  # 2 machines x 1 rank
    launch = json.loads((rd / "launch.json").read_text())
    launch.update(launch_id="77.1", resume_from=str(two))
    (rd / "launch.json").write_text(json.dumps(launch))
    _ckpt(rd, 4, 2)  # newer, but machine 0 of launch 77.1 resumed from checkpoint-2
    monkeypatch.setenv("OPENRS_LAUNCH_ID", "77.1")
    started = []
    res = train("tiny", GPU_TINY, run_dir=rd, resume=True, multinode=MultiNode(2, 1, "127.0.0.1"), cost=False,
                runner=lambda c, log: started.append(c) or _Proc())
    a = list(started[0].argv)
    assert res.resumed_from == str(two) and a[a.index("--resume-from") + 1] == str(two)


def test_a_resume_with_another_world_size_is_refused(tmp_path):
    rd = tmp_path / "r"
    train("tiny", run_dir=rd, cost=False, runner=lambda c, log: _Proc())
    _ckpt(rd, 2, 2)
    with pytest.raises(RunDirError, match=r"saved by 2 training process\(es\) but this launch has 1 .*launch.num_processes=2"):
        train("tiny", run_dir=rd, resume=True, dry_run=True)
    ds = rd / "checkpoint-2" / "global_step2"
    ds.mkdir()
    for r in range(8):
        (ds / f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt").write_bytes(b"x")
    assert rundir.checkpoint_world_size(rd / "checkpoint-2") == 8
    assert rundir.checkpoint_world_size(_ckpt(rd, 4, 1)) == 1
    exp3 = tmp_path / "e"
    exp3.mkdir()
    ckpt = _ckpt(exp3, 50, 6)
    plan = plan_launch(load_recipe("exp3"), exp3, gpus=4, multinode=MultiNode(2, 0, "h"), ports=(1, 2))
    from openrs_cli.train.api import _check_world_size

    _check_world_size(ckpt, plan)  # 2 machines x 3 ranks = 6: fine
    with pytest.raises(RunDirError, match="launch.num_processes=2"):
        _check_world_size(ckpt, plan_launch(load_recipe("exp3"), exp3, gpus=4,
                                            multinode=MultiNode(3, 0, "h"), ports=(1, 2)))
