"""`openrs report` (not landed yet: issue #8)."""

HELP = "(not available yet: issue #8) Regenerate the paper's tables and figures with your runs beside them."


def report() -> None:
    from openrs_cli.errors import OpenrsError

    raise OpenrsError("openrs report has not landed yet (issue #8)")
