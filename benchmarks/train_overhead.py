"""Overhead of openrs's training worker over a minimal hand-written TRL script: tiny GRPO steps, same run.

    .venv/bin/python benchmarks/train_overhead.py [--steps 6] [--reps 3]

Both sides train the tiny offline model on the same prepared rows of the `tiny` recipe (bundled DeepScaleR
sample, system + user prompts) with the same reward function (fraction of digit characters, for all three recipe
reward names), the same seed and the same GRPO values, in this process, alternating repetitions. The baseline is
`GRPOTrainer(model=path, reward_funcs=..., args=GRPOConfig(**grpo_kwargs(recipe)), train_dataset=rows)`, the
GRPOConfig values from openrs's own recipe mapping so the two sides cannot drift apart;
openrs is `openrs_cli.train.worker.build_trainer` (recipe -> GRPOConfig mapping, instrumented trainer,
metrics.jsonl every step, completions.jsonl every step) with checkpoints off on both sides. Only `trainer.train()`
is timed, as CPU seconds of this process (the machine is shared, so wall time swings several-fold between runs;
CPU time does not count other programs' work) with torch on one thread; wall time is printed too. Per-step
medians are compared. Last line: `train_overhead_ratio: <openrs / baseline CPU s per step>` (goal <= 1.05).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

for _k, _v in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "disabled"}.items():
    os.environ.setdefault(_k, _v)


def digits(prompts, completions, **kw):
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(ch.isdigit() for ch in t) / len(t) if t else 0.0 for t in texts]


def toy_rewards(spec, tokenizer=None):
    funcs = []
    for name in spec.funcs:
        def f(prompts, completions, **kw):
            return digits(prompts, completions)
        f.__name__ = name
        funcs.append(f)
    return funcs, spec.weights or [1.0] * len(funcs)


def baseline_trainer(recipe, model_dir: str, dataset, out: str):
    """Plain TRL: GRPOTrainer with a GRPOConfig of openrs's own recipe mapping (train.config.grpo_kwargs, so the two
    sides cannot drift apart), with no openrs callbacks, logs or trainer subclass; checkpoints off."""
    from trl import GRPOConfig, GRPOTrainer

    from openrs_cli.train.config import grpo_kwargs

    kw = {**grpo_kwargs(recipe, out), "save_strategy": "no"}
    args = GRPOConfig(**kw)
    funcs, _ = toy_rewards(recipe.rewards)
    return GRPOTrainer(model=model_dir, reward_funcs=funcs, args=args, train_dataset=dataset)


def openrs_trainer(recipe, out: Path):
    from openrs_cli.train.worker import build_trainer

    trainer, _ = build_trainer(recipe, out, rewards_factory="__main__:toy_rewards")
    return trainer


def timed_train(trainer) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of trainer.train(), with the trainer's per-step log prints silenced."""
    import contextlib
    import io

    w0, c0 = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.train()
    return time.process_time() - c0, time.perf_counter() - w0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)

    from openrs_cli.recipes import load_recipe
    from openrs_cli.tiny import ensure_tiny_model
    from openrs_cli.train.data import build_train_dataset
    from openrs_cli.train.worker import load_tokenizer

    model_dir = str(ensure_tiny_model())
    recipe = load_recipe("tiny", [f"optim.max_steps={a.steps}", "output.save_steps=100000",
                                  "output.log_completions_every=1"])
    dataset, _ = build_train_dataset(recipe, load_tokenizer(recipe))
    base_s, ours_s, base_w, ours_w = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(a.reps + 1):  # rep 0 warms caches for both and is not counted
            for side in ("baseline", "openrs") if rep % 2 else ("openrs", "baseline"):
                out = Path(tmp) / f"{side}-{rep}"
                out.mkdir()
                t0 = time.perf_counter()
                tr = baseline_trainer(recipe, model_dir, dataset, str(out)) if side == "baseline" else \
                    openrs_trainer(recipe, out)
                setup = time.perf_counter() - t0
                cpu, wall = (x / a.steps for x in timed_train(tr))
                print(f"rep {rep} {side:8s} setup {setup:6.2f} s  train {cpu:.3f} CPU s/step ({wall:.3f} wall s/step)"
                      + ("  (warm-up, not counted)" if rep == 0 else ""), flush=True)
                if rep:
                    (base_s if side == "baseline" else ours_s).append(cpu)
                    (base_w if side == "baseline" else ours_w).append(wall)
                del tr
    b, o = statistics.median(base_s), statistics.median(ours_s)
    print(f"baseline (hand-written TRL) median {b:.3f} CPU s/step ({statistics.median(base_w):.3f} wall); "
          f"openrs worker median {o:.3f} CPU s/step ({statistics.median(ours_w):.3f} wall); "
          f"{a.reps} reps x {a.steps} steps; wall ratio {statistics.median(ours_w) / statistics.median(base_w):.3f}")
    print(f"train_overhead_ratio: {o / b:.3f}")


if __name__ == "__main__":
    sys.exit(main())
