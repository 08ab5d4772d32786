"""Reports: the paper's published tables and figures (shipped as data in `paper_data/`) with the user's own
evaluated models (results.json) and training runs (metrics.jsonl, cost ledger) beside them.

    from openrs_cli.report import build_report
    build_report(results=[Path("evals")], runs=[Path("runs")], out=Path("openrs-report"))

Modules: `data` (paper data, row types), `inputs` (reading the user's artifacts), `tables` (md/latex/csv),
`figures` + `labels` (matplotlib), `document` (report.md / report.html), `build` (orchestration, safe writes).
Light at import: matplotlib is imported only when figures are rendered.
"""

from openrs_cli.report.build import ALL_FORMATS, DEFAULT_OUT, ReportResult, build_report, parse_formats
from openrs_cli.report.inputs import show_path

__all__ = ["ALL_FORMATS", "DEFAULT_OUT", "ReportResult", "build_report", "parse_formats", "show_path"]
