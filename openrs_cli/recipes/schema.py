"""The one recipe schema. A recipe holds what differs from these defaults; unknown keys are errors.

Field names follow TRL/transformers where one exists, so the train worker maps them one to one; the mapping
(and every semantic the paper relied on that TRL's defaults have since changed) lives in `openrs_cli.train`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

REWARD_NAMES = ("accuracy", "format", "tag_count", "cosine", "repetition_penalty", "length", "toy_digits")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSpec(_Strict):
    id: str = Field("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", description="Hub id, local path, or 'openrs-tiny'")
    revision: str = "main"
    dtype: Literal["bfloat16", "float16", "float32", "auto"] = "bfloat16"
    attn_implementation: str | None = Field(None, description="e.g. flash_attention_2, sdpa, eager; None = default")
    chat_template: str | None = Field(None, description="Jinja template replacing the tokenizer's own")
    trust_remote_code: bool = False


class DatasetSpec(_Strict):
    id: str = Field("knoveleng/open-rs", description="Hub id, a directory from `openrs data build`, or JSONL/Parquet")
    config: str | None = None
    split: str = "train"
    prompt_column: str = "problem"
    solution_column: str = "solution"
    answer_column: str | None = Field(None, description="Column with the bare final answer, if the data has one")
    limit: int | None = Field(None, gt=0, description="Use only the first N rows")


class GenerationSpec(_Strict):
    use_vllm: bool = True
    vllm_mode: Literal["server", "colocate"] = "server"
    vllm_gpu_memory_utilization: float = Field(0.7, gt=0, le=1)
    vllm_max_model_len: int | None = Field(None, gt=0)
    vllm_server_host: str = Field("127.0.0.1", min_length=1, description=(
        "Address the vLLM server listens on (server mode); 127.0.0.1 keeps its weight-update endpoints "
        "local, 0.0.0.0 opens them to the network"))
    vllm_server_timeout: float = Field(600.0, gt=0, description=(
        "Seconds openrs waits for the vLLM server's health endpoint before starting training (server mode; "
        "also TRL's vllm_server_timeout)"))
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    num_generations: int = Field(6, ge=2)
    max_prompt_length: int = Field(512, gt=0)
    max_completion_length: int = Field(3584, gt=0)


class OptimSpec(_Strict):
    learning_rate: float = Field(1e-6, gt=0)
    lr_scheduler_type: str = "cosine_with_min_lr"
    lr_scheduler_kwargs: dict[str, float | int | str] = Field(default_factory=lambda: {"min_lr_rate": 0.1})
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    per_device_train_batch_size: int = Field(6, gt=0)
    gradient_accumulation_steps: int = Field(4, gt=0)
    beta: float = Field(0.04, ge=0, description="KL coefficient (TRL 1.x default is 0.0; the paper used 0.04)")
    epsilon: float = Field(0.2, gt=0)
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = Field(
        "bnpo", description="bnpo = the paper's TRL: sum(loss*mask)/sum(mask) per micro-batch (TRL 1.x default: dapo)")
    scale_rewards: Literal["group", "batch", "none"] = "group"
    max_steps: int = Field(500, gt=0)
    gradient_checkpointing: bool = True
    bf16: bool = True
    seed: int = 42


class RewardsSpec(_Strict):
    variant: Literal["paper", "fixed"] = "paper"
    funcs: list[str] = Field(default_factory=lambda: ["format", "cosine"])
    weights: list[float] | None = None
    cosine_max_len: int | None = Field(None, gt=0)
    cosine_min_value_wrong: float = 0.0
    cosine_max_value_wrong: float = -0.5
    cosine_min_value_correct: float = 0.5
    cosine_max_value_correct: float = 1.0
    repetition_n_grams: int = Field(3, gt=0)
    repetition_max_penalty: float = Field(-1.0, le=0)
    format_require_answer: bool = Field(True, description="fixed variant: format also needs an <answer> block")


class OutputSpec(_Strict):
    output_dir: str | None = Field(None, description="Run directory; default runs/<recipe name>")
    save_steps: int = Field(50, gt=0)
    save_total_limit: int | None = Field(None, gt=0)
    logging_steps: int = Field(1, gt=0)
    log_completions_every: int = Field(10, ge=0, description="Write completions.jsonl samples every N steps (0=off)")
    report_to: list[str] = Field(default_factory=lambda: ["none"])
    push_to_hub: bool = False
    hub_model_id: str | None = None


class LaunchSpec(_Strict):
    accelerate_config: str = Field("zero2", description="zero2, zero3, ddp, or a path to an accelerate YAML")
    num_processes: int = Field(3, gt=0, description="Training processes (ranks)")
    vllm_gpus: int = Field(1, ge=0, description="GPUs reserved for the vLLM server (server mode)")
    cpu: bool = Field(False, description="Run on CPU: one process; vLLM (if generation.use_vllm) colocated, or as "
                      "a CPU server with vllm_mode=server and vllm_gpus >= 1")


class Recipe(_Strict):
    name: str = "custom"
    description: str = ""
    model: ModelSpec = Field(default_factory=ModelSpec)
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    system_prompt: str | None = None
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    optim: OptimSpec = Field(default_factory=OptimSpec)
    rewards: RewardsSpec = Field(default_factory=RewardsSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    launch: LaunchSpec = Field(default_factory=LaunchSpec)

    @model_validator(mode="after")
    def _cross_checks(self) -> Recipe:
        r, g, o, lch = self.rewards, self.generation, self.optim, self.launch
        unknown = [f for f in r.funcs if f not in REWARD_NAMES]
        if unknown:
            raise ValueError(f"rewards.funcs: unknown reward '{unknown[0]}'; valid: {', '.join(REWARD_NAMES)}")
        if not r.funcs:
            raise ValueError("rewards.funcs is empty; name at least one reward function")
        if r.weights is not None and len(r.weights) != len(r.funcs):
            raise ValueError(
                f"rewards.weights has {len(r.weights)} values but rewards.funcs has {len(r.funcs)} "
                f"({', '.join(r.funcs)}); give one weight per function"
            )
        if "cosine" in r.funcs and r.cosine_max_len is None:
            raise ValueError("rewards.cosine_max_len must be set when 'cosine' is a reward (the paper used 3584)")
        procs = 1 if lch.cpu else lch.num_processes
        per_step = o.per_device_train_batch_size * procs
        global_batch = per_step * o.gradient_accumulation_steps
        if global_batch % g.num_generations:
            raise ValueError(
                f"global batch {global_batch} (per_device_train_batch_size {o.per_device_train_batch_size} x "
                f"{procs} processes x gradient_accumulation_steps {o.gradient_accumulation_steps}) is not divisible "
                f"by generation.num_generations {g.num_generations}; change one of them"
            )
        if g.use_vllm and g.vllm_mode == "server" and lch.vllm_gpus < 1 and not lch.cpu:
            raise ValueError("generation.vllm_mode=server needs launch.vllm_gpus >= 1; or set "
                             "generation.vllm_mode=colocate")
        if g.vllm_max_model_len is not None and g.vllm_max_model_len < g.max_prompt_length + g.max_completion_length:
            raise ValueError(
                f"generation.vllm_max_model_len {g.vllm_max_model_len} is smaller than max_prompt_length + "
                f"max_completion_length ({g.max_prompt_length + g.max_completion_length}); raise it or unset it"
            )
        if self.output.push_to_hub and not self.output.hub_model_id:
            raise ValueError("output.push_to_hub is true but output.hub_model_id is empty; set output.hub_model_id")
        return self
