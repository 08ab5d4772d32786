"""The training worker, run on every rank by `accelerate launch ... -m openrs_cli.train.worker --recipe R`.

It loads the resolved recipe from the run directory, builds TRL's `GRPOConfig` (openrs_cli.train.config), the
tokenizer and conversational dataset (openrs_cli.train.data) and the reward functions (openrs_cli.rewards),
and runs `trl.GRPOTrainer`. The trainer subclass only adds instrumentation: it times generation, writes
completions.jsonl samples and the non-English share, and marks cost phases; the optimisation is TRL's.
At the end the model and tokenizer are saved to <run_dir>/final (written to final.partial, then renamed).

    python -m openrs_cli.train.worker --recipe runs/tiny/recipe.yaml [--resume-from runs/tiny/checkpoint-2]
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import time
from pathlib import Path

for _k, _v in {"TOKENIZERS_PARALLELISM": "false", "WANDB_SILENT": "true"}.items():
    os.environ.setdefault(_k, _v)


def _exit_when_orphaned(poll_s: float = 1.0) -> None:
    """If the launcher above this rank dies (SIGKILL, OOM), stop too instead of training on unobserved."""
    import threading

    parent = os.getppid()

    def watch():
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(137)

    threading.Thread(target=watch, name="openrs-orphan-watch", daemon=True).start()


def _load_rewards(recipe, tokenizer, factory: str | None):
    if factory:  # "module:function" with the signature of rewards.build_reward_funcs (benchmarks/train_overhead.py)
        mod, fn = factory.split(":")
        return getattr(importlib.import_module(mod), fn)(recipe.rewards, tokenizer)
    from openrs_cli.rewards import build_reward_funcs

    return build_reward_funcs(recipe.rewards, tokenizer=tokenizer)


def _make_trainer_class():
    from trl import GRPOTrainer

    from openrs_cli import jsonl
    from openrs_cli.train.callbacks import completion_records, completion_text, non_english_frac

    class OpenrsGRPOTrainer(GRPOTrainer):
        """GRPOTrainer plus timing, completions.jsonl and cost phases (no change to what is optimised)."""

        openrs_clock = None
        openrs_monitor = None
        openrs_completions_every = 0
        openrs_run_dir: Path | None = None

        def _generate_and_score_completions(self, inputs):
            t0 = time.perf_counter()
            mon = self.openrs_monitor
            if mon is not None:
                mon.begin_window("generation", phase=True, step=self.state.global_step + 1)
            try:
                return super()._generate_and_score_completions(inputs)
            finally:
                if mon is not None:
                    mon.end_window("generation")
                if self.openrs_clock is not None:
                    self.openrs_clock.add_generation(time.perf_counter() - t0)

        def _save_checkpoint(self, model, trial):
            mon = self.openrs_monitor
            if mon is None:
                return super()._save_checkpoint(model, trial)
            with mon.phase("checkpoint", step=self.state.global_step):
                return super()._save_checkpoint(model, trial)

        def log(self, logs, start_time=None):
            if self.model.training and "loss" in logs and self.accelerator.is_main_process:
                texts = [completion_text(c) for c in self._logs["completion"]]
                logs["openrs/non_english_frac"] = non_english_frac(texts)
                every, step = self.openrs_completions_every, self.state.global_step
                if every and step % every == 0 and self.openrs_run_dir is not None and texts:
                    jsonl.append(self.openrs_run_dir / "completions.jsonl",
                                 completion_records(step, self._logs["prompt"], self._logs["completion"],
                                                    self._logs["rewards"], self._logs["advantages"]), default=float)
            return super().log(logs, start_time)

    return OpenrsGRPOTrainer


def load_tokenizer(recipe):
    from transformers import AutoTokenizer

    from openrs_cli.models import resolve_model

    m = recipe.model
    tok = AutoTokenizer.from_pretrained(resolve_model(m.id), revision=m.revision,
                                        trust_remote_code=m.trust_remote_code, padding_side="left")
    if m.chat_template:
        tok.chat_template = m.chat_template
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def build_trainer(recipe, run_dir: Path, *, vllm_host=None, vllm_port=8000, vllm_group_port=51216,
                  rewards_factory=None, monitor=None, extra_callbacks=()):
    """Everything up to (not including) `trainer.train()`: returns (trainer, info dict).

    The GRPOConfig is the plan `openrs train` wrote to <run_dir>/launch.json (what --dry-run printed), reward
    weights included; only a run directory without one (a library caller such as benchmarks/train_overhead.py)
    maps the recipe here, with `vllm_host`/`vllm_port`."""
    from openrs_cli.models import resolve_model
    from openrs_cli.train.callbacks import StepClock, make_metrics_callback
    from openrs_cli.train.config import build_grpo_config, grpo_kwargs, planned_grpo
    from openrs_cli.train.data import build_train_dataset

    if (Path(run_dir) / "launch.json").is_file():
        kwargs = planned_grpo(run_dir)
    else:
        kwargs = grpo_kwargs(recipe, run_dir, vllm_host=vllm_host, vllm_port=vllm_port, vllm_group_port=vllm_group_port)
    tokenizer = load_tokenizer(recipe)
    funcs, weights = _load_rewards(recipe, tokenizer, rewards_factory)
    if [float(w) for w in weights] != kwargs["reward_weights"]:  # the plan maps the same recipe weights
        raise ValueError(f"the reward functions come with weights {list(weights)} but the plan has "
                         f"{kwargs['reward_weights']}")
    args = build_grpo_config(kwargs)
    dataset, shortened = build_train_dataset(recipe, tokenizer)
    clock = StepClock()
    callback = make_metrics_callback(run_dir, clock, recipe.generation.max_completion_length, monitor)
    Trainer = _make_trainer_class()
    trainer = Trainer(model=resolve_model(recipe.model.id), reward_funcs=list(funcs), args=args,
                      train_dataset=dataset, processing_class=tokenizer, callbacks=[callback, *extra_callbacks])
    trainer.openrs_clock, trainer.openrs_monitor = clock, monitor
    trainer.openrs_completions_every = recipe.output.log_completions_every
    trainer.openrs_run_dir = run_dir
    return trainer, {"rows": len(dataset), "prompts_shortened": shortened}


def save_final(trainer, tokenizer, run_dir: Path) -> Path:
    final, partial = run_dir / "final", run_dir / "final.partial"
    trainer.save_model(str(partial))  # every rank takes part (DeepSpeed gathers); rank 0 writes
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(str(partial))
        cfg = trainer.model.config if hasattr(trainer.model, "config") else None
        if cfg is not None:
            cfg.use_cache = True
            cfg.save_pretrained(str(partial))
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
    trainer.accelerator.wait_for_everyone()
    return final


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="openrs GRPO training worker (started by `openrs train`)")
    ap.add_argument("--recipe", required=True, help="the run directory's resolved recipe.yaml")
    ap.add_argument("--resume-from", default=None, help="checkpoint directory to resume from")
    ap.add_argument("--vllm-host", default=None)
    ap.add_argument("--vllm-port", type=int, default=8000)
    ap.add_argument("--vllm-group-port", type=int, default=51216, help="TRL's weight-update group port")
    ap.add_argument("--vllm-mode", choices=["server", "colocate"], default=None,
                    help="override the recipe (the launcher's placement decided it)")
    ap.add_argument("--no-cost", action="store_true", help="do not record cost phases")
    a = ap.parse_args(argv)
    _exit_when_orphaned()

    from openrs_cli.errors import OpenrsError
    from openrs_cli.recipes import load_recipe

    recipe_path = Path(a.recipe)
    run_dir = recipe_path.parent
    overrides = [f"generation.vllm_mode={a.vllm_mode}"] if a.vllm_mode else []
    recipe = load_recipe(str(recipe_path), overrides)
    monitor = None
    rank = int(os.environ.get("RANK", "0"))
    if not a.no_cost and rank == 0:
        try:
            from openrs_cli.cost import attach_monitor

            monitor = attach_monitor(run_dir, kind="train")
        except Exception as e:  # cost accounting must never stop training
            print(f"openrs: cost phases disabled ({e})", flush=True)
    status = "error"
    try:
        if monitor is not None:
            with monitor.phase("setup"):
                trainer, info = build_trainer(recipe, run_dir, vllm_host=a.vllm_host, vllm_port=a.vllm_port,
                                              vllm_group_port=a.vllm_group_port, monitor=monitor)
        else:
            trainer, info = build_trainer(recipe, run_dir, vllm_host=a.vllm_host, vllm_port=a.vllm_port,
                                          vllm_group_port=a.vllm_group_port)
        if {"accuracy", "cosine", "length"} & set(recipe.rewards.funcs):
            from openrs_cli.grading import warm_up

            warm_up()  # start the grading workers now, so their start-up is not charged to the first step
        if trainer.accelerator.is_main_process:
            print(f"openrs: {info['rows']} training rows, {info['prompts_shortened']} prompt(s) shortened to "
                  f"{recipe.generation.max_prompt_length} tokens; resume from {a.resume_from or 'step 0'}", flush=True)
        trainer.train(resume_from_checkpoint=a.resume_from)
        save_final(trainer, trainer.processing_class, run_dir)
        status = "ok"
        return 0
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except OpenrsError as e:  # bad input found on the worker side: one line, as the CLI prints it
        print(f"error: {e}", flush=True)
        return e.exit_code
    finally:
        if monitor is not None:
            monitor.close(status)


if __name__ == "__main__":
    raise SystemExit(main())
