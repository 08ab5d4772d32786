"""The disk a training run needs: an estimate from the model's parameter count, shown in the plan.

A checkpoint holds the weights (model.safetensors, in the recipe's dtype) and, for --resume, the optimizer. Under
DeepSpeed the Adam moments are fp32 (8 bytes per parameter), 16-bit weights add fp32 master weights (4), and ZeRO-1/2
store the weights a second time (global_step*/mp_rank_00_model_states.pt); without DeepSpeed torch's AdamW keeps
its two moments in the weights' dtype. transformers' `save_total_limit` keeps the newest N checkpoints, deleting
older ones only after it has written a new one (so N + 1 exist for a moment); unset, every checkpoint stays.
final/ holds the weights once more. The parameter count comes from the model id ("...-1.5B", or a published model
openrs knows) or, for a local model directory (the tiny model's once built), its safetensors headers; otherwise it
is unknown.
"""

from __future__ import annotations

import math
from pathlib import Path

from openrs_cli.recipes.schema import Recipe

WEIGHT_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "auto": 2}  # auto: these models ship 16-bit weights


def params_b(model_id: str) -> float | None:
    """Parameters in billions, or None when neither the id nor a local directory says."""
    from openrs_cli.report.inputs import size_b
    from openrs_cli.tiny import TINY_ID, tiny_model_dir

    local = tiny_model_dir() if model_id == TINY_ID else Path(model_id).expanduser()  # tiny: once it is built
    return size_b(model_id, model_dir=local if local.is_dir() else None)


def deepspeed_stage(accelerate_config: Path) -> int | None:
    """ZeRO stage of an accelerate config, None when it does not use DeepSpeed."""
    import yaml

    cfg = yaml.safe_load(accelerate_config.read_text(encoding="utf-8")) or {}
    if cfg.get("distributed_type") != "DEEPSPEED":
        return None
    return int((cfg.get("deepspeed_config") or {}).get("zero_stage", 0))


def estimate(recipe: Recipe, accelerate_config: Path, params: float | None = None) -> dict:
    """{params_b, checkpoint_gb, checkpoints_saved, checkpoints_kept, final_gb, peak_gb, basis}; sizes None when
    the parameter count is unknown. `params` (billions) overrides the lookup."""
    o, out = recipe.optim, recipe.output
    saved = math.ceil(o.max_steps / out.save_steps)  # every save_steps, and at the last step
    limit = out.save_total_limit
    kept = saved if limit is None else min(limit, saved)
    on_disk = kept + 1 if limit is not None and limit < saved else kept  # the new one, before the oldest goes
    w = WEIGHT_BYTES[recipe.model.dtype]
    stage = deepspeed_stage(accelerate_config)
    if stage is None:
        per_param, basis = w + 2 * w, f"{recipe.model.dtype} weights + AdamW moments in the same dtype"
    else:
        per_param = w + 8 + (4 if w < 4 else 0) + (w if stage < 3 else 0)
        basis = (f"{recipe.model.dtype} weights + fp32 Adam moments" + (" + fp32 master weights" if w < 4 else "")
                 + (f" + DeepSpeed ZeRO-{stage}'s copy of the weights" if stage < 3 else ""))
    p = params_b(recipe.model.id) if params is None else params
    if p is None:
        return {"params_b": None, "checkpoint_gb": None, "checkpoints_saved": saved, "checkpoints_kept": kept,
                "final_gb": None, "peak_gb": None, "basis": basis}
    ckpt, final = p * per_param, p * w  # billions of parameters x bytes = GB
    return {"params_b": p, "checkpoint_gb": ckpt, "checkpoints_saved": saved, "checkpoints_kept": kept,
            "final_gb": final, "peak_gb": max(on_disk * ckpt, kept * ckpt + final), "basis": basis}


def _gb(gb: float) -> str:
    return f"{gb:.3g} GB" if gb >= 1 else f"{gb * 1000:.3g} MB"


def describe(disk: dict) -> str:
    """One line for the plan."""
    limit = (f"keeps the newest {disk['checkpoints_kept']} (output.save_total_limit)"
             if disk["checkpoints_kept"] < disk["checkpoints_saved"] else "keeps all (output.save_total_limit unset)")
    if disk["params_b"] is None:
        return (f"{disk['checkpoints_saved']} checkpoint(s) saved, {limit}; size unknown (the model id names no "
                f"parameter count)")
    p = disk["params_b"]
    return (f"~{_gb(disk['peak_gb'])} at most: {disk['checkpoints_saved']} checkpoint(s) of "
            f"~{_gb(disk['checkpoint_gb'])} saved, {limit}, plus final/ ~{_gb(disk['final_gb'])} "
            f"({f'{p:.3g}B' if p >= 1 else f'{p * 1000:.3g}M'} parameters: {disk['basis']})")
