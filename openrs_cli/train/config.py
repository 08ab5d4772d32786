"""Recipe -> TRL 1.16 `GRPOConfig` keyword arguments, model/tokenizer/dataset arguments, and the check that
every one of them is a real `GRPOConfig` field.

TRL changed defaults since the TRL commit the paper ran (Feb 2025): `beta` 0.04 -> 0.0, `loss_type` -> "dapo",
`max_prompt_length` and `warmup_ratio` removed, `gradient_checkpointing` renamed `activation_checkpointing`,
`no_cuda` renamed `use_cpu`, vLLM importance-sampling correction added. So the mapping passes every value that
shapes the optimisation explicitly (recipe values, and `PAPER_PINS` for knobs the recipe does not expose) and
never relies on a TRL default. `FIELD_MAP` documents where each recipe field goes; a unit test checks that it
covers every field of the schema.
"""

from __future__ import annotations

from pathlib import Path

from openrs_cli.errors import RecipeError
from openrs_cli.recipes.schema import Recipe

# Knobs newer TRL added or re-defaulted, fixed to what the paper's TRL did (so no default drift changes a run).
PAPER_PINS: dict[str, object] = {
    "num_iterations": 1,  # one policy update per generation batch (ratio = 1, clipping inactive)
    "importance_sampling_level": "token",
    "epsilon_high": None,  # symmetric clip [1 - epsilon, 1 + epsilon]
    "mask_truncated_completions": False,  # truncated completions still count in the loss
    "vllm_importance_sampling_correction": False,  # the paper's TRL had no vLLM/policy IS correction
    # TRL 1.x multiplies the KL term by the (differentiable) ratio by default, which changes the KL gradient even
    # on-policy; the paper's TRL added beta * k3 directly.
    "use_bias_correction_kl": False,
    "multi_objective_aggregation": "sum_then_normalize",  # r = sum_i w_i r_i, then group-normalise
    "top_k": 0,
    "repetition_penalty": 1.0,
    "disable_dropout": False,
    "steps_per_generation": None,  # = gradient_accumulation_steps: on-policy, like generating per micro-step
    "shuffle_dataset": True,
    "top_entropy_quantile": 1.0,
}

# Run mechanics openrs owns (not semantics): checkpoints must hold optimizer + scheduler + RNG for --resume,
# completions are written by openrs (completions.jsonl) rather than TRL's console table.
RUN_FIXED: dict[str, object] = {
    "save_strategy": "steps",
    "save_only_model": False,
    "logging_strategy": "steps",
    "log_completions": False,
    "disable_tqdm": True,
    "remove_unused_columns": False,
    "dataloader_num_workers": 0,
}

# Where each recipe field goes: "grpo:<GRPOConfig field>", "model:...", "tokenizer:...", "dataset:...",
# "rewards:...", "launch:...", "openrs:..." (handled by openrs itself, e.g. prompt truncation, completions log).
FIELD_MAP: dict[str, str] = {
    "name": "openrs:run name (run dir default runs/<name>)",
    "description": "openrs:launch.json",
    "model.id": "model:GRPOTrainer(model=...)",
    "model.revision": "grpo:model_init_kwargs.revision",
    "model.dtype": "grpo:model_init_kwargs.dtype",
    "model.attn_implementation": "grpo:model_init_kwargs.attn_implementation",
    "model.chat_template": "tokenizer:chat_template",
    "model.trust_remote_code": "grpo:trust_remote_code",
    "dataset.id": "dataset:load (hub id, saved dataset dir, jsonl/parquet, bundled:NAME)",
    "dataset.config": "dataset:load_dataset(name=...)",
    "dataset.split": "dataset:load_dataset(split=...)",
    "dataset.prompt_column": "dataset:user turn of the conversational prompt",
    "dataset.solution_column": "dataset:column 'solution' passed to reward functions",
    "dataset.answer_column": "dataset:column 'answer' passed to reward functions",
    "dataset.limit": "dataset:first N rows",
    "system_prompt": "dataset:system turn of the conversational prompt",
    "generation.use_vllm": "grpo:use_vllm",
    "generation.vllm_mode": "grpo:vllm_mode",
    "generation.vllm_gpu_memory_utilization": "grpo:vllm_gpu_memory_utilization (server: trl vllm-serve)",
    "generation.vllm_max_model_len": "grpo:vllm_max_model_length (server: trl vllm-serve --max_model_len)",
    "generation.vllm_server_host": "launch:trl vllm-serve --host (and grpo:vllm_server_host, server mode)",
    "generation.vllm_server_timeout": "grpo:vllm_server_timeout (and openrs's wait for the server's /health)",
    "generation.temperature": "grpo:temperature",
    "generation.top_p": "grpo:top_p",
    "generation.num_generations": "grpo:num_generations",
    "generation.max_prompt_length": "openrs:left-truncate prompts to this many tokens (TRL 1.x has no option)",
    "generation.max_completion_length": "grpo:max_completion_length",
    "optim.learning_rate": "grpo:learning_rate",
    "optim.lr_scheduler_type": "grpo:lr_scheduler_type",
    "optim.lr_scheduler_kwargs": "grpo:lr_scheduler_kwargs",
    "optim.warmup_ratio": "grpo:warmup_steps (a float < 1 is a ratio in transformers 5)",
    "optim.per_device_train_batch_size": "grpo:per_device_train_batch_size",
    "optim.gradient_accumulation_steps": "grpo:gradient_accumulation_steps",
    "optim.beta": "grpo:beta",
    "optim.epsilon": "grpo:epsilon",
    "optim.loss_type": "grpo:loss_type",
    "optim.scale_rewards": "grpo:scale_rewards",
    "optim.max_steps": "grpo:max_steps",
    "optim.gradient_checkpointing": "grpo:activation_checkpointing (gradient_checkpointing before transformers 5.23)",
    "optim.bf16": "grpo:bf16",
    "optim.seed": "grpo:seed",
    "rewards.variant": "rewards:build_reward_funcs",
    "rewards.funcs": "rewards:build_reward_funcs",
    "rewards.weights": "grpo:reward_weights",
    "rewards.cosine_max_len": "rewards:build_reward_funcs",
    "rewards.cosine_min_value_wrong": "rewards:build_reward_funcs",
    "rewards.cosine_max_value_wrong": "rewards:build_reward_funcs",
    "rewards.cosine_min_value_correct": "rewards:build_reward_funcs",
    "rewards.cosine_max_value_correct": "rewards:build_reward_funcs",
    "rewards.repetition_n_grams": "rewards:build_reward_funcs",
    "rewards.repetition_max_penalty": "rewards:build_reward_funcs",
    "rewards.format_require_answer": "rewards:build_reward_funcs",
    "output.output_dir": "grpo:output_dir (the run directory)",
    "output.save_steps": "grpo:save_steps",
    "output.save_total_limit": "grpo:save_total_limit",
    "output.logging_steps": "grpo:logging_steps",
    "output.log_completions_every": "openrs:completions.jsonl every N steps",
    "output.report_to": "grpo:report_to",
    "output.push_to_hub": "grpo:push_to_hub",
    "output.hub_model_id": "grpo:hub_model_id",
    "launch.accelerate_config": "launch:accelerate launch --config_file",
    "launch.num_processes": "launch:accelerate launch --num_processes",
    "launch.vllm_gpus": "launch:GPUs given to trl vllm-serve",
    "launch.cpu": "grpo:use_cpu (and one process; vLLM colocated, or a CPU server)",
}


def check_not_ignored(recipe: Recipe, overrides: list[str] | None = None, written: Recipe | None = None) -> None:
    """Values TRL would silently ignore: refuse them instead of pretending they apply.

    Called on the user's recipe (before it is resolved, when pydantic still knows which keys were written).
    `written` is the same recipe without the command-line `overrides`: then vLLM settings the YAML wrote for vLLM
    (e.g. exp3's, when `generation.use_vllm=false` turns it off, the maintainers' advice for one GPU) are moot,
    not an error; vLLM settings given while vLLM is off (in the YAML or as overrides) still are."""
    g = recipe.generation
    if not g.use_vllm:
        named = set(g.model_fields_set)
        if written is not None:
            named = {o.split("=", 1)[0].strip().removeprefix("generation.") for o in overrides or ()
                     if o.strip().startswith("generation.")}
            if not written.generation.use_vllm:
                named |= written.generation.model_fields_set
        ignored = sorted(f for f in named if f.startswith("vllm_"))
        if ignored:
            raise RecipeError(
                f"generation.{ignored[0]} is set but generation.use_vllm is false, so TRL would ignore it; "
                f"remove it or set generation.use_vllm=true"
            )
    if recipe.output.hub_model_id and not recipe.output.push_to_hub:
        raise RecipeError("output.hub_model_id is set but output.push_to_hub is false, so it would be ignored; "
                          "set output.push_to_hub=true or remove output.hub_model_id")


def check_recipe(recipe: Recipe, ref: str | None = None, overrides: list[str] | None = None) -> None:
    """Every check `openrs train` makes of a recipe before it plans; `openrs recipes validate` runs this same
    function. The model reference, values TRL would ignore (`ref` and `overrides` are how the recipe was loaded:
    see check_not_ignored), the accelerate config, and each GRPOConfig key against the installed TRL."""
    from openrs_cli.errors import OpenrsError
    from openrs_cli.models import check_model_ref
    from openrs_cli.recipes import accelerate_config_path, load_recipe

    check_model_ref(recipe.model.id)
    written = None
    if overrides and ref:
        try:
            written = load_recipe(ref)
        except OpenrsError:  # the YAML alone is incomplete (the overrides complete it): judge the result
            written = None
    check_not_ignored(recipe, overrides, written)
    accelerate_config_path(recipe.launch.accelerate_config)
    check_against_trl(grpo_kwargs(recipe, recipe.output.output_dir or f"runs/{recipe.name}"))


def flash_attn_installed() -> bool:
    """Whether the flash-attn package is importable (found, not imported: it loads CUDA)."""
    import importlib.util

    return importlib.util.find_spec("flash_attn") is not None


def flash_attn_missing(recipe: Recipe) -> str | None:
    """Why this machine cannot load the recipe's model, when it asks for flash_attention_2 and the flash-attn
    package is absent (transformers would fail mid-launch, after the run directory and vLLM started); else None."""
    if recipe.model.attn_implementation != "flash_attention_2" or flash_attn_installed():
        return None
    return (f"recipe '{recipe.name}' sets model.attn_implementation=flash_attention_2 but the flash-attn package is "
            f"not installed here; add model.attn_implementation=sdpa (PyTorch's fused attention) or install "
            f"flash-attn (README)")


def checkpointing_field(transformers_version: str | None = None) -> str:
    """TrainingArguments' name for activation checkpointing in the installed transformers (package metadata only):
    `activation_checkpointing` from 5.23 on, `gradient_checkpointing` before (5.17 is what vLLM 0.31 allows; the
    old name stays a deprecated alias until v6)."""
    from importlib import metadata

    from packaging.version import Version

    if transformers_version is None:
        try:
            transformers_version = metadata.version("transformers")
        except metadata.PackageNotFoundError:
            return "activation_checkpointing"
    return "activation_checkpointing" if Version(transformers_version).release >= (5, 23) else "gradient_checkpointing"


def grpo_kwargs(recipe: Recipe, run_dir: str | Path, *, vllm_host: str | None = None,
                vllm_port: int = 8000, vllm_group_port: int = 51216) -> dict:
    """The exact keyword arguments openrs passes to `trl.GRPOConfig` for this recipe (pure; no TRL import)."""
    m, g, o, out = recipe.model, recipe.generation, recipe.optim, recipe.output
    ckpt = checkpointing_field()
    init_kwargs: dict = {"dtype": m.dtype, "revision": m.revision}
    if m.attn_implementation:
        init_kwargs["attn_implementation"] = m.attn_implementation
    kw: dict = {
        "output_dir": str(run_dir),
        "model_init_kwargs": init_kwargs,
        "trust_remote_code": m.trust_remote_code,
        # generation
        "use_vllm": g.use_vllm,
        "temperature": g.temperature,
        "top_p": g.top_p,
        "num_generations": g.num_generations,
        "max_completion_length": g.max_completion_length,
        # optimisation
        "learning_rate": o.learning_rate,
        "lr_scheduler_type": o.lr_scheduler_type,
        "lr_scheduler_kwargs": dict(o.lr_scheduler_kwargs),
        "warmup_steps": float(o.warmup_ratio) if o.warmup_ratio else 0,
        "per_device_train_batch_size": o.per_device_train_batch_size,
        "gradient_accumulation_steps": o.gradient_accumulation_steps,
        "beta": o.beta,
        "epsilon": o.epsilon,
        "loss_type": o.loss_type,
        "scale_rewards": o.scale_rewards,
        "max_steps": o.max_steps,
        ckpt: o.gradient_checkpointing,
        f"{ckpt}_kwargs": {"use_reentrant": False} if o.gradient_checkpointing else None,
        "bf16": o.bf16,
        "fp16": False,
        "seed": o.seed,
        "use_cpu": recipe.launch.cpu,
        "reward_weights": [float(w) for w in (recipe.rewards.weights or [1.0] * len(recipe.rewards.funcs))],
        # output
        "save_steps": out.save_steps,
        "save_total_limit": out.save_total_limit,
        "logging_steps": out.logging_steps,
        "report_to": list(out.report_to),
        "push_to_hub": out.push_to_hub,
        "hub_model_id": out.hub_model_id,
        **PAPER_PINS,
        **RUN_FIXED,
    }
    if g.use_vllm:
        kw["vllm_mode"] = g.vllm_mode
        kw["vllm_gpu_memory_utilization"] = g.vllm_gpu_memory_utilization
        kw["vllm_max_model_length"] = g.vllm_max_model_len
        if recipe.launch.cpu and g.vllm_max_model_len is None:
            # vLLM-CPU would size its KV cache for the model's whole context (max_position_embeddings)
            kw["vllm_max_model_length"] = g.max_prompt_length + g.max_completion_length
        if g.vllm_mode == "server":
            kw["vllm_server_host"] = vllm_host or g.vllm_server_host
            kw["vllm_server_port"] = vllm_port
            kw["vllm_server_timeout"] = g.vllm_server_timeout
            kw["vllm_group_port"] = vllm_group_port
    if out.push_to_hub:
        kw["hub_strategy"] = "every_save"  # the paper pushed every checkpoint
    return kw


# The keys openrs passes that are transformers `TrainingArguments` fields (GRPOConfig inherits them), so that a key
# the installed GRPOConfig lacks is blamed on the package that defines it. A unit test keeps this in step with
# grpo_kwargs().
TRAINING_ARGUMENTS_KEYS = frozenset({
    "output_dir", "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps",
    "per_device_train_batch_size", "gradient_accumulation_steps", "max_steps", "bf16", "fp16", "seed", "use_cpu",
    "gradient_checkpointing", "gradient_checkpointing_kwargs", "activation_checkpointing",
    "activation_checkpointing_kwargs", "save_steps", "save_total_limit", "save_strategy", "save_only_model",
    "logging_steps", "logging_strategy", "report_to", "push_to_hub", "hub_model_id", "hub_strategy", "disable_tqdm",
    "remove_unused_columns", "dataloader_num_workers",
})


def check_against_trl(kwargs: dict) -> None:
    """Refuse any key that is not a `GRPOConfig` field of the installed TRL (TRL's own parser drops them), naming
    the package that lacks it (TRL, or transformers for a `TrainingArguments` field) and the tested version."""
    import dataclasses
    from importlib import metadata

    from trl import GRPOConfig

    from openrs_cli.doctor import tested_versions

    valid = {f.name for f in dataclasses.fields(GRPOConfig)}
    unknown = sorted(k for k in kwargs if k not in valid)
    if not unknown:
        return
    key = unknown[0]
    pkg, cls = ("transformers", "TrainingArguments") if key in TRAINING_ARGUMENTS_KEYS else ("trl", "GRPOConfig")
    have, want = metadata.version(pkg), tested_versions().get(pkg)
    if want and have.split("+")[0] != want.split("+")[0]:
        fix = f"install the tested {pkg} (pip install '{pkg}=={want}')"
    else:  # the tested version itself lacks it: openrs maps to a field that does not exist
        fix = f"{pkg} {have} is the tested version, so this is an openrs bug: please report it"
    raise RecipeError(f"{pkg} {have} {cls} has no field '{key}' (openrs maps a recipe value to it; tested with "
                      f"{pkg} {want or 'unknown'}); {fix}")


def planned_grpo(run_dir: str | Path) -> dict:
    """The GRPOConfig keyword arguments `openrs train` planned (and `--dry-run` printed) for this run, from
    <run_dir>/launch.json: the worker builds its config from them instead of mapping the recipe again."""
    import json

    from openrs_cli.errors import RunDirError

    path = Path(run_dir) / "launch.json"
    try:
        return dict(json.loads(path.read_text(encoding="utf-8"))["grpo"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RunDirError(f"{path} holds no launch plan ({type(e).__name__}: {e}); start runs with `openrs train`, "
                          f"which writes it") from None


def build_grpo_config(kwargs: dict):
    """Construct the real `GRPOConfig` (heavy import) after checking every key."""
    check_against_trl(kwargs)
    from trl import GRPOConfig

    return GRPOConfig(**kwargs)
