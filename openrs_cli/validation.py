"""pydantic validation errors as one line for the user: every problem, each naming the key and, for an unknown key,
the nearest valid one (shared by recipes and data specs)."""

from __future__ import annotations

import difflib
from collections.abc import Callable


def explain(err: dict, fields_at: Callable[[tuple], list[str]]) -> str:
    """One pydantic error: 'unknown key a.b; did you mean a.c?' or 'a.b: <message> (got X)'.

    fields_at(loc) lists the valid keys of the section at `loc` (a tuple of key parts)."""
    loc = tuple(str(x) for x in err["loc"])
    dotted = ".".join(loc)
    if err["type"] == "extra_forbidden":
        valid = fields_at(loc[:-1])
        near = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.5)
        if near:
            return f"unknown key '{dotted}'; did you mean '{'.'.join(loc[:-1] + (near[0],))}'?"
        return f"unknown key '{dotted}'" + (f"; valid keys here: {', '.join(valid)}" if valid else "")
    msg = err["msg"].removeprefix("Value error, ")
    if not loc:
        return msg
    got = err.get("input")
    shown = f" (got {got!r})" if isinstance(got, str | int | float | bool) or got is None else ""
    return f"{dotted}: {msg[0].lower() + msg[1:]}{shown}"


def explain_all(errors: list[dict], fields_at: Callable[[tuple], list[str]]) -> str:
    """Every error, in one line: the first as it is, more as '2 problems: A; B'."""
    parts = list(dict.fromkeys(explain(e, fields_at) for e in errors))
    return parts[0] if len(parts) == 1 else f"{len(parts)} problems: " + "; ".join(parts)
