"""`openrs report`: the paper's tables and figures, with your evaluated models and training runs beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from openrs_cli.commands._console import console, escape

HELP = ("Regenerate the paper's tables (Table 2, Tables 3/4) and figures (Figure 1, per-benchmark and average "
        "bars, eval over checkpoints, training curves) with your runs beside them. With no arguments: the "
        "paper's own data, written to ./openrs-report/.")


def report(
    results: Annotated[list[Path] | None, typer.Option(
        "--results", "-r",
        help="results.json from `openrs eval`, or a directory searched for them (repeatable)")] = None,
    runs: Annotated[list[Path] | None, typer.Option(
        "--runs", help="A run dir from `openrs train` or a directory of run dirs (repeatable): training curves, "
                       "cost, and the results.json inside it")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (refused if it holds files that "
                                                         "`openrs report` did not write)")] = Path("openrs-report"),
    formats: Annotated[str | None, typer.Option(
        "--format", "-f", help="Comma-separated subset of md,latex,csv,png,svg,html (default: all)")] = None,
    timestamp: Annotated[bool, typer.Option(
        "--timestamp/--no-timestamp", help="Say when the report was generated (--no-timestamp: for a report kept "
                                           "in version control, e.g. reports/paper)")] = True,
) -> None:
    from openrs_cli.report import build_report, parse_formats, show_path

    fmts = parse_formats(formats)
    with console.status("rendering the report") as status:
        res = build_report(results or [], runs or [], out, fmts,
                           on_progress=lambda msg: status.update(f"rendering {escape(msg)}"), timestamp=timestamp)
    for note in dict.fromkeys(res.notes):
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    main = [p for p in res.files if p.name in ("report.md", "report.html")]
    where = ": " + ", ".join(escape(show_path(p)) for p in main) if main else ""
    console.print(f"wrote {len(res.files)} file{'s' if len(res.files) != 1 else ''} to {escape(show_path(res.out_dir))}/ in {res.seconds:.1f} s{where}",
                  highlight=False, soft_wrap=True)
