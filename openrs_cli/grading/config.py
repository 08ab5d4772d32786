"""Grading vocabulary: verdicts, results, grader configurations and the presets the paper used."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Literal


class Verdict(str, Enum):
    CORRECT = "correct"
    WRONG = "wrong"
    GOLD_UNPARSEABLE = "unparseable_gold"
    ANSWER_UNPARSEABLE = "unparseable_answer"
    TIMEOUT = "timed_out"


@dataclass(frozen=True)
class GradeResult:
    verdict: Verdict
    pred: str | None  # extracted answer as written in the completion (truncated to 500 chars)
    gold: str | None  # extracted gold as written

    @property
    def correct(self) -> bool:
        return self.verdict is Verdict.CORRECT


@dataclass(frozen=True)
class GraderConfig:
    """How to extract and compare. Targets name math-verify extraction configs: "latex" / "expr"."""

    gold_kind: Literal["latex", "expr", "latex+expr"] = "latex"
    gold_mode: Literal["first_match", "any_match"] = "any_match"
    gold_fallback_raw: bool = False  # lighteval: an unparseable gold is compared as a raw string
    pred_targets: tuple[str, ...] = ("expr", "latex")
    pred_boxed_first: bool = True  # LatexExtractionConfig(boxed_match_priority=0) instead of 50
    pred_anchor_free: bool = True  # try_extract_without_anchor
    pred_normalization: tuple[tuple[str, Any], ...] | None = None  # NormalizationConfig kwargs; None = default
    pred_mode: Literal["first_match", "any_match"] = "any_match"
    precision: int = 6  # verify(float_rounding=...)
    timeout_s: float = 5.0
    gold_first: bool = True  # verify(gold, pred); open-rs called verify(pred, gold)


# lighteval's extractive match as the paper's eval ran it: pred = expr + latex(boxed first), any match,
# precision 5, 5 s; gold extracted as expr (aime24, amc23) or latex (math_500, minerva, olympiadbench).
EVAL_EXPR_GOLD = GraderConfig(gold_kind="expr", gold_fallback_raw=True, precision=5, timeout_s=5.0)
EVAL_LATEX_GOLD = replace(EVAL_EXPR_GOLD, gold_kind="latex")
# open-rs `accuracy_reward`: gold LatexExtractionConfig() first_match; pred latex only, boxed first, anchor
# required, nits/malformed_operators off, equations on; verify(pred, gold), precision 6; 3 s (math-verify 0.5.2).
_PAPER_NORM = (("basic_latex", True), ("units", True), ("malformed_operators", False), ("nits", False),
               ("boxed", "all"), ("equations", True))
PAPER_REWARD = GraderConfig(gold_kind="latex", gold_mode="first_match", pred_targets=("latex",),
                            pred_anchor_free=False, pred_normalization=_PAPER_NORM, pred_mode="first_match",
                            precision=6, timeout_s=3.0, gold_first=False)
# open-rs `cosine_scaled_reward` parsed with boxed=True: not a latex2sympy value, so \boxed is only stripped
# in math-verify's plain-boxed group. Kept on purpose to reproduce the paper.
PAPER_COSINE = replace(PAPER_REWARD, pred_normalization=tuple(
    (k, True if k == "boxed" else v) for k, v in _PAPER_NORM))
# Our own reward grading: gold from an answer (expr+latex) or a solution, correct verify order.
FIXED_REWARD = GraderConfig(gold_kind="latex+expr", gold_mode="first_match", pred_targets=("latex", "expr"),
                            pred_anchor_free=False, precision=6, timeout_s=3.0)
