"""The straightforward scorer, as Open-RS wrote it, and a synthetic completion stream to check ours against.

`reference_rewards` parses the gold and the answer with math-verify for every completion, one at a time, in
the calling (main) thread, with math-verify's own signal timeouts at 0.5.2's defaults (3 s parse, 3 s per
comparison). It is the yardstick for `openrs_cli.rewards` (which must give identical rewards, faster):
the tests and `benchmarks/rewards.py` use it; it is not part of the openrs package.

`synthetic_stream` builds prompts x G completions from the bundled benchmarks: long reasoning text ending in
a boxed answer that is right, wrong, written differently but equal (\\frac{1}{2} vs 0.5), missing, or
pathological (an exponent tower, 5,000 nested braces, a 200 KB completion, junk bytes, an unclosed \\boxed{).
"""

from __future__ import annotations

import math
import random
import re

_TIMEOUT = 3  # math-verify 0.5.2 defaults, what Open-RS ran with


def _mv():
    from latex2sympy2_extended import NormalizationConfig
    from math_verify import LatexExtractionConfig, parse, verify
    return NormalizationConfig, LatexExtractionConfig, parse, verify


def reference_correct(content: str, sol: str, boxed: bool | str) -> bool | None:
    """Open-RS's check: None when the gold does not parse, else verify(answer, gold) (errors are False)."""
    norm_cls, latex_cls, parse, verify = _mv()
    gold = parse(sol, extraction_mode="first_match", extraction_config=[latex_cls()], parsing_timeout=_TIMEOUT)
    if len(gold) == 0:
        return None
    pred_cfg = latex_cls(normalization_config=norm_cls(nits=False, malformed_operators=False, basic_latex=True,
                                                       equations=True, boxed=boxed, units=True),
                         boxed_match_priority=0, try_extract_without_anchor=False)
    answer = parse(content, extraction_config=[pred_cfg], extraction_mode="first_match", parsing_timeout=_TIMEOUT)
    try:
        return bool(verify(answer, gold, timeout_seconds=_TIMEOUT))
    except Exception:  # noqa: BLE001 - Open-RS's accuracy reward: any exception is 0.0
        return False


def reference_rewards(name: str, contents: list[str], solutions: list[str], *, max_len: int = 3584,
                      min_value_wrong: float = 0.0, max_value_wrong: float = -0.5, min_value_correct: float = 0.5,
                      max_value_correct: float = 1.0) -> list[float]:
    """Paper-variant accuracy / cosine / length rewards computed the straightforward way."""
    if name == "accuracy":
        return [1.0 if (ok := reference_correct(c, s, "all")) is None else float(ok)
                for c, s in zip(contents, solutions, strict=True)]
    if name == "cosine":
        out = []
        for c, s in zip(contents, solutions, strict=True):
            ok = reference_correct(c, s, True)
            if ok is None:
                out.append(1.0)
                continue
            lo, hi = (min_value_correct, max_value_correct) if ok else (max_value_wrong, min_value_wrong)
            out.append(float(lo + 0.5 * (hi - lo) * (1.0 + math.cos(len(c) / max_len * math.pi))))
        return out
    if name == "length":
        correct = [(ok := reference_correct(c, s, True)) is None or ok for c, s in zip(contents, solutions, strict=True)]
        lengths = [len(c) for c in contents]
        lo, hi = min(lengths), max(lengths)
        if lo == hi:
            return [0.0] * len(contents)
        return [float(lam if ok else min(0.0, lam))
                for lam, ok in ((0.5 - (n - lo) / (hi - lo), ok) for n, ok in zip(lengths, correct, strict=True))]
    raise ValueError(f"no reference for reward '{name}'")


_FILLER = ("Let me think about this carefully. We set up the equation and simplify step by step, "
           "checking each case: if $x = {a}$ then $x^2 = {b}$, which is consistent with the constraint. ")
PATHOLOGICAL = {
    "tower": "Thus the value is $\\boxed{10^{10^{10^{10}}}}$.",
    "nested": "\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}",
    "huge": "word $x^2$ and " * 14000 + "\\boxed{7}",
    "junk": "\udcff\x00\x01\ufffd\u202e" * 2000 + "\\boxed{\\x",
    "unclosed": "so the answer is \\boxed{",
}
KINDS = ("right", "wrong", "equal", "missing", "pathological")


def _equal_form(ans: str, rng: random.Random) -> str | None:
    if re.fullmatch(r"-?\d+", ans):
        return f"\\frac{{{2 * int(ans)}}}{{2}}" if rng.random() < 0.5 else f"{int(ans)}.0"
    m = re.fullmatch(r"(-?)\\d?frac\{(\d+)\}\{(\d+)\}", ans)
    if m:
        v = int(m.group(2)) / int(m.group(3))
        if len(f"{v}") < 12:  # a terminating decimal
            return f"{m.group(1)}{v}"
    return None


def _wrong_form(ans: str, rng: random.Random) -> str:
    if re.fullmatch(r"-?\d+", ans):
        return str(int(ans) + rng.choice([-2, -1, 1, 3, 10]))
    return rng.choice(["\\frac{7}{3}", "42", "\\sqrt{5}", "x+1", "-1"])


def _distinct_pathological(name: str, rng: random.Random) -> str:
    """A variant of PATHOLOGICAL[name] that other completions practically never repeat (the tower's stuck step,
    10 ** (10 ** k), repeats only for the same k out of ~10,000)."""
    if name == "tower":
        return f"Thus the value is $\\boxed{{{rng.randint(2, 99)}^{{10^{{10^{{{rng.randint(10, 10**4)}}}}}}}}}$."
    if name == "nested":
        depth = rng.randint(4000, 6000)
        return "\\boxed{" + "{" * depth + str(rng.randint(0, 10**6)) + "}" * depth + "}"
    return PATHOLOGICAL[name]


def synthetic_stream(n_prompts: int = 300, group: int = 6, seed: int = 0,
                     weights: tuple[float, ...] = (0.35, 0.3, 0.12, 0.18, 0.05),
                     distinct_pathological: bool = False) -> list[dict]:
    """Rows {solution, completions, kinds}: n_prompts from math500 + train-sample, `group` completions each.

    Pathological answers are the fixed strings of PATHOLOGICAL, or with `distinct_pathological` a fresh variant
    each time (no verbatim repeats: what benchmarks/rewards.py grades)."""
    from openrs_cli import evalsets
    rng = random.Random(seed)
    rows = [r for name in ("math500", "train-sample") for r in evalsets.load(name)
            if r.get("solution") and "\\boxed" in r["solution"] and r.get("answer")]
    rng.shuffle(rows)
    out = []
    for row in rows[:n_prompts]:
        ans = str(row["answer"]).strip()
        comps, kinds = [], []
        for _ in range(group):
            kind = rng.choices(KINDS, weights)[0]
            target = rng.randint(500, 12000)
            body = ""
            while len(body) < target:
                body += _FILLER.format(a=rng.randint(1, 99), b=rng.randint(1, 9999))
            body = body[:target] + "\n</think>\n"
            if kind == "equal" and (eq := _equal_form(ans, rng)) is None:
                kind = "right"
            if kind == "right":
                comps.append(body + f"Therefore, the final answer is $\\boxed{{{ans}}}$.")
            elif kind == "equal":
                comps.append(body + f"So the answer is $\\boxed{{{eq}}}$.")
            elif kind == "wrong":
                comps.append(body + f"Therefore, the final answer is $\\boxed{{{_wrong_form(ans, rng)}}}$.")
            elif kind == "missing":
                comps.append(body[: rng.randint(200, len(body))])
            else:
                name = rng.choice(list(PATHOLOGICAL))
                comps.append(body + (_distinct_pathological(name, rng) if distinct_pathological
                                     else PATHOLOGICAL[name]))
            kinds.append(kind)
        out.append({"solution": row["solution"], "completions": comps, "kinds": kinds})
    return out
