"""The one `\\boxed{}` reader: balanced contents of `\\boxed{...}` (and, where asked, `\\fbox{...}`), linear time."""

from __future__ import annotations

import re

_TOKENS = {
    False: re.compile(r"\\boxed\{|[{}]"),
    True: re.compile(r"\\(?:boxed|fbox)\s*\{|[{}]"),
}


def boxed_spans(text: str, fbox: bool = False) -> list[tuple[int, int]]:
    """(start, end) of the contents of every balanced box, ordered by start; an unclosed box is left out.

    One pass with a stack of open braces, so thousands of unclosed boxes stay linear."""
    if not isinstance(text, str):
        return []
    stack: list[int] = []  # content start for a box, -1 for a plain {
    spans = []
    for m in _TOKENS[fbox].finditer(text):
        tok = m.group()
        if tok == "}":
            if stack and (start := stack.pop()) >= 0:
                spans.append((start, m.start()))
        else:
            stack.append(m.end() if tok != "{" else -1)
    return sorted(spans)


def extract_boxed(text: str) -> str | None:
    """Content of the last balanced \\boxed{...} in text (the one starting last; None if there is none)."""
    if not isinstance(text, str) or "\\boxed{" not in text:
        return None
    spans = boxed_spans(text)
    return text[spans[-1][0]:spans[-1][1]] if spans else None


def all_boxed(text: str) -> list[str]:
    """Contents of every balanced \\boxed{...} and \\fbox{...}, in order, stripped."""
    return [text[a:b].strip() for a, b in boxed_spans(text, fbox=True)]
