"""The generated Slurm job under a real Slurm: the one-node cluster scripts/slurm_local.sh starts (.ci/run does).

Skipped only where there is no `sbatch`; with sbatch but no cluster answering they fail and say how to start it.
A one-node cluster cannot give a job a second node, so the vLLM-node layout is pinned on its text in
tests/unit/test_train_slurm.py; here the script runs for real: the hosts from scontrol, the machine rank from
SLURM_NODEID, tiny training to completion, and a requeue that continues from the checkpoint.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_openrs

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("sbatch") is None, reason="no sbatch (Slurm) on this machine")]

HANG_S = 900  # a guard against a job that never ends, not a speed check
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


@pytest.fixture(scope="module", autouse=True)
def cluster():
    r = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.strip():
        pytest.fail(f"sbatch is installed but no Slurm cluster answers ({r.stderr.strip()}); start the local one "
                    f"with scripts/slurm_local.sh start")


def _job(job_id: str) -> dict:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def _wait(job_id: str, until=lambda info: info.get("JobState") in TERMINAL) -> dict:
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline:
        info = _job(job_id)
        if until(info):
            return info
        time.sleep(0.2)
    subprocess.run(["scancel", job_id])
    pytest.fail(f"Slurm job {job_id} did not get there within {HANG_S} s: {_job(job_id)}")


def _submitted(out: str) -> str:
    m = re.search(r"submitted job (\d+)", out)
    assert m, out
    return m.group(1)


RECORD = ("import json, os, sys; json.dump({'argv': sys.argv[2:], 'env': {k: os.environ.get(k) for k in "
          "('SLURM_NODEID', 'MAIN_HOST', 'OPENRS_LAUNCH_ID', 'SLURM_JOB_NODELIST')}}, open(sys.argv[1], 'w'))")


def test_the_job_script_gives_each_node_its_rank_and_the_main_host(tmp_path):
    """The generated script with the training command replaced by a stand-in that records what it was given."""
    from openrs_cli.recipes import load_recipe
    from openrs_cli.train.slurm import SlurmShape, job_layout, sbatch_script

    shape = SlurmShape(nodes=1)
    rd, seen = tmp_path / "run", tmp_path / "seen.json"
    (rd / "logs").mkdir(parents=True)
    script = sbatch_script(recipe_name="tiny", run_dir=str(rd), workdir=str(tmp_path), shape=shape,
                           layout=job_layout(load_recipe("tiny"), shape),
                           train_argv=[sys.executable, "-c", RECORD, str(seen)])
    (rd / "train.sbatch").write_text(script)
    job = subprocess.run(["sbatch", "--parsable", str(rd / "train.sbatch")], capture_output=True, text=True,
                         check=True).stdout.strip().split(";")[0]
    info = _wait(job)
    log = next((rd / "logs").glob(f"slurm-{job}.out")).read_text()
    assert info["JobState"] == "COMPLETED", log
    got = json.loads(seen.read_text())
    hosts = subprocess.run(["scontrol", "show", "hostnames", got["env"]["SLURM_JOB_NODELIST"]], capture_output=True,
                           text=True, check=True).stdout.split()
    assert got["env"]["SLURM_NODEID"] == "0" and got["env"]["MAIN_HOST"] == hosts[0]
    assert got["env"]["OPENRS_LAUNCH_ID"] == f"{job}.0"
    a = got["argv"]
    assert a[a.index("--machine-rank") + 1] == "0" and a[a.index("--num-machines") + 1] == "1"
    assert "training exited with code 0" in log


def test_tiny_trains_through_sbatch_and_a_requeue_continues_from_its_checkpoint(tmp_path):
    from openrs_cli.train.rundir import is_complete

    rd = tmp_path / "run"
    r = run_openrs("train", "tiny", "--slurm", "--nodes", "1", "--run-dir", str(rd), "--submit",
                   "optim.max_steps=8", "output.save_steps=2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    job = _submitted(r.stdout)
    assert (rd / "train.sbatch").read_text() in r.stdout
    info = _wait(job, lambda i: i.get("JobState") in TERMINAL or is_complete(rd / "checkpoint-2"))
    assert info["JobState"] not in TERMINAL, "the job ended before it could be requeued"
    subprocess.run(["scontrol", "requeue", job], check=True)  # as a preemption would
    _wait(job, lambda i: i.get("JobState") == "PENDING")
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)  # skip the requeue delay
    info = _wait(job)
    log = (rd / "logs" / f"slurm-{job}.out").read_text()
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", log
    launch = json.loads((rd / "launch.json").read_text())
    assert launch["launch_id"] == f"{job}.1" and [h["launch_id"] for h in launch["history"]] == [f"{job}.0"]
    assert launch["history"][0]["resume_from"] is None  # the first launch: --resume found no checkpoint
    assert Path(launch["resume_from"]).parent == rd and is_complete(Path(launch["resume_from"]))
    assert f"resuming from {launch['resume_from']}" in log
    steps = [json.loads(x)["step"] for x in (rd / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))  # steps after the checkpoint were redone once, none lost
    assert (rd / "final" / "config.json").is_file()


def _strip(rec: dict) -> dict:
    """A generation record without what differs between two runs of the same samples (time)."""
    return {k: v for k, v in rec.items() if k not in ("time_utc",)}


def test_an_eval_array_merges_to_the_one_machine_result(tmp_path, tiny_model_dir):
    """`openrs eval --slurm --shards 2 --submit`: a 4-task array (2 benchmarks x 2 shards) and a merge job after it,
    under the real Slurm; the merged results.json and generations equal one machine's with the same seeds."""
    args = ["eval", "--model", str(tiny_model_dir), "--tasks", "aime24,amc23", "--limit", "3", "--samples", "2",
            "--max-new-tokens", "8", "--backend", "transformers"]
    arr = tmp_path / "arr"
    r = run_openrs(*args, "--slurm", "--shards", "2", "--submit", "--out", str(arr), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    m = re.search(r"submitted array job (\d+) and merge job (\d+)", r.stdout)
    assert m, r.stdout
    info = _wait(m.group(2))
    logs = "\n".join(p.read_text() for p in sorted((arr / "logs").glob("*.out")))
    assert info["JobState"] == "COMPLETED", logs
    for k in range(4):
        assert _job(f"{m.group(1)}_{k}").get("JobState") == "COMPLETED"
    one = tmp_path / "one"
    r = run_openrs(*args, "--out", str(one), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = (json.loads((d / "results.json").read_text()) for d in (arr, one))
    assert a["tasks"].keys() == b["tasks"].keys() == {"aime24", "amc23"}
    for t in a["tasks"]:
        for key in ("per_problem", "pass@1", "n_problems", "samples", "verdicts", "coverage", "ci95"):
            assert a["tasks"][t][key] == b["tasks"][t][key], (t, key)
    assert a["average"] == b["average"] and len(a["merged_from"]) == 4
    ga, gb = ([_strip(json.loads(x)) for x in (d / "generations.jsonl").read_text().splitlines()] for d in (arr, one))
    assert ga == gb  # the same samples, in the same order
    assert len(list((arr / "cost").glob("ledger-*.jsonl"))) == 4  # every shard's ledger, for openrs cost summary
    r = run_openrs("cost", "summary", str(arr))
    assert r.returncode == 0, r.stderr
