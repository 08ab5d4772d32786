"""GRPO reward functions with TRL's signature, selected by name from a recipe (`rewards.funcs`).

`build_reward_funcs(spec, tokenizer=None)` returns `(funcs, weights)`. Each function is called by TRL as
`f(prompts=..., completions=..., completion_ids=..., **dataset_columns)` and returns one `float | None` per
completion; its `__name__` is its recipe name so TRL logs `rewards/<name>/mean`. The gold comes from the
dataset column `solution` (and `answer` when present). Grading goes through `openrs_cli.grading` (worker
processes, gold parsed once per prompt, hard time limit), so a reward call never hangs or raises on bad text.

Two variants (`rewards.variant`):

`paper` reproduces Open-RS exactly, quirks included (the completion starts inside `<think>\\n`, which
DeepSeek-R1-Distill's template pre-fills):
  - accuracy: 1.0 if math-verify says `verify(answer, gold)` (argument order reversed as Open-RS did, precision
    6; gold = `LatexExtractionConfig()` first match on the solution; answer = LaTeX, boxed first, anchor
    required, nits/malformed_operators off); 0.0 otherwise, also on any error or timeout; an unparseable gold
    gives 1.0 to every completion of the prompt.
  - format: 1.0 iff the completion contains exactly one "\\n</think>\\n".
  - tag_count: 0.5 if "<think>\\n" occurs exactly once + 0.5 if "\\n</think>\\n" occurs exactly once.
  - cosine: p = len(completion in characters) / cosine_max_len (not clamped), c = cos(pi p); correct:
    lo, hi = min_value_correct, max_value_correct; wrong: lo, hi = max_value_wrong, min_value_wrong;
    r = lo + 0.5 (hi - lo)(1 + c). The answer is parsed with `boxed=True` (Open-RS's quirk). Unparseable gold: 1.0.
  - repetition_penalty: lower-cased whitespace n-grams, (1 - unique/total) * max_penalty; 0 below n words.
  - length (Kimi 1.5) over the whole call: lambda = 0.5 - (len - min)/(max - min) in characters; lambda if
    correct (an unparseable gold counts as correct) else min(0, lambda); all 0 if every length is equal.

`fixed` is what we believe is right:
  - accuracy: gold = the `answer` column when present (wrapped in $..$), else `solution`; `verify(gold, answer)`
    in math-verify's documented order; LaTeX and plain expressions, boxed first, anchor required. An
    unparseable gold returns None so TRL ignores the prompt instead of rewarding every completion.
  - format: exactly one "</think>", at most one "<think>" before it, and (unless the recipe sets
    `format_require_answer: false`) exactly one non-empty <answer>...</answer> block after it, as the system
    prompt asks. Whitespace around the tags is free.
  - tag_count: 0.25 each for <think> (0 or 1 times, as the template may pre-fill it), </think>, <answer>,
    </answer> occurring exactly once (0.5 each for the first two when no answer block is required).
  - cosine: length in tokens (`completion_ids` from TRL, else the tokenizer), p clamped to [0, 1]; wrong
    answers get -1.0 when short rising to -0.5 at max_len (the paper's defaults gave 0.0 to short wrong
    answers, rewarding giving up early); values set explicitly in the recipe win. Unparseable gold: None.
  - length: in tokens, computed per prompt group (Kimi's formula is per problem, not per batch); unparseable
    gold: None.
  - repetition_penalty and toy_digits: as in the paper variant.

`toy_digits` (both variants) is a dense toy reward for smoke tests: the fraction of characters that are digits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from openrs_cli.rewards.funcs import make_reward

if TYPE_CHECKING:
    from openrs_cli.recipes.schema import RewardsSpec

__all__ = ["build_reward_funcs", "make_reward"]


def build_reward_funcs(spec: RewardsSpec, tokenizer=None) -> tuple[list[Callable], list[float]]:
    """TRL reward functions for `spec.funcs` (in order) and their weights (recipe weights or all 1.0)."""
    funcs = [make_reward(name, spec, tokenizer) for name in spec.funcs]
    weights = [float(w) for w in spec.weights] if spec.weights is not None else [1.0] * len(funcs)
    return funcs, weights
