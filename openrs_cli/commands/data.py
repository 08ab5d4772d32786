"""`openrs data` (not landed yet: issue #4)."""

import typer

app = typer.Typer(help="(not available yet: issue #4) data commands.", no_args_is_help=True)


@app.command("status")
def status() -> None:
    """Say that this group has not landed yet."""
    from openrs_cli.errors import OpenrsError

    raise OpenrsError("openrs data has not landed yet (issue #4)")
