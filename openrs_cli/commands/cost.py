"""`openrs cost` (not landed yet: issue #7)."""

import typer

app = typer.Typer(help="(not available yet: issue #7) cost commands.", no_args_is_help=True)


@app.command("status")
def status() -> None:
    """Say that this group has not landed yet."""
    from openrs_cli.errors import OpenrsError

    raise OpenrsError("openrs cost has not landed yet (issue #7)")
