"""Shared Rich consoles for the command modules (library code never prints)."""

from typing import Annotated

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)
# Output to a file, a pipe or a batch job's log: one record per line, never wrapped at 80 columns (a progress line's
# "eta 7s" on a line of its own cannot be read by a person scanning the log, nor by grep).
for _c in (console, err_console):
    _c.soft_wrap = not _c.is_terminal


def escape(text: str) -> str:
    from rich.markup import escape as _escape

    return _escape(text)


# Every command's --json: one declaration, one way of printing.
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON to stdout for scripts (instead of tables)")]


def print_json(obj) -> None:
    import json

    typer.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))
