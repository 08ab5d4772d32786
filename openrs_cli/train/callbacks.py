"""Instrumentation for the worker: metrics.jsonl records, completions.jsonl samples, timing, language check.

`MetricsCallback` (a transformers `TrainerCallback`, main process only) turns each TRL log into one flat
metrics record. Step time is measured from `on_step_begin` to `on_step_end`; generation time is what
`StepClock.generation` accumulated during the step (the worker's trainer times TRL's generate-and-score call);
optimisation time is the rest of the step.

Non-English check (`is_non_english`): a completion counts as not English when more than 20% of its letters
(Unicode category L*) are outside the Latin script. Digits, symbols and LaTeX are not letters, so math does not
count; a reply in Chinese, Russian, Arabic, etc. does. It is a script check, not language identification:
French would pass as "English".
"""

from __future__ import annotations

import time
import unicodedata
from pathlib import Path

from openrs_cli import jsonl
from openrs_cli.schema import record

NON_LATIN_SHARE = 0.2


def is_non_english(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    non_latin = sum(1 for c in letters if c.isascii() is False and "LATIN" not in unicodedata.name(c, ""))
    return non_latin / len(letters) > NON_LATIN_SHARE


def non_english_frac(texts) -> float | None:
    texts = list(texts)
    return sum(map(is_non_english, texts)) / len(texts) if texts else None


def completion_text(c) -> str:
    """The text of one TRL completion, by the rule the rewards read it with (rewards.funcs.completion_texts)."""
    from openrs_cli.rewards.funcs import completion_texts

    return completion_texts([c])[0]


class StepClock:
    """Seconds spent generating since the last reset (filled by the worker's trainer)."""

    def __init__(self):
        self.generation = 0.0

    def add_generation(self, seconds: float) -> None:
        self.generation += seconds


# TRL 1.16 log key -> metrics.jsonl key
_RENAME = {
    "reward": "reward_mean",
    "reward_std": "reward_std",
    "completions/mean_length": "completion_length_mean",
    "completions/max_length": "completion_length_max",
    "completions/clipped_ratio": "truncated_frac",
    "kl": "kl",
    "learning_rate": "learning_rate",
    "loss": "loss",
    "grad_norm": "grad_norm",
    "entropy": "entropy",
    "frac_reward_zero_std": "frac_reward_zero_std",
    "epoch": "epoch",
    "openrs/non_english_frac": "non_english_frac",
}


def _make_callback_class():
    from transformers import TrainerCallback

    class MetricsCallback(TrainerCallback):
        """Writes <run_dir>/metrics.jsonl: one record per logging step (main process only)."""

        def __init__(self, run_dir: Path, clock: StepClock, max_completion_length: int, monitor=None):
            self.path = Path(run_dir) / "metrics.jsonl"
            self.clock, self.max_len, self.monitor = clock, max_completion_length, monitor
            self._t0 = None
            self._steps: list[tuple[float, float]] = []  # (step_s, generation_s) since the last log
            self._train_start = time.perf_counter()

        def on_train_begin(self, args, state, control, **kw):
            self._train_start = time.perf_counter()
            self._first_step = state.global_step

        def on_step_begin(self, args, state, control, **kw):
            self._t0 = time.perf_counter()
            self.clock.generation = 0.0
            if self.monitor is not None:
                self.monitor.begin_window("train_step", phase=True, step=state.global_step + 1)

        def on_step_end(self, args, state, control, **kw):
            if self.monitor is not None:
                self.monitor.end_window("train_step")
            if self._t0 is not None:
                self._steps.append((time.perf_counter() - self._t0, self.clock.generation))
                self._t0 = None

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if not state.is_world_process_zero or "reward" not in logs:
                return  # end-of-train summary or a rank other than 0
            rec = record("metrics", step=state.global_step)
            for key, value in logs.items():
                if key in _RENAME:
                    rec[_RENAME[key]] = value
                elif key.startswith("rewards/") and key.endswith("/mean"):
                    rec[key] = value
            rec["max_completion_length"] = self.max_len
            if self._steps:
                n = len(self._steps)
                step_s = sum(s for s, _ in self._steps) / n
                gen_s = sum(g for _, g in self._steps) / n
                rec.update(step_time_s=step_s, generation_time_s=gen_s, optimisation_time_s=max(step_s - gen_s, 0.0))
                self._steps.clear()
            done = state.global_step - self._first_step
            elapsed = time.perf_counter() - self._train_start
            rec["elapsed_s"] = elapsed
            rec["eta_s"] = elapsed / done * (state.max_steps - state.global_step) if done > 0 else None
            rec["max_steps"] = state.max_steps
            jsonl.append(self.path, [rec], default=float)

    return MetricsCallback


def make_metrics_callback(run_dir, clock, max_completion_length, monitor=None):
    return _make_callback_class()(run_dir, clock, max_completion_length, monitor)


def completion_records(step: int, prompts, completions, rewards: dict, advantages) -> list[dict]:
    """completions.jsonl records (kind "completions") for one logged generation batch."""
    prompts, completions, adv = list(prompts), list(completions), list(advantages)
    out = []
    for i, (p, c) in enumerate(zip(prompts, completions, strict=False)):
        text = completion_text(c)
        out.append(record("completions", step=step, index=i,
                          prompt=p[-1]["content"] if isinstance(p, list) and p else str(p),
                          completion=text,
                          rewards={k: (list(v)[i] if i < len(v) else None) for k, v in rewards.items()},
                          advantage=adv[i] if i < len(adv) else None,
                          non_english=is_non_english(text)))
    return out
