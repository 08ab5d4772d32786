"""The reward formulas of both variants (see the package docstring) and `make_reward`, which binds one to a recipe.

The pure formulas (`cosine_value`, `kimi_length`, `repetition_value`, the format/tag checks) take numbers and
strings so the unit tests can pin them with worked values; the TRL-facing closures add gold lookup, grading
(cached per (config, completion, gold), so rewards grading with the same config share one grading pass:
cosine and length in the paper variant, whose accuracy parses with Open-RS's other config; all three in the
fixed variant) and lengths.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence

from openrs_cli.errors import DataError
from openrs_cli.grading import FIXED_REWARD, PAPER_COSINE, PAPER_REWARD, GraderConfig, GradeResult, Verdict, grade_many

FIXED_MIN_VALUE_WRONG = -1.0  # fixed variant: a short wrong answer is the worst outcome

# ----------------------------------------------------------------------------------------- formulas


def cosine_value(length: float, max_len: float, correct: bool, *, min_value_wrong: float, max_value_wrong: float,
                 min_value_correct: float, max_value_correct: float, clamp: bool = False) -> float:
    """Cosine-scaled reward: lo + 0.5 (hi - lo)(1 + cos(pi * length / max_len))."""
    progress = length / max_len
    if clamp:
        progress = min(max(progress, 0.0), 1.0)
    c = math.cos(progress * math.pi)
    lo, hi = (min_value_correct, max_value_correct) if correct else (max_value_wrong, min_value_wrong)
    return float(lo + 0.5 * (hi - lo) * (1.0 + c))


def kimi_length(lengths: Sequence[float], correct: Sequence[bool]) -> list[float]:
    """Kimi 1.5 length reward: lambda = 0.5 - (len - min)/(max - min); lambda if correct else min(0, lambda)."""
    lo, hi = min(lengths), max(lengths)
    if hi == lo:
        return [0.0] * len(lengths)
    out = []
    for n, ok in zip(lengths, correct, strict=True):
        lam = 0.5 - (n - lo) / (hi - lo)
        out.append(float(lam if ok else min(0.0, lam)))
    return out


def repetition_value(text: str, n: int, max_penalty: float) -> float:
    """(1 - unique n-grams / n-grams) * max_penalty over lower-cased whitespace words; 0 below n words."""
    words = text.lower().split()
    if len(words) < n:
        return 0.0
    grams = list(zip(*[words[i:] for i in range(n)], strict=False))
    return (1 - len(set(grams)) / len(grams)) * max_penalty


def paper_format(text: str) -> float:
    return 1.0 if text.count("\n</think>\n") == 1 else 0.0


def paper_tag_count(text: str) -> float:
    return 0.5 * (text.count("<think>\n") == 1) + 0.5 * (text.count("\n</think>\n") == 1)


def fixed_format(text: str, require_answer: bool = True) -> float:
    if text.count("</think>") != 1 or text.count("<think>") > 1:
        return 0.0
    head, tail = text.split("</think>")
    if "<think>" in tail:
        return 0.0
    if not require_answer:
        return 1.0
    if tail.count("<answer>") != 1 or tail.count("</answer>") != 1:
        return 0.0
    start, end = tail.index("<answer>"), tail.index("</answer>")
    return 1.0 if start < end and tail[start + 8:end].strip() else 0.0


def fixed_tag_count(text: str, require_answer: bool = True) -> float:
    if not require_answer:
        return 0.5 * (text.count("<think>") <= 1) + 0.5 * (text.count("</think>") == 1)
    return 0.25 * ((text.count("<think>") <= 1) + (text.count("</think>") == 1) + (text.count("<answer>") == 1)
                   + (text.count("</answer>") == 1))


def toy_digits(text: str) -> float:
    return sum(ch.isdigit() for ch in text) / len(text) if text else 0.0


# ----------------------------------------------------------------------------------------- inputs

_CACHE: OrderedDict = OrderedDict()
_CACHE_MAX = 4096


def graded(texts: Sequence[str], golds: Sequence[str], cfg: GraderConfig) -> list[GradeResult]:
    """grade_many with a small cache, so several rewards of one step grade each completion once."""
    keys = [(cfg, t, g) for t, g in zip(texts, golds, strict=True)]
    todo = list(dict.fromkeys(k for k in keys if k not in _CACHE))
    fresh = dict(zip(todo, grade_many([(t, g) for _, t, g in todo], cfg), strict=True))
    for k, r in fresh.items():
        if r.verdict is not Verdict.TIMEOUT:  # a step that ran out of time is graded again next time
            _CACHE[k] = r
    out = [_CACHE[k] if k in _CACHE else fresh[k] for k in keys]
    while len(_CACHE) > _CACHE_MAX:
        _CACHE.popitem(last=False)
    return out


def completion_texts(completions: Sequence) -> list[str]:
    """TRL passes strings, or conversational lists of {"role", "content"} messages."""
    out = []
    for c in completions:
        if isinstance(c, str):
            out.append(c)
        elif isinstance(c, list):
            out.append("".join(m.get("content") or "" for m in c if isinstance(m, dict)
                               and isinstance(m.get("content"), str)))
        elif isinstance(c, dict):
            out.append(c.get("content") or "")
        else:
            out.append("" if c is None else str(c))
    return out


def gold_column(name: str, kwargs: dict, n: int, prefer_answer: bool) -> list[str]:
    """The gold per completion: `solution` (paper), or `answer` wrapped as $..$ when present (fixed)."""
    sol = kwargs.get("solution")
    ans = kwargs.get("answer") if prefer_answer else None
    if sol is None and ans is None:
        raise DataError(f"reward '{name}' needs the dataset column 'solution' (or 'answer'); set "
                        f"dataset.solution_column to the column holding the reference solution")
    out = []
    for i in range(n):
        a = ans[i] if ans is not None else None
        if isinstance(a, (int, float)) and not isinstance(a, bool):  # a numeric answer column (27, 0.5)
            a = str(a)
        if isinstance(a, str) and a.strip():
            out.append(a if "$" in a or "\\boxed" in a else f"${a.strip()}$")
        else:
            out.append("" if sol is None or sol[i] is None else str(sol[i]))
    return out


def token_lengths(texts: Sequence[str], kwargs: dict, tokenizer) -> list[int]:
    ids = kwargs.get("completion_ids")
    if ids is not None:
        return [len(x) for x in ids]
    if tokenizer is None:
        raise ValueError("fixed cosine/length rewards count tokens: pass completion_ids (TRL does) or a tokenizer")
    return [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]


def _log(kwargs: dict, results: Sequence[GradeResult]) -> None:
    log = kwargs.get("log_metric")
    if callable(log) and results:
        n = len(results)
        log("grading/timed_out_frac", sum(r.verdict is Verdict.TIMEOUT for r in results) / n)
        log("grading/unparseable_gold_frac", sum(r.verdict is Verdict.GOLD_UNPARSEABLE for r in results) / n)


# ----------------------------------------------------------------------------------------- binding


def make_reward(name: str, spec, tokenizer=None) -> Callable:
    """One TRL reward function for recipe name `name` under `spec` (a RewardsSpec)."""
    paper = spec.variant == "paper"
    require_answer = spec.format_require_answer
    cos_kw = {"min_value_wrong": spec.cosine_min_value_wrong, "max_value_wrong": spec.cosine_max_value_wrong,
              "min_value_correct": spec.cosine_min_value_correct, "max_value_correct": spec.cosine_max_value_correct}
    if not paper and "cosine_min_value_wrong" not in spec.model_fields_set:
        cos_kw["min_value_wrong"] = FIXED_MIN_VALUE_WRONG

    def grade_batch(completions, kwargs, cfg):
        texts = completion_texts(completions)
        golds = gold_column(name, kwargs, len(texts), prefer_answer=not paper)
        results = graded(texts, golds, cfg)
        _log(kwargs, results)
        return texts, results

    def accuracy(prompts=None, completions=(), **kwargs):
        _, results = grade_batch(completions, kwargs, PAPER_REWARD if paper else FIXED_REWARD)
        if paper:
            return [1.0 if r.verdict in (Verdict.CORRECT, Verdict.GOLD_UNPARSEABLE) else 0.0 for r in results]
        return [None if r.verdict is Verdict.GOLD_UNPARSEABLE else float(r.correct) for r in results]

    def cosine(prompts=None, completions=(), **kwargs):
        if spec.cosine_max_len is None:
            raise ValueError("rewards.cosine_max_len must be set for the cosine reward")
        texts, results = grade_batch(completions, kwargs, PAPER_COSINE if paper else FIXED_REWARD)
        lengths = [len(t) for t in texts] if paper else token_lengths(texts, kwargs, tokenizer)
        out: list[float | None] = []
        for n, r in zip(lengths, results, strict=True):
            if r.verdict is Verdict.GOLD_UNPARSEABLE:
                out.append(1.0 if paper else None)
            else:
                out.append(cosine_value(n, spec.cosine_max_len, r.correct, clamp=not paper, **cos_kw))
        return out

    def length(prompts=None, completions=(), **kwargs):
        texts, results = grade_batch(completions, kwargs, PAPER_COSINE if paper else FIXED_REWARD)
        if paper:  # one min/max over the whole call, gold failures count as correct
            ok = [r.correct or r.verdict is Verdict.GOLD_UNPARSEABLE for r in results]
            return kimi_length([len(t) for t in texts], ok)
        lengths = token_lengths(texts, kwargs, tokenizer)
        keys = [repr(p) for p in prompts] if prompts is not None else [""] * len(texts)
        out: list[float | None] = [None] * len(texts)
        for key in dict.fromkeys(keys):
            idx = [i for i, k in enumerate(keys) if k == key and results[i].verdict is not Verdict.GOLD_UNPARSEABLE]
            if idx:
                for i, v in zip(idx, kimi_length([lengths[i] for i in idx], [results[i].correct for i in idx]), strict=True):
                    out[i] = v
        return out

    def text_reward(fn):
        def reward(prompts=None, completions=(), **kwargs):
            return [float(fn(t)) for t in completion_texts(completions)]
        return reward

    table: dict[str, Callable] = {
        "accuracy": accuracy,
        "cosine": cosine,
        "length": length,
        "format": text_reward(paper_format if paper else (lambda t: fixed_format(t, require_answer))),
        "tag_count": text_reward(paper_tag_count if paper else (lambda t: fixed_tag_count(t, require_answer))),
        "repetition_penalty": text_reward(
            lambda t: repetition_value(t, spec.repetition_n_grams, spec.repetition_max_penalty)),
        "toy_digits": text_reward(toy_digits),
    }
    if name not in table:
        raise ValueError(f"unknown reward '{name}'; valid: {', '.join(table)}")
    fn = table[name]
    fn.__name__ = fn.__qualname__ = name
    return fn
