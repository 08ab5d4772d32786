"""`openrs eval --slurm`: the array and merge scripts (pinned, `bash -n`), and merge's refusals."""

import json
import subprocess

import pytest

from openrs_cli.errors import OpenrsError
from openrs_cli.evaluate.slurm import array_script, merge, merge_script


def test_array_script_has_one_task_per_benchmark_and_shard(tmp_path):
    s = array_script(out_dir="/o", workdir="/w", eval_argv=["openrs", "eval", "--model", "m x"],
                     tasks=["aime24", "amc23"], shards=3, gpus=1, partition="gpu", time="01:00:00",
                     sbatch_args=("--qos=high",))
    (tmp_path / "a.sh").write_text(s)
    assert subprocess.run(["bash", "-n", str(tmp_path / "a.sh")]).returncode == 0
    for line in ("#SBATCH --array=0-5", "#SBATCH --gres=gpu:1", "#SBATCH --partition=gpu", "#SBATCH --time=01:00:00",
                 "#SBATCH --qos=high", "#SBATCH --requeue", "TASKS=(aime24 aime24 aime24 amc23 amc23 amc23)",
                 "SHARDS=(0 1 2 0 1 2)"):
        assert line in s.splitlines(), line
    assert s.splitlines()[-1] == ("exec openrs eval --model 'm x' --tasks \"${TASKS[$k]}\" --shard \"${SHARDS[$k]}/3\""
                                  " --out /o/shards/\"${TASKS[$k]}-${SHARDS[$k]}\"")
    m = merge_script(out_dir="/o", workdir="/w", merge_argv=["openrs", "eval", "merge"])
    assert m.splitlines()[-1] == "exec openrs eval merge /o"


def test_cli_dry_run_writes_nothing_and_submit_needs_slurm(cli, tmp_path):
    out = tmp_path / "ev"
    code, stdout, err = cli("eval", "--model", "openrs-tiny", "--tasks", "amc23", "--shards", "2", "--slurm",
                            "--dry-run", "--out", str(out))
    assert code == 0, err
    assert "#SBATCH --array=0-1" in stdout and "--shard \"${SHARDS[$k]}/2\"" in stdout and not out.exists()
    code, _, err = cli("eval", "--model", "openrs-tiny", "--tasks", "amc23", "--submit")
    assert code == 2 and "--slurm" in err


def test_merge_refuses_missing_shards_and_foreign_dirs(tmp_path):
    with pytest.raises(OpenrsError, match="no slurm.json"):
        merge(tmp_path)
    from openrs_cli.schema import record

    (tmp_path / "slurm.json").write_text(json.dumps(record("eval_slurm", config={"model": "m", "tasks": "amc23"},
                                                           tasks=["amc23"], shards=2, units=["amc23-0", "amc23-1"])))
    with pytest.raises(OpenrsError, match="shard\\(s\\) amc23-0, amc23-1 have no results.json yet"):
        merge(tmp_path)


def test_shard_option_is_checked(cli):
    code, _, err = cli("eval", "--model", "openrs-tiny", "--tasks", "amc23", "--shard", "2/2")
    assert code == 2 and "i must be in 0..N-1" in err
