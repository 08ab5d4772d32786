"""`build_report`: the paper's tables and figures with the user's runs beside them, written to one directory.

Layout of the output directory (default `openrs-report/` under the current directory):
    report.md, report.html (self-contained), tables/{table2,table34}.{md,tex,csv}, tables/audit{,_gains}.{md,csv}
    (the claims audit),
    figures/<name>.{png,svg}, figures/data.json (what each figure shows, as numbers), .openrs-report (marker: this directory is openrs output and may be rewritten).
A directory that exists, is not empty and has no marker is refused, so nothing the user made is overwritten;
every file is written to a temporary name and moved into place.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from openrs_cli.errors import OpenrsError, RunDirError
from openrs_cli.files import write_atomic
from openrs_cli.report.data import paper_checkpoints, paper_costs, paper_models
from openrs_cli.report.inputs import collect, show_path
from openrs_cli.report.tables import table2, table34

ALL_FORMATS = ("md", "latex", "csv", "png", "svg", "html")
DEFAULT_OUT = Path("openrs-report")
MARKER = ".openrs-report"
_TABLE_EXT = {"md": "md", "latex": "tex", "csv": "csv"}



@dataclass
class ReportResult:
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def parse_formats(text: str | None) -> tuple[str, ...]:
    """'md,latex' -> ('md', 'latex'); None/'' -> every format; unknown names raise OpenrsError."""
    if not text:
        return ALL_FORMATS
    wanted = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    bad = [f for f in wanted if f not in ALL_FORMATS]
    if bad or not wanted:
        raise OpenrsError(f"--format: unknown format '{bad[0] if bad else text}'; valid: {','.join(ALL_FORMATS)}")
    return wanted


def prepare_out(out: Path) -> None:
    """Create `out` or reuse an earlier report dir; refuse a user's own non-empty directory or a file."""
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out}: is a file; pass a directory for the report")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise RunDirError(f"--out {out}: exists, is not empty and was not written by `openrs report`; "
                          "pass a new directory with --out (nothing was changed)")
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / MARKER, b"This directory was written by `openrs report`; it may rewrite the files in it.\n")


def build_report(
    results: list[Path] | None = None,
    runs: list[Path] | None = None,
    out: Path = DEFAULT_OUT,
    formats: tuple[str, ...] = ALL_FORMATS,
    on_progress: Callable[[str], None] | None = None,
    timestamp: bool = True,
) -> ReportResult:
    """Render every table and figure in `formats` into `out`; returns the files written and notes for the user.

    timestamp=False leaves the generation time out of report.md/html, for a report kept in version control."""
    t0 = time.perf_counter()
    say = on_progress or (lambda _msg: None)
    user = collect(list(results or []), list(runs or []))
    if (results or runs) and not (user.rows or user.runs):
        why = user.notes[-1] if user.notes else "no usable results or training runs"
        raise OpenrsError(f"nothing to add from the paths given ({why}); pass what `openrs eval` / `openrs train` "
                          "wrote")
    prepare_out(out)
    res = ReportResult(out_dir=out, notes=list(user.notes))
    rows = paper_models() + user.rows
    costs = paper_costs() + user.cost_rows
    series = paper_checkpoints() + user.series
    tables = {"table2": table2, "table34": table34}
    table_text: dict[str, str] = {}
    for name, render in tables.items():
        say(f"table {name}")
        table_text[name] = render(rows if name == "table2" else costs, "md")
        for fmt in ("md", "latex", "csv"):
            if fmt in formats:
                data = table_text[name] if fmt == "md" else render(rows if name == "table2" else costs, fmt)
                res.files.append(write_atomic(out / "tables" / f"{name}.{_TABLE_EXT[fmt]}", data))
    from openrs_cli.report import audit

    say("claims audit")
    cells, gains = audit.audit(rows, user.rows)
    table_text["audit_cells"], table_text["audit_gains"] = audit.cells_table(cells), audit.gains_table(gains)
    table_text["audit_summary"] = audit.summary(cells, gains)
    for fmt in ("md", "csv"):
        if fmt in formats:
            res.files.append(write_atomic(out / "tables" / f"audit.{fmt}", audit.cells_table(cells, fmt)))
            res.files.append(write_atomic(out / "tables" / f"audit_gains.{fmt}", audit.gains_table(gains, fmt)))
    figs = []
    want_images = [e for e in ("png", "svg") if e in formats]
    if want_images or "html" in formats:
        from openrs_cli.report import figures

        encode = want_images + (["png"] if "html" in formats and "png" not in want_images else [])
        figs = figures.render_all(rows, series, user.runs, encode, on_progress=say)
        for f in figs:
            res.files += [write_atomic(out / "figures" / f"{f.name}.{ext}", f.data[ext]) for ext in want_images]
            res.notes += f.notes
        if want_images:
            import json

            data = {f.name: f.plotted for f in figs}
            res.files.append(write_atomic(out / "figures" / "data.json",
                                          json.dumps(data, indent=1, sort_keys=True) + "\n"))
    from openrs_cli.report import document

    if "md" in formats:
        say("report.md")
        res.files.append(write_atomic(out / "report.md", document.markdown(table_text, figs, user, res.notes,
                                                                          image_ext=_md_image_ext(want_images),
                                                                          timestamp=timestamp)))
    if "html" in formats:
        say("report.html")
        res.files.append(write_atomic(out / "report.html", document.html(table_text, figs, user, res.notes,
                                                                      timestamp=timestamp)))
    res.seconds = time.perf_counter() - t0
    return res


def _md_image_ext(exts: list[str]) -> str | None:
    return "png" if "png" in exts else ("svg" if "svg" in exts else None)


__all__ = ["ALL_FORMATS", "DEFAULT_OUT", "ReportResult", "build_report", "parse_formats", "show_path"]
