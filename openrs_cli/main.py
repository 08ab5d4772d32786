"""The `openrs` command line: one Typer app, a sub-app or command per verb, and the error handler.

Heavy libraries (torch, trl, transformers, vllm, lighteval, math_verify, pandas, matplotlib, datasets, pynvml)
are imported inside the functions that use them, so `openrs --help` stays fast (see tests/unit/test_startup.py).
"""

from __future__ import annotations

import errno
import sys

import typer

from openrs_cli import __version__
from openrs_cli.commands import cost, data, doctor, evaluate, recipes, report, train
from openrs_cli.errors import OpenrsError

app = typer.Typer(
    name="openrs",
    help="Open-RS as software: build the data, train small reasoning models with GRPO, evaluate them, "
    "account for their cost, and regenerate the paper's tables and figures.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(data.app, name="data")
app.command("train", help=train.HELP)(train.train)
app.add_typer(evaluate.app, name="eval")
app.add_typer(cost.app, name="cost")
app.command("report", help=report.HELP)(report.report)
app.add_typer(recipes.app, name="recipes")
app.command("doctor")(doctor.doctor)


@app.command("version")
def version() -> None:
    """Print the openrs version."""
    typer.echo(f"openrs {__version__}")


def run() -> None:
    """Console-script entry point: bad input -> one red line on stderr and exit code 2; bugs keep tracebacks."""
    try:
        app(standalone_mode=True)
    except OpenrsError as e:
        from openrs_cli.commands._console import err_console, escape

        prefix = "" if e.exit_code == 130 else "[bold red]error:[/] "  # an interrupt is not an error
        err_console.print(f"{prefix}{escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except OSError as e:
        # The environment, not a bug: a full disk, a read-only or unwritable place, a file where a directory
        # should be. One line, exit 2; other OS errors keep their traceback.
        if e.errno not in _ENV_ERRNOS:
            raise
        from openrs_cli.commands._console import err_console, escape

        where = f"{e.filename}: " if e.filename else ""
        err_console.print(f"[bold red]error:[/] {escape(where + (e.strerror or str(e)))}; choose a writable location "
                          f"with free space (e.g. another --out)", highlight=False, soft_wrap=True)
        sys.exit(2)


_ENV_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR}


if __name__ == "__main__":
    run()
