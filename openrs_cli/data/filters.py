"""The text stages of a data build: normalise, require a gold answer, drop multi-part problems, deduplicate.

Each stage takes rows (dicts with problem/solution/answer/source) and returns (kept rows, {reason: count}).

Rules (also in docs/data.md):
- normalise: Unicode NFC, CRLF -> LF, runs of spaces/tabs/NBSP -> one space, spaces around newlines removed,
  3+ newlines -> 2, strip. A row whose problem is empty afterwards is dropped.
- gold: the `answer` column if non-empty (surrounding `$` removed), else the last \\boxed{} of the solution;
  it must parse with the shared grader (the `gold_parses` check, batched through `grade_many`). A row without a
  solution gets `$\\boxed{answer}$`.
- multi-part: enumerated parts ((a)+(b) unless (a)..(e) are all there, i.e. answer choices; (1)+(2), (i)+(ii),
  (I)+(II), (Ⅰ)+(Ⅱ), ①+②, a)+b) at line starts), a second imperative after "and" ("find ... and determine ..."),
  or two or more different \\boxed{} answers in the solution (answer-choice labels such as \\textbf{(C)} and
  spaces ignored, so "\\boxed{18} ... \\boxed{B}" is one answer).
- dedup: exact = same problem after casefold + whitespace collapse; near = word-shingle Jaccard >= threshold
  (candidates from MinHash LSH, every candidate verified exactly). The earliest row wins.
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Callable

Progress = Callable[[str, int, int | None], None]

_HSPACE = re.compile(r"[ \t\f\v\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")


def normalise_text(text: str | None) -> str:
    if not text:
        return ""
    s = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    s = _HSPACE.sub(" ", s)
    s = re.sub(r" ?\n ?", "\n", s)
    s = re.sub(r"\n{3,}", "\n\n", s)
    return s.strip()


def normalise(rows: list[dict]) -> tuple[list[dict], dict]:
    kept, dropped = [], Counter()
    for r in rows:
        problem = normalise_text(r["problem"])
        if not problem:
            dropped["empty_problem"] += 1
            continue
        kept.append(
            {**r, "problem": problem, "solution": normalise_text(r["solution"]), "answer": normalise_text(r["answer"])}
        )
    return kept, dict(dropped)


def require_gold(
    rows: list[dict], require_boxed: bool, on_progress: Progress | None = None, label: str = "gold"
) -> tuple[list[dict], dict]:
    from dataclasses import replace

    from openrs_cli.grading import PAPER_REWARD, Verdict, extract_boxed, grade_many

    candidates, dropped = [], Counter()
    for r in rows:
        boxed = extract_boxed(r["solution"]) if r["solution"] else None
        if require_boxed and not boxed:
            dropped["no_boxed_solution"] += 1
            continue
        answer = r["answer"].strip().strip("$").strip() if r["answer"] else ""
        answer = answer or (boxed or "").strip()
        if not answer:
            dropped["no_gold"] += 1
            continue
        candidates.append({**r, "answer": answer, "solution": r["solution"] or f"$\\boxed{{{answer}}}$"})
    # Batch form of grading.gold_parses: grading an empty completion reports GOLD_UNPARSEABLE exactly when
    # the gold does not parse (fallback to the raw string off), and grade_many spreads it over the workers.
    cfg = replace(PAPER_REWARD, gold_fallback_raw=False)
    kept, step = [], 1000
    for start in range(0, len(candidates), step):
        if on_progress:
            on_progress(label, start, len(candidates))
        chunk = candidates[start : start + step]
        results = grade_many([("", f"$\\boxed{{{r['answer']}}}$") for r in chunk], cfg)
        for r, res in zip(chunk, results, strict=True):
            if res.verdict == Verdict.GOLD_UNPARSEABLE:
                dropped["gold_unparseable"] += 1
            elif res.verdict == Verdict.TIMEOUT:  # its parse ran out of CPU time: no reward could use it
                dropped["gold_timed_out"] += 1
            else:
                kept.append(r)
    if on_progress:
        on_progress(label, len(candidates), len(candidates))
    return kept, dict(dropped)


def _marker(label: str) -> str:
    return rf"(?:^|[\s:;,.，：；。])[(（]\s*{label}\s*[)）]"


_PART_PAIRS = [
    (re.compile(_marker(a)), re.compile(_marker(b)))
    for a, b in (("a", "b"), ("1", "2"), ("i", "ii"), ("I", "II"), ("Ⅰ", "Ⅱ"))
]
_PART_PAIRS.append((re.compile(r"(?m)^\s*a\)\s"), re.compile(r"(?m)^\s*b\)\s")))
_PART_PAIRS.append((re.compile("①"), re.compile("②")))
_FIVE_CHOICES = [re.compile(_marker(c)) for c in "abcde"]  # (a)..(e) all present: answer choices, not parts
_VERB = r"(?:find|determine|compute|calculate|evaluate|prove|show|solve|explain|justify)"
_SECOND_ASK = re.compile(rf"\b{_VERB}\b[^.?!]*?\band\s+(?:then\s+|also\s+)?{_VERB}\b", re.IGNORECASE)


_CHOICE = re.compile(r"\\text(?:bf)?\s*\{\s*\(?[A-E]\)?\s*\}|\([A-E]\)|^\s*[A-E]\s*$|\\[ ,;!]|\s+")


def boxed_answers(solution: str) -> set[str]:
    """Distinct \\boxed{} contents with answer-choice labels ((C), \\textbf{(C)}, \\text{C}) and spaces removed."""
    out = set()
    from openrs_cli.grading.boxed import all_boxed

    for b in all_boxed(solution):
        b = _CHOICE.sub("", b).lstrip("=")
        if b:
            out.add(b)
    return out


def multipart_reason(problem: str, solution: str | None) -> str | None:
    """Why a problem looks multi-part ('parts', 'two_asks', 'several_boxed'), or None."""
    pairs = _PART_PAIRS[1:] if all(c.search(problem) for c in _FIVE_CHOICES) else _PART_PAIRS
    if any(a.search(problem) and b.search(problem) for a, b in pairs):
        return "parts"
    if _SECOND_ASK.search(problem):
        return "two_asks"
    if solution and len(boxed_answers(solution)) >= 2:
        return "several_boxed"
    return None


def drop_multipart(rows: list[dict]) -> tuple[list[dict], dict]:
    kept, dropped = [], Counter()
    for r in rows:
        reason = multipart_reason(r["problem"], r["solution"])
        if reason:
            dropped[f"multipart_{reason}"] += 1
        else:
            kept.append(r)
    return kept, dict(dropped)


def exact_key(problem: str) -> str:
    return hashlib.sha256(" ".join(problem.casefold().split()).encode()).hexdigest()


def shingles(problem: str, n: int) -> frozenset[str]:
    words = re.findall(r"\w+", problem.casefold())
    if len(words) <= n:
        return frozenset([" ".join(words)]) if words else frozenset()
    return frozenset(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))


_PERMS, _BANDS = 100, 20  # 20 bands x 5 rows: a pair at Jaccard 0.8 becomes a candidate with p > 0.999
_MERSENNE = (1 << 31) - 1


def _minhash_params():
    import numpy as np

    rng = random.Random(0)
    a = np.array([rng.randrange(1, _MERSENNE) for _ in range(_PERMS)], dtype=np.uint64)
    b = np.array([rng.randrange(0, _MERSENNE) for _ in range(_PERMS)], dtype=np.uint64)
    return a, b


def _signature(sh: frozenset[str], a, b):
    import numpy as np

    x = np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(s.encode(), digest_size=4).digest(), "little") % _MERSENNE
            for s in sorted(sh)
        ),
        dtype=np.uint64,
        count=len(sh),
    )
    return ((np.outer(x, a) + b) % _MERSENNE).min(axis=0)


def dedup(
    rows: list[dict],
    near: bool,
    shingle_words: int,
    threshold: float,
    on_progress: Progress | None = None,
    label: str = "dedup",
) -> tuple[list[dict], dict, list[dict]]:
    """Drop exact then near duplicates, keeping the earliest row; also returns the near pairs found."""
    kept, dropped, pairs = [], Counter(), []
    seen: set[str] = set()
    for r in rows:
        key = exact_key(r["problem"])
        if key in seen:
            dropped["exact_duplicate"] += 1
            continue
        seen.add(key)
        kept.append(r)
    if not near:
        return kept, dict(dropped), pairs
    a, b = _minhash_params()
    rows_per_band = _PERMS // _BANDS
    buckets: dict[tuple, list[int]] = {}
    sets: list[frozenset[str]] = []
    out = []
    for i, r in enumerate(kept):
        if on_progress and i % 500 == 0:
            on_progress(label, i, len(kept))
        sh = shingles(r["problem"], shingle_words)
        if not sh:
            out.append(r)
            sets.append(sh)
            continue
        sig = _signature(sh, a, b)
        keys = [(band, sig[band * rows_per_band : (band + 1) * rows_per_band].tobytes()) for band in range(_BANDS)]
        match = None
        for j in sorted({j for k in keys for j in buckets.get(k, ())}):
            inter = len(sh & sets[j])
            if inter / (len(sh) + len(sets[j]) - inter) >= threshold:
                match = j
                break
        if match is not None:
            dropped["near_duplicate"] += 1
            pairs.append({"kept": out[match]["problem"], "dropped": r["problem"], "source": r["source"]})
            continue
        idx = len(out)
        out.append(r)
        sets.append(sh)
        for k in keys:
            buckets.setdefault(k, []).append(idx)
    if on_progress:
        on_progress(label, len(kept), len(kept))
    return out, dict(dropped), pairs
