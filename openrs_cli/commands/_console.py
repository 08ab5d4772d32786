"""Shared Rich consoles for the command modules (library code never prints)."""

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def escape(text: str) -> str:
    from rich.markup import escape as _escape

    return _escape(text)
