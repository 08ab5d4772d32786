"""`openrs cost estimate`: predicted GPU-hours and dollars for a recipe before running it.

A two-part throughput model, calibrated on the paper's exp3 (500 steps in 24 h on 4x A40: 3 training ranks + 1
vLLM GPU, 72 completions of up to 512 + 3584 tokens per step):

    step_s = gen_share * T * (C * Lc / C0 / Lc0) * (P / P0) / (vllm_gpus * bw / bw0)
           + (1 - gen_share) * T * (C * (Lp + Lc) / (C0 * (Lp0 + Lc0))) * (P / P0) / (train_gpus * tflops / tflops0 / 3)

T = 172.8 s (exp3's measured step), C completions per step, Lp/Lc the prompt/completion token budgets, P model
parameters (from the model id, e.g. "1.5B"), bw memory bandwidth (decoding is bandwidth-bound), tflops dense
BF16 tensor throughput (training is compute-bound). GPU figures are datasheet peaks, so other GPUs are a rough
first-order estimate; the constants are returned with their sources so the user can judge.
"""

from __future__ import annotations

from openrs_cli.cost.prices import PriceTable, load_prices, normalize_key
from openrs_cli.errors import RecipeError

CALIBRATION = {
    "steps": 500, "hours": 24.0, "gpu": "A40", "train_gpus": 3, "vllm_gpus": 1, "completions_per_step": 72,
    "max_prompt_length": 512, "max_completion_length": 3584, "params_b": 1.5,
    "source": "arXiv 2503.16219 (Open-RS exp3: 500 steps, 24 h, 4x A40) and knoveleng/open-rs recipes/grpo.yaml",
}
GEN_SHARE = (0.8, "assumed: generation takes 70-90% of the wall time of RL with verifiable rewards (a range reported by energy-measurement projects, not measured here); midpoint used")
# name: (memory bandwidth GB/s, dense BF16 tensor TFLOPS, source)
GPU_SPECS = {
    "A40": (696, 149.7, "NVIDIA A40 datasheet"),
    "A100-80GB": (2039, 312, "NVIDIA A100 datasheet (SXM 80GB)"),
    "A100-40GB": (1555, 312, "NVIDIA A100 datasheet (40GB)"),
    "H100": (3350, 989, "NVIDIA H100 datasheet (SXM)"),
    "H200": (4800, 989, "NVIDIA H200 datasheet (SXM)"),
    "L40S": (864, 362, "NVIDIA L40S datasheet"),
    "RTX-4090": (1008, 165, "NVIDIA Ada Lovelace architecture whitepaper (RTX 4090)"),
    "L4": (300, 121, "NVIDIA L4 datasheet"),
}


def params_from_model_id(model_id: str) -> float | None:
    """'deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B' -> 1.5; None when the id names no size."""
    from openrs_cli.models import size_from_name

    return size_from_name(model_id)


def estimate(recipe, gpu: str = "A40", gpus: int | None = None, prices: PriceTable | None = None) -> dict:
    """Predicted wall hours, GPU-hours and cost of `recipe` (a Recipe) on `gpus` x `gpu`."""
    prices = prices or load_prices()
    key = normalize_key(gpu)
    if key not in GPU_SPECS:
        raise RecipeError(f"--gpu {gpu}: no throughput figures for it; choose one of {', '.join(GPU_SPECS)}")
    lch, g, o = recipe.launch, recipe.generation, recipe.optim
    notes: list[str] = []
    if lch.cpu:
        return {"recipe": recipe.name, "gpu": None, "gpus": 0, "steps": o.max_steps, "hours": None,
                "gpu_hours": 0.0, "cost_usd": 0.0, "constants": [],
                "notes": ["launch.cpu is true: the recipe runs on CPU and rents no GPU; no throughput model for CPU"]}
    from openrs_cli.train.launch import place  # the placement `openrs train` would use (pure, light)

    server = g.use_vllm and g.vllm_mode == "server"
    total = gpus if gpus is not None else lch.num_processes + (lch.vllm_gpus if server else 0)
    if total < 1:
        raise RecipeError(f"--gpus {total}: the recipe needs at least one GPU")
    placement = place(recipe, total)
    train_gpus = len(placement.train_gpus)
    gen_gpus = len(placement.vllm_gpus) or train_gpus  # colocated / plain generation runs on the training GPUs
    notes += [f"placement: {n}" for n in placement.notes]  # idle GPUs are billed but do no work
    if not g.use_vllm:
        notes.append("generation.use_vllm is false: generation by transformers is much slower than the vLLM "
                     "the calibration used; expect longer")
    c = o.per_device_train_batch_size * train_gpus * o.gradient_accumulation_steps
    cal = CALIBRATION
    t_step = cal["hours"] * 3600 / cal["steps"]
    params = params_from_model_id(recipe.model.id)
    p_scale = 1.0
    if params is None:
        notes.append(f"model '{recipe.model.id}' names no parameter count; assumed {cal['params_b']}B")
    else:
        p_scale = params / cal["params_b"]
    bw, tf, _ = GPU_SPECS[key]
    bw0, tf0, _ = GPU_SPECS[cal["gpu"]]
    share = GEN_SHARE[0]
    gen_s = share * t_step * (c * g.max_completion_length) / (cal["completions_per_step"] * cal["max_completion_length"])
    gen_s *= p_scale / (gen_gpus * bw / bw0 / cal["vllm_gpus"])
    tok = c * (g.max_prompt_length + g.max_completion_length)
    tok0 = cal["completions_per_step"] * (cal["max_prompt_length"] + cal["max_completion_length"])
    train_s = (1 - share) * t_step * tok / tok0 * p_scale / (train_gpus * tf / tf0 / cal["train_gpus"])
    step_s = gen_s + train_s
    hours = step_s * o.max_steps / 3600
    rate = prices.price(key)
    if key != cal["gpu"]:
        notes.append(f"{key} scaled from A40 by datasheet bandwidth/compute ratios: a first-order estimate")
    return {
        "recipe": recipe.name, "gpu": key, "gpus": total, "train_gpus": train_gpus, "generation_gpus": gen_gpus,
        "steps": o.max_steps, "completions_per_step": c, "step_s": step_s, "generation_s_per_step": gen_s,
        "train_s_per_step": train_s, "hours": hours, "gpu_hours": hours * total,
        "usd_per_gpu_hour": rate, "cost_usd": None if rate is None else hours * total * rate,
        "price_table": prices.label,
        "constants": [
            {"name": "calibration step time", "value": f"{t_step:.1f} s/step", "source": cal["source"]},
            {"name": "calibration batch", "value": f"{cal['completions_per_step']} completions x "
             f"({cal['max_prompt_length']} + {cal['max_completion_length']}) tokens, {cal['params_b']}B params",
             "source": cal["source"]},
            {"name": "generation share", "value": f"{share:.0%}", "source": GEN_SHARE[1]},
            {"name": f"{key} bandwidth / BF16", "value": f"{bw} GB/s, {tf} TFLOPS", "source": GPU_SPECS[key][2]},
        ] + ([] if key == cal["gpu"] else [
            {"name": "A40 bandwidth / BF16", "value": f"{bw0} GB/s, {tf0} TFLOPS", "source": GPU_SPECS["A40"][2]}]),
        "notes": notes,
    }
