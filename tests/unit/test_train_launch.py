"""Launcher and GRPOConfig mapping, without GPUs or subprocesses (pure functions + a fake runner)."""

from __future__ import annotations

import json

import pytest

from openrs_cli.errors import OpenrsError, RecipeError, RunDirError
from openrs_cli.recipes import load_recipe
from openrs_cli.recipes.schema import Recipe
from openrs_cli.train import rundir
from openrs_cli.train.config import FIELD_MAP, check_not_ignored, checkpointing_field, grpo_kwargs
from openrs_cli.train.launch import Command, MultiNode, place, plan_launch
from openrs_cli.train.run import run_plan
from tests.conftest import FinishedProcess, finished_runner


def _leaf_fields(model, prefix=""):
    from pydantic import BaseModel

    for name, f in model.model_fields.items():
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _leaf_fields(ann, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


def test_every_recipe_field_has_a_destination():
    leaves = set(_leaf_fields(Recipe))
    assert leaves == set(FIELD_MAP), (leaves ^ set(FIELD_MAP))


@pytest.mark.parametrize("name", ["exp1", "exp2", "exp3", "qwen3-1.7b", "tiny"])
def test_grpo_kwargs_are_real_grpoconfig_fields(name):
    import dataclasses

    from trl import GRPOConfig

    valid = {f.name for f in dataclasses.fields(GRPOConfig)}
    kw = grpo_kwargs(load_recipe(name), "runs/x", vllm_host="127.0.0.1")
    assert set(kw) <= valid, set(kw) - valid


def test_tiny_grpoconfig_constructs_with_exact_values(tmp_path):
    from openrs_cli.train.config import build_grpo_config

    cfg = build_grpo_config(grpo_kwargs(load_recipe("tiny"), tmp_path))
    assert cfg.use_cpu and cfg.beta == 0.04 and cfg.loss_type == "bnpo" and cfg.num_generations == 4
    assert cfg.gradient_checkpointing is False and cfg.max_completion_length == 32
    assert cfg.vllm_importance_sampling_correction is False and cfg.save_only_model is False
    assert cfg.use_bias_correction_kl is False


def test_exp3_maps_to_the_papers_semantics():
    kw = grpo_kwargs(load_recipe("exp3"), "runs/exp3", vllm_host="127.0.0.1")
    expect = {"beta": 0.04, "loss_type": "bnpo", "scale_rewards": "group", "learning_rate": 1e-6,
              "lr_scheduler_type": "cosine_with_min_lr", "lr_scheduler_kwargs": {"min_lr_rate": 0.1},
              "warmup_steps": 0.1, "per_device_train_batch_size": 6, "gradient_accumulation_steps": 4,
              "num_generations": 6, "max_completion_length": 3584, "temperature": 0.7, "top_p": 1.0,
              "reward_weights": [1.0, 2.0], "max_steps": 500, "save_steps": 50, "bf16": True,
              checkpointing_field(): True, "use_vllm": True, "vllm_mode": "server",
              "vllm_gpu_memory_utilization": 0.7, "vllm_max_model_length": 4608, "seed": 42, "epsilon": 0.2}
    assert {k: kw[k] for k in expect} == expect
    assert kw["model_init_kwargs"] == {"dtype": "bfloat16", "revision": "main",
                                       "attn_implementation": "flash_attention_2"}
    # the paper's TRL (Feb 2025) semantics, written out here (not read back from PAPER_PINS, which the code splices in)
    paper_trl = {"num_iterations": 1, "importance_sampling_level": "token", "epsilon_high": None,
                 "mask_truncated_completions": False, "vllm_importance_sampling_correction": False,
                 "multi_objective_aggregation": "sum_then_normalize", "top_k": 0, "repetition_penalty": 1.0,
                 "steps_per_generation": None, "top_entropy_quantile": 1.0}
    assert {k: kw[k] for k in paper_trl} == paper_trl
    # beta > 0: TRL 1.x's default ratio-weighted KL would change the KL gradient; the paper added beta * k3
    assert kw["use_bias_correction_kl"] is False


def test_ignored_values_are_errors():
    with pytest.raises(RecipeError, match="use_vllm is false"):
        check_not_ignored(load_recipe("tiny", ["generation.vllm_gpu_memory_utilization=0.5"]))
    check_not_ignored(load_recipe("tiny"))
    check_not_ignored(load_recipe("exp3"))


def test_placement_four_gpus_is_three_ranks_plus_vllm_server():
    p = place(load_recipe("exp3"), 4)
    assert (p.mode, p.train_gpus, p.vllm_gpus, p.num_processes) == ("gpu+vllm-server", (0, 1, 2), (3,), 3)


def test_placement_one_gpu_colocates_and_cpu_is_one_process():
    p = place(load_recipe("exp3"), 1, )
    assert p.mode == "gpu+vllm-colocate" and p.train_gpus == (0,) and p.vllm_gpus == ()
    with pytest.raises(RecipeError, match="not divisible"):  # 3 ranks x 1 x 1 = 3 fits G=3; 1 rank does not
        place(load_recipe("exp3", ["generation.num_generations=3", "optim.per_device_train_batch_size=1",
                                   "optim.gradient_accumulation_steps=1"]), 1)
    assert place(load_recipe("exp3", ["generation.vllm_mode=colocate"]), 4).mode == "gpu+vllm-colocate"
    cpu = place(load_recipe("tiny"), 0)
    assert (cpu.mode, cpu.num_processes, cpu.vllm_gpus) == ("cpu", 1, ())
    with pytest.raises(OpenrsError, match="--gpus"):
        place(load_recipe("exp3"), 0)


def test_plan_commands_exact(tmp_path):
    plan = plan_launch(load_recipe("exp3"), tmp_path / "run", gpus=4, ports=(8123, 8124))
    vllm, train = plan.command("vllm"), plan.command("train")
    assert plan.commands[0].role == "vllm"  # the server starts before the ranks
    assert vllm.env == {"CUDA_VISIBLE_DEVICES": "3", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}  # docs/cost.md
    assert vllm.argv[1:] == ("vllm-serve", "--model", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "--revision", "main",
                             "--tensor_parallel_size", "1", "--host", "127.0.0.1", "--port", "8123",
                             "--gpu_memory_utilization", "0.7",
                             "--dtype", "bfloat16", "--enable_prefix_caching", "true", "--max_model_len", "4608")
    a = list(train.argv)
    assert a[1] == "launch" and a[a.index("--config_file") + 1].endswith("accelerate/zero2.yaml")
    assert a[a.index("--num_processes") + 1] == "3"
    assert a[a.index("-m") + 1] == "openrs_cli.train.worker"
    assert a[a.index("--recipe") + 1] == str(tmp_path / "run" / "recipe.yaml")
    assert train.env == {"CUDA_VISIBLE_DEVICES": "0,1,2", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert plan.grpo["vllm_server_host"] == "127.0.0.1" and plan.grpo["vllm_mode"] == "server"


def test_plan_cpu_and_multinode(tmp_path):
    plan = plan_launch(load_recipe("tiny"), tmp_path, gpus=0)
    assert plan.command("vllm") is None and plan.command("train").env == {}
    a = list(plan.command("train").argv)
    assert a[a.index("--config_file") + 1].endswith("accelerate/cpu.yaml") and a[a.index("--num_processes") + 1] == "1"
    mn = MultiNode(num_machines=2, machine_rank=1, main_process_ip="10.0.0.1", main_process_port=29500)
    plan2 = plan_launch(load_recipe("exp3"), tmp_path, gpus=4, multinode=mn)
    b = list(plan2.command("train").argv)
    assert b[b.index("--num_processes") + 1] == "6" and b[b.index("--num_machines") + 1] == "2"
    assert b[b.index("--machine_rank") + 1] == "1" and b[b.index("--main_process_ip") + 1] == "10.0.0.1"
    assert b[b.index("--main_process_port") + 1] == "29500"
    assert plan2.command("vllm") is None  # the server lives on machine 0 only


def test_dry_run_cli_prints_placement_commands_and_config(cli, tmp_path):
    code, out, err = cli("train", "exp3", "--dry-run", "--gpus", "4", "--run-dir", str(tmp_path / "r"))
    assert code == 0, err
    assert "gpu+vllm-server" in out and "vllm-serve" in out and "--num_processes 3" in out
    assert "loss_type = 'bnpo'" in out and "beta = 0.04" in out and "[vllm] CUDA_VISIBLE_DEVICES=3" in out
    assert not (tmp_path / "r").exists()  # a dry run starts and writes nothing
    code, out, err = cli("train", "exp3", "--dry-run", "--gpus", "4", "--json")
    assert json.loads(out)["placement"]["vllm_gpus"] == [3]


def test_cli_errors_are_one_line(cli, tmp_path):
    code, _, err = cli("train", "exp3", "--dry-run")  # no GPU here, no --gpus
    assert code == 2 and "--gpus" in err
    code, _, err = cli("train", "exp3", "--gpus", "4")
    assert code == 2 and "--dry-run" in err
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "keep.txt").write_text("mine")
    code, _, err = cli("train", "tiny", "--run-dir", str(tmp_path / "r"))
    assert code == 2 and "--overwrite" in err and (tmp_path / "r" / "keep.txt").read_text() == "mine"
    code, _, err = cli("train", "tiny", "--resume", "--run-dir", str(tmp_path / "nope"))
    assert code == 2 and "does not exist" in err


class _FakeProc:
    def __init__(self, rc=0, polls=2):
        self.rc, self.polls, self.returncode, self.pid, self.stopped = rc, polls, None, -1, False

    def poll(self):
        if self.stopped:
            return self.returncode
        self.polls -= 1
        if self.polls < 0:
            self.returncode = self.rc
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            self.returncode = self.rc
        return self.returncode

    def terminate(self):
        self.stopped, self.returncode = True, -15

    kill = terminate


def test_run_plan_starts_vllm_first_and_always_stops_it(tmp_path, health_server):
    plan = plan_launch(load_recipe("exp3"), tmp_path, gpus=4, ports=(health_server.port, 1))
    started, procs, events = [], {}, []

    def runner(cmd: Command, log):
        started.append(cmd.role)
        if cmd.role == "train":
            (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "reward_mean": 0.5}) + "\n")
        procs[cmd.role] = _FakeProc(rc=0, polls=10**6 if cmd.role == "vllm" else 1)
        return procs[cmd.role]

    rc = run_plan(plan, runner=runner, on_event=lambda k, d: events.append((k, d)), poll_s=0)
    assert rc == 0 and started == ["vllm", "train"]
    assert procs["vllm"].stopped  # the server openrs started is stopped when training ends
    assert ("metrics", {"step": 1, "reward_mean": 0.5}) in events


def test_checkpoint_completeness_and_jsonl_truncation(tmp_path):
    def ckpt(step, complete=True):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"x")
        (d / "optimizer.pt").write_bytes(b"x")
        (d / "trainer_state.json").write_text(json.dumps({"global_step": step}) if complete else '{"glob')

    ckpt(2)
    ckpt(4, complete=False)  # killed while saving
    assert rundir.newest_complete_checkpoint(tmp_path).name == "checkpoint-2"
    m = tmp_path / "metrics.jsonl"
    m.write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3)) + '{"step": 4, "cut')
    assert rundir.truncate_jsonl_after(m, 2) == 1
    assert [json.loads(x)["step"] for x in m.read_text().splitlines()] == [1, 2]
    assert json.loads((tmp_path / "metrics.discarded.jsonl").read_text())["step"] == 3
    m.write_text('[1, 2]\n"text"\n{"step": "x"}\n{"step": 1}\n')  # valid JSON that is not a record: left out
    assert rundir.truncate_jsonl_after(m, 2) == 0
    assert [json.loads(x)["step"] for x in m.read_text().splitlines()] == ["x", 1]
    (tmp_path / "recipe.yaml").write_text("name: x\n")
    assert rundir.prepare_resume(tmp_path).name == "checkpoint-2"
    with pytest.raises(RunDirError):
        rundir.prepare_resume(tmp_path / "checkpoint-2")
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "config.json").write_text("{}")
    with pytest.raises(RunDirError, match="already finished"):
        rundir.prepare_resume(tmp_path)


def test_non_english_check():
    from openrs_cli.train.callbacks import is_non_english, non_english_frac

    assert not is_non_english("Therefore $x^2 + \\frac{1}{2}$ is \\boxed{3}. é")
    assert is_non_english("所以答案是 \\boxed{3}")
    assert is_non_english("Поэтому ответ 3")
    assert not is_non_english("12345 + 7 = ?")
    assert non_english_frac(["abc", "答案"]) == 0.5 and non_english_frac([]) is None


def test_run_dir_lock_is_exclusive(tmp_path):
    import os

    fd = rundir.lock_run_dir(tmp_path)
    with pytest.raises(RunDirError, match="in use"):
        rundir.lock_run_dir(tmp_path)
    os.close(fd)
    os.close(rundir.lock_run_dir(tmp_path))


def test_child_devices_follow_the_parents_visible_list():
    from openrs_cli.recipes import load_recipe
    from openrs_cli.train.launch import plan_launch

    plan = plan_launch(load_recipe("exp3"), "/tmp/run", gpus=4, visible_devices="2,3,4,5")
    envs = {c.role: c.env.get("CUDA_VISIBLE_DEVICES") for c in plan.commands}
    assert envs == {"train": "2,3,4", "vllm": "5"}
    plan = plan_launch(load_recipe("exp3"), "/tmp/run", gpus=4)
    assert {c.role: c.env.get("CUDA_VISIBLE_DEVICES") for c in plan.commands} == {"train": "0,1,2", "vllm": "3"}


def test_resume_overrides_reach_the_worker(tmp_path):
    """The worker reads <run_dir>/recipe.yaml, so overrides given with --resume must be written into it."""
    from openrs_cli.train.api import train

    runner = finished_runner
    rd = tmp_path / "run"
    train("tiny", run_dir=rd, cost=False, runner=runner)
    assert load_recipe(str(rd / "recipe.yaml")).optim.max_steps != 7
    res = train("tiny", ["optim.max_steps=7"], run_dir=rd, resume=True, cost=False, runner=runner)
    worker_recipe = res.plan.command("train").argv[res.plan.command("train").argv.index("--recipe") + 1]
    assert load_recipe(worker_recipe).optim.max_steps == 7 and res.plan.grpo["max_steps"] == 7
    assert json.loads((rd / "launch.json").read_text())["overrides"] == ["optim.max_steps=7"]


def test_shipped_vllm_recipe_can_turn_vllm_off_from_the_command_line():
    """exp3 with generation.use_vllm=false (open-rs maintainers' advice for one GPU): its YAML's vLLM settings are
    moot, not 'ignored values'; a vLLM setting given together with use_vllm=false still is an error."""
    from openrs_cli.train.api import train

    res = train("exp3", ["generation.use_vllm=false"], dry_run=True, gpus=1)
    assert res.plan.grpo["use_vllm"] is False and "vllm_mode" not in res.plan.grpo
    assert res.plan.placement.mode == "gpu" and res.plan.command("vllm") is None
    with pytest.raises(RecipeError, match="vllm_mode is set"):
        train("exp3", ["generation.use_vllm=false", "generation.vllm_mode=colocate"], dry_run=True, gpus=1)
    with pytest.raises(RecipeError, match="use_vllm is false"):
        train("tiny", ["generation.vllm_gpu_memory_utilization=0.5"], dry_run=True)


def test_overwrite_never_deletes_a_directory_openrs_did_not_make(tmp_path):
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    (mine / "recipe.yaml").write_text("name: my own recipe\n")
    with pytest.raises(RunDirError, match="not an openrs run directory"):
        rundir.prepare_new(mine, load_recipe("tiny"), overwrite=True)
    assert (mine / "thesis.tex").read_text() == "precious"
    run = tmp_path / "run"
    rundir.prepare_new(run, load_recipe("tiny"), overwrite=False)
    (run / "metrics.jsonl").write_text("{}\n")
    rundir.prepare_new(run, load_recipe("tiny"), overwrite=True)  # an openrs run is replaced
    assert not (run / "metrics.jsonl").exists() and rundir.is_run_dir(run)


def test_checkpointing_field_follows_the_installed_transformers():
    """vLLM 0.31 caps transformers < 5.18, whose TrainingArguments has no `activation_checkpointing` (added in
    5.23): passing it refused every recipe. The name follows the installed version, and the real GRPOConfig of the
    installed set takes every shipped recipe's kwargs."""
    import dataclasses

    from trl import GRPOConfig

    assert checkpointing_field("5.17.0") == "gradient_checkpointing"
    assert checkpointing_field("5.23.0") == checkpointing_field("5.24.1") == "activation_checkpointing"
    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    assert checkpointing_field() in fields and f"{checkpointing_field()}_kwargs" in fields


_Done, _done_runner = FinishedProcess, finished_runner


def test_worker_builds_the_planned_grpoconfig(tmp_path):
    """What --dry-run printed is what runs: the worker's GRPOConfig is the plan in launch.json, field by field, not
    the recipe mapped again (a value that only the plan holds reaches the trainer)."""
    import dataclasses

    from trl import GRPOConfig

    from openrs_cli.train.api import train
    from openrs_cli.train.worker import build_trainer

    rd = tmp_path / "run"
    train("tiny", run_dir=rd, cost=False, runner=_done_runner)
    launch = json.loads((rd / "launch.json").read_text())
    launch["grpo"]["logging_steps"] = 3  # the recipe says 1: only the plan can supply 3
    (rd / "launch.json").write_text(json.dumps(launch))
    trainer, _ = build_trainer(load_recipe(str(rd / "recipe.yaml")), rd)
    expect = GRPOConfig(**launch["grpo"])
    differ = [f.name for f in dataclasses.fields(GRPOConfig)
              if getattr(trainer.args, f.name) != getattr(expect, f.name)]
    assert differ == []
    assert trainer.args.logging_steps == 3 and trainer.args.reward_weights == [1.0, 1.0, 1.0]
    launch["grpo"]["reward_weights"] = [1.0, 0.5, 2.0]  # the reward functions' own weights must agree with the plan
    (rd / "launch.json").write_text(json.dumps(launch))
    with pytest.raises(ValueError, match="weights"):
        build_trainer(load_recipe(str(rd / "recipe.yaml")), rd)


def test_unknown_grpoconfig_key_names_the_package_that_lacks_it(monkeypatch):
    """A TrainingArguments field the installed transformers lacks names transformers (installed and tested version),
    not TRL; and the fix never asks to install the version that is already installed."""
    from importlib import metadata

    import openrs_cli.doctor
    import openrs_cli.train.config as config
    from openrs_cli.train.config import check_against_trl

    tf, trl = metadata.version("transformers"), metadata.version("trl")
    monkeypatch.setattr(openrs_cli.doctor, "tested_versions", lambda: {"transformers": "9.1.0", "trl": trl})
    # e.g. activation_checkpointing (transformers >= 5.23) under transformers 5.17
    keys = getattr(config, "TRAINING_ARGUMENTS_KEYS", frozenset())
    monkeypatch.setattr(config, "TRAINING_ARGUMENTS_KEYS", keys | {"a_newer_ta_field"}, raising=False)
    with pytest.raises(RecipeError) as e:
        check_against_trl({"a_newer_ta_field": True, "beta": 0.04})
    msg = str(e.value)
    assert msg.startswith(f"transformers {tf} TrainingArguments has no field") and "transformers==9.1.0" in msg
    assert "trl==" not in msg
    with pytest.raises(RecipeError) as e:
        check_against_trl({"beta": 0.04, "no_such_grpo_knob": 1})
    msg = str(e.value)
    assert msg.startswith(f"trl {trl} GRPOConfig has no field 'no_such_grpo_knob'")
    assert f"trl=={trl}" not in msg and "openrs bug" in msg


def test_training_arguments_keys_cover_what_openrs_passes():
    import dataclasses

    from transformers import TrainingArguments

    from openrs_cli.recipes import shipped_names
    from openrs_cli.train.config import TRAINING_ARGUMENTS_KEYS

    tf_fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    for name in shipped_names():
        for over in ([], ["output.push_to_hub=true", "output.hub_model_id=me/x"]):
            kw = grpo_kwargs(load_recipe(name, over if name != "tiny" else []), "runs/x")
            assert {k for k in kw if k in tf_fields} <= TRAINING_ARGUMENTS_KEYS
            assert not (set(kw) & TRAINING_ARGUMENTS_KEYS) - tf_fields


SHIPPED_PLANS = [(n, g) for n in ("exp1", "exp2", "exp3", "qwen3-1.7b") for g in (1, 2, 4, 8)] + [("tiny", 0)]


@pytest.mark.parametrize("name, gpus", SHIPPED_PLANS)
def test_every_shipped_plan_builds_a_real_grpoconfig(name, gpus, monkeypatch):
    """The installed TRL + transformers take each shipped recipe's plan, as the worker reads it from launch.json."""
    import transformers.training_args

    from openrs_cli.train.api import train
    from openrs_cli.train.config import build_grpo_config

    # the one device check in TrainingArguments.__post_init__: answered as on the GPU machine the plan is for
    monkeypatch.setattr(transformers.training_args, "is_torch_bf16_gpu_available", lambda: True)
    plan = train(name, dry_run=True, gpus=gpus).plan
    cfg = build_grpo_config(json.loads(json.dumps(plan.grpo)))
    assert cfg.max_steps == plan.grpo["max_steps"] and cfg.use_vllm == plan.grpo["use_vllm"]
    if plan.grpo["use_vllm"]:
        assert cfg.vllm_mode == ("server" if plan.placement.vllm_gpus else "colocate")
        assert cfg.vllm_gpu_memory_utilization == plan.grpo["vllm_gpu_memory_utilization"]


def test_dry_run_cli_one_gpu(cli, tmp_path):
    code, out, err = cli("train", "exp3", "--dry-run", "--gpus", "1", "--run-dir", str(tmp_path / "r"))
    assert code == 0, err
    assert "gpu+vllm-colocate" in out and "vllm_mode = 'colocate'" in out and "vllm-serve" not in out
    assert "vllm_gpu_memory_utilization = 0.3" in out and "disk: ~72 GB" in out.replace("\n", " ")
    assert not (tmp_path / "r").exists()


def test_colocate_fallback_lowers_vllm_memory_unless_the_command_line_set_it():
    """A server recipe on too few GPUs runs vLLM inside each training GPU: the recipe's 0.7 (sized for a GPU of its
    own) would leave too little for ZeRO-2 states, so the plan uses 0.3 and says so; a value given on the
    command line is kept."""
    from openrs_cli.train.api import train
    from openrs_cli.train.launch import COLOCATE_FALLBACK_MEMORY

    plan = train("exp3", dry_run=True, gpus=1).plan
    assert plan.grpo["vllm_mode"] == "colocate" and plan.grpo["vllm_gpu_memory_utilization"] == COLOCATE_FALLBACK_MEMORY
    assert any("lowered from the recipe's 0.7" in n for n in plan.placement.notes)
    plan = train("exp3", ["generation.vllm_gpu_memory_utilization=0.6"], dry_run=True, gpus=1).plan
    assert plan.grpo["vllm_gpu_memory_utilization"] == 0.6
    assert not any("lowered" in n for n in plan.placement.notes)
    assert train("exp3", dry_run=True, gpus=4).plan.grpo["vllm_gpu_memory_utilization"] == 0.7  # a GPU of its own
    plan = train("exp3", ["generation.vllm_mode=colocate"], dry_run=True, gpus=4).plan  # colocate by choice
    assert plan.grpo["vllm_gpu_memory_utilization"] == 0.7 and any("e.g. 0.3" in n for n in plan.placement.notes)


def test_resume_keeps_the_memory_share_its_first_launch_was_given(tmp_path, monkeypatch):
    import openrs_cli.train.api as api

    monkeypatch.setattr(api, "detect_gpus", lambda: [{"index": 0, "name": "fake"}])
    rd = tmp_path / "run"
    first = api.train("exp3", ["generation.vllm_gpu_memory_utilization=0.6", "model.attn_implementation=sdpa"],
                      run_dir=rd, cost=False, runner=_done_runner)
    assert first.plan.grpo["vllm_gpu_memory_utilization"] == 0.6
    again = api.train("exp3", run_dir=rd, resume=True, cost=False, runner=_done_runner)
    assert again.plan.grpo["vllm_gpu_memory_utilization"] == 0.6


def test_flash_attention_without_flash_attn(tmp_path, monkeypatch, cli):
    """exp3 asks for flash_attention_2: without the package the plan says so (dry run) and a real run is refused in
    one line naming the override, before the run directory exists."""
    import openrs_cli.train.api as api
    import openrs_cli.train.config as config

    monkeypatch.setattr(config, "flash_attn_installed", lambda: False)
    code, out, err = cli("train", "exp3", "--dry-run", "--gpus", "4")
    assert code == 0 and "flash-attn" in out and "model.attn_implementation=sdpa" in out.replace("\n", " ")
    monkeypatch.setattr(api, "detect_gpus", lambda: [{"index": 0, "name": "fake"}])  # colocated: no server to wait for
    started = []
    with pytest.raises(OpenrsError) as e:
        api.train("exp3", run_dir=tmp_path / "r", cost=False, runner=lambda c, log: started.append(c) or _Done())
    assert "model.attn_implementation=sdpa" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "r").exists() and started == []
    res = api.train("exp3", ["model.attn_implementation=sdpa"], run_dir=tmp_path / "r", cost=False,
                    runner=_done_runner)
    assert res.returncode == 0 and res.plan.notes == ()
    monkeypatch.setattr(config, "flash_attn_installed", lambda: True)
    assert api.train("exp3", dry_run=True, gpus=4).plan.notes == ()


def test_disk_estimate_for_the_paper_recipes_and_their_retention():
    from openrs_cli.recipes import accelerate_config_path
    from openrs_cli.train.disk import estimate

    zero2 = accelerate_config_path("zero2")
    d = estimate(load_recipe("exp3"), zero2)
    # per parameter: bf16 weights 2 + fp32 Adam moments 8 + fp32 master weights 4 + ZeRO-2's weights copy 2 bytes
    assert d["params_b"] == 1.5 and d["checkpoint_gb"] == pytest.approx(24) and d["checkpoints_saved"] == 10
    assert d["checkpoints_kept"] == 2 and d["peak_gb"] == pytest.approx(72)  # 2 kept + the one being written
    for name in ("exp1", "exp2", "qwen3-1.7b"):
        assert load_recipe(name).output.save_total_limit == 2
    every = estimate(load_recipe("exp3", ["output.save_total_limit=null"]), zero2)
    assert every["checkpoints_kept"] == 10 and every["peak_gb"] == pytest.approx(243)  # + final/ 3 GB
    unknown = estimate(load_recipe("exp3", ["model.id=someone/mystery-model"]), zero2)
    assert unknown["peak_gb"] is None and unknown["checkpoints_kept"] == 2


def test_disk_estimate_matches_real_files_without_deepspeed(tmp_path, tiny_model_dir):
    """Without DeepSpeed a checkpoint is the weights plus torch AdamW's two moments in the weights' dtype: checked
    against the files transformers and torch really write for the tiny model (its size read from safetensors)."""
    import torch
    from transformers import AutoModelForCausalLM

    from openrs_cli.recipes import accelerate_config_path
    from openrs_cli.train.disk import estimate

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters())
    ids = torch.tensor([[1, 2, 3, 4]])
    model(ids, labels=ids).loss.backward()
    opt.step()
    ckpt = tmp_path / "checkpoint-1"
    model.save_pretrained(ckpt)
    torch.save(opt.state_dict(), ckpt / "optimizer.pt")
    written = sum(f.stat().st_size for f in ckpt.iterdir())
    d = estimate(load_recipe("tiny", [f"model.id={tiny_model_dir}"]), accelerate_config_path("cpu"))
    assert d["params_b"] * 1e9 == sum(p.numel() for p in model.parameters())
    assert estimate(load_recipe("tiny"), accelerate_config_path("cpu")) == d  # openrs-tiny: its built directory
    assert d["checkpoint_gb"] * 1e9 == pytest.approx(written, rel=0.05)
    assert d["final_gb"] * 1e9 == pytest.approx((ckpt / "model.safetensors").stat().st_size, rel=0.05)


def test_doctor_names_the_recipes_that_need_flash_attn(monkeypatch):
    from openrs_cli import doctor

    real = doctor.installed_version
    monkeypatch.setattr(doctor, "installed_version", lambda pkg: None if pkg == "flash-attn" else real(pkg))
    cap = doctor.collect()["capabilities"]["flash-attention"]
    need = [n for n in ("exp1", "exp2", "exp3", "qwen3-1.7b", "tiny")
            if load_recipe(n).model.attn_implementation == "flash_attention_2"]
    assert not cap["ok"] and need and all(n in cap["note"] for n in need) and "tiny" not in cap["note"]
    assert "model.attn_implementation=sdpa" in cap["note"]
