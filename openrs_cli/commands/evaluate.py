"""`openrs eval` (not landed yet: issue #6)."""

import typer

app = typer.Typer(help="(not available yet: issue #6) Evaluate models on AIME24, AMC23, MATH-500, Minerva, "
                  "OlympiadBench.", invoke_without_command=True)


@app.callback()
def main() -> None:
    from openrs_cli.errors import OpenrsError

    raise OpenrsError("openrs eval has not landed yet (issue #6)")
