"""Recipe schema, loading, overrides and every error path."""

from __future__ import annotations

import pytest

from openrs_cli.errors import RecipeError
from openrs_cli.recipes import apply_overrides, load_recipe, recipe_to_yaml, shipped_names
from openrs_cli.recipes.loader import validate

SYSTEM_EXP3 = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The assistant "
    "first thinks about the reasoning process in the mind and then provides the user with the answer, and put your "
    "final answer within \\boxed{{}} . The reasoning process and answer are enclosed within <think> </think> and "
    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here "
    "</answer>. Note that respond by English, NOT use other languages."
)


def test_all_shipped_recipes_validate():
    assert set(shipped_names()) >= {"exp1", "exp2", "exp3", "qwen3-1.7b", "tiny"}
    for name in shipped_names():
        assert load_recipe(name).name == name


def test_exp3_matches_paper():
    r = load_recipe("exp3")
    assert r.model.id == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    assert r.model.dtype == "bfloat16"
    assert r.dataset.id == "knoveleng/open-rs"
    assert r.optim.learning_rate == 1e-6
    assert r.optim.lr_scheduler_type == "cosine_with_min_lr"
    assert r.optim.lr_scheduler_kwargs == {"min_lr_rate": 0.1}
    assert r.optim.warmup_ratio == 0.1
    assert r.optim.per_device_train_batch_size == 6
    assert r.optim.gradient_accumulation_steps == 4
    assert r.launch.num_processes == 3 and r.launch.vllm_gpus == 1
    assert r.generation.num_generations == 6
    assert r.generation.max_prompt_length == 512
    assert r.generation.max_completion_length == 3584
    assert r.generation.temperature == 0.7
    assert r.optim.beta == 0.04
    assert r.optim.max_steps == 500
    assert r.output.save_steps == 50
    assert r.optim.bf16 and r.optim.gradient_checkpointing
    assert r.rewards.funcs == ["format", "cosine"] and r.rewards.weights == [1.0, 2.0]
    assert r.rewards.cosine_max_len == 3584
    assert r.optim.seed == 42
    assert r.system_prompt == SYSTEM_EXP3
    assert not r.output.push_to_hub


def test_exp1_exp2_qwen3_differences():
    e1, e2, q = load_recipe("exp1"), load_recipe("exp2"), load_recipe("qwen3-1.7b")
    assert e1.dataset.id == "knoveleng/open-s1" and e1.generation.max_completion_length == 4096
    assert e1.rewards.funcs == ["accuracy", "format"] and "English" not in e1.system_prompt
    assert e2.dataset.id == "knoveleng/open-rs" and e2.generation.max_completion_length == 3584
    assert e2.rewards.funcs == ["accuracy", "format"] and "English" not in e2.system_prompt
    assert q.model.id == "Qwen/Qwen3-1.7B" and q.rewards.funcs == ["format", "cosine"]
    assert q.optim == load_recipe("exp3").optim


def test_every_recipe_starts_with_launch_comment():
    from openrs_cli.recipes import SHIPPED_DIR

    for p in SHIPPED_DIR.glob("*.yaml"):
        assert p.read_text().startswith(f"# Launch: openrs train {p.stem}"), p


def test_override_precedence_and_types():
    r = load_recipe("exp3", ["optim.learning_rate=2e-6", "rewards.funcs=[accuracy,format]", "rewards.weights=[1,1]",
                             "optim.lr_scheduler_kwargs.min_lr_rate=0.2", "generation.use_vllm=false"])
    assert r.optim.learning_rate == 2e-6
    assert r.rewards.funcs == ["accuracy", "format"]
    assert r.optim.lr_scheduler_kwargs == {"min_lr_rate": 0.2}
    assert r.generation.use_vllm is False
    assert "learning_rate: 2.0e-06" in recipe_to_yaml(r)


def test_yaml_floats_like_1e_6(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("base: exp3\noptim:\n  learning_rate: 3e-6\n")
    assert load_recipe(str(p)).optim.learning_rate == 3e-6


@pytest.mark.parametrize(
    "body, needle",
    [
        ("optim:\n  learnin_rate: 1.0e-6\n", "unknown key 'optim.learnin_rate'; did you mean 'optim.learning_rate'?"),
        ("modle:\n  id: x\n", "did you mean 'model'?"),
        ("optim:\n  learning_rate: -1\n", "optim.learning_rate"),
        ("optim:\n  max_steps: many\n", "optim.max_steps"),
        ("rewards:\n  funcs: [format, cosine]\n  weights: [1.0]\n  cosine_max_len: 10\n", "give one weight per function"),
        ("rewards:\n  funcs: [format, cosine]\n  cosine_max_len: null\n", "cosine_max_len must be set"),
        ("rewards:\n  funcs: [acuracy]\n", "unknown reward 'acuracy'"),
        ("generation:\n  num_generations: 5\n", "global batch 72 (per_device_train_batch_size 6 x 3 processes x gradient_accumulation_steps 4) is not divisible by generation.num_generations 5"),
        ("generation:\n  vllm_max_model_len: 100\n", "vllm_max_model_len 100"),
        ("output:\n  push_to_hub: true\n", "hub_model_id"),
        ("launch:\n  vllm_gpus: 0\n", "vllm_mode=server needs"),
        ("optim: [1, 2]\n", "optim"),
    ],
)
def test_schema_errors(tmp_path, body, needle):
    p = tmp_path / "bad.yaml"
    p.write_text("base: exp3\n" + body)
    with pytest.raises(RecipeError) as e:
        load_recipe(str(p))
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "content, needle",
    [("", "the recipe is empty"), ("a: [1, 2\n", "YAML syntax error at line"), ("- 1\n- 2\n", "YAML mapping"),
     (b"\xff\xfe\x00bad", "not UTF-8")],
)
def test_file_errors(tmp_path, content, needle):
    p = tmp_path / "bad.yaml"
    (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
    with pytest.raises(RecipeError, match=needle):
        load_recipe(str(p))


def test_missing_file_and_unknown_name():
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe("nope/x.yaml")
    with pytest.raises(RecipeError, match="did you mean 'exp3'"):
        load_recipe("exp4")


def test_base_cycle(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(RecipeError, match="cycle"):
        load_recipe(str(tmp_path / "a.yaml"))


@pytest.mark.parametrize(
    "override, needle",
    [("optim.learning_rate", "has no '='"), ("=3", "empty key"), ("optim..x=1", "empty key"),
     ("name.sub=1", "is a value, not a section"), ("optim.learningrate=1", "did you mean 'optim.learning_rate'"),
     ("optim.max_steps=[", "YAML syntax error")],
)
def test_override_errors(override, needle):
    with pytest.raises(RecipeError, match=needle.replace("[", r"\[").replace("(", r"\(")):
        load_recipe("exp3", [override])


def test_apply_overrides_does_not_mutate():
    base = {"optim": {"learning_rate": 1}}
    out = apply_overrides(base, ["optim.learning_rate=2"])
    assert base["optim"]["learning_rate"] == 1 and out["optim"]["learning_rate"] == 2


def test_defaults_fill_in():
    r = validate({"rewards": {"funcs": ["accuracy"]}}, "x")
    assert r.optim.beta == 0.04 and r.rewards.weights is None


def test_cli_show_and_validate(cli, tmp_path):
    code, out, _ = cli("recipes", "show", "exp3", "optim.learning_rate=2e-6")
    assert code == 0 and "learning_rate: 2.0e-06" in out and "cosine_max_len: 3584" in out
    code, out, _ = cli("recipes", "validate")
    assert code == 0 and "ok exp3" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: exp3\noptim:\n  learnin_rate: 1\n")
    code, _, err = cli("recipes", "validate", str(bad))
    assert code == 2 and "did you mean 'optim.learning_rate'" in err


def test_cli_cp_never_overwrites(cli, tmp_path):
    dest = tmp_path / "mine.yaml"
    code, _, _ = cli("recipes", "cp", "exp3", str(dest))
    assert code == 0 and load_recipe(str(dest)).optim.max_steps == 500
    dest.write_text("# mine\n")
    code, _, err = cli("recipes", "cp", "exp3", str(dest))
    assert code == 2 and "already exists" in err
    assert dest.read_text() == "# mine\n"
    code, _, _ = cli("recipes", "cp", "tiny", str(tmp_path))
    assert code == 0 and (tmp_path / "tiny.yaml").is_file()


def test_accelerate_configs_exist():
    from openrs_cli.recipes import accelerate_config_path

    for name in ("zero2", "zero3", "ddp", "cpu"):
        assert accelerate_config_path(name).is_file()
    with pytest.raises(RecipeError, match="zero2"):
        accelerate_config_path("zero9")


@pytest.mark.parametrize(
    "body, override",
    [("base: tiny\noutput:\n  hub_model_id: me/x\n", "output.hub_model_id=me/x"),  # TRL would ignore it
     ("base: tiny\ngeneration:\n  vllm_gpu_memory_utilization: 0.5\n", "generation.vllm_gpu_memory_utilization=0.5"),
     ("base: tiny\nmodel:\n  id: ./no/such/model\n", "model.id=./no/such/model"),
     ("base: tiny\nlaunch:\n  accelerate_config: zero9\n", "launch.accelerate_config=zero9")],
)
def test_validate_runs_every_check_train_runs(cli, tmp_path, body, override):
    """`openrs recipes validate` refuses what `openrs train` refuses, with the same line (one shared check)."""
    p = tmp_path / "r.yaml"
    p.write_text(body)
    code, _, train_err = cli("train", str(p), "--dry-run")
    assert code == 2 and "\n" not in train_err
    assert cli("recipes", "validate", str(p))[::2] == (2, train_err)
    code, _, train_err = cli("train", "tiny", override, "--dry-run")
    assert code == 2
    assert cli("recipes", "validate", "tiny", override)[::2] == (2, train_err)


def test_every_recipe_error_is_listed_in_one_line():
    """Before: only pydantic's first error was shown, so a user fixed one typo per run."""
    from openrs_cli.errors import RecipeError

    with pytest.raises(RecipeError) as e:
        load_recipe("tiny", ["optim.learnin_rate=1e-6", "generation.temperature=hot", "output.save_stepz=3"])
    msg = str(e.value)
    assert "\n" not in msg and msg.count(";") >= 3 and "3 problems:" in msg
    for part in ("did you mean 'optim.learning_rate'", "generation.temperature:", "did you mean 'output.save_steps'"):
        assert part in msg
