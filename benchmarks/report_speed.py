"""Wall time of `openrs report` with no arguments (the paper's tables and figures, every format) in a fresh process.

    .venv/bin/python benchmarks/report_speed.py [--repeat 3]

Baseline in the same run: a fresh process that only imports matplotlib and pandas-free report code and saves one
empty figure (the fixed cost any matplotlib report pays). Measured: the real console entry point rendering the
default report into a temporary directory (2 tables x 3 formats, 4 figures x PNG+SVG, report.md, report.html).
Prints each run, the medians and their ratio. Goal: median under 10 s on this machine.
Last line: `report_no_args_median_s: <number>`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

BASELINE = ("import matplotlib; matplotlib.use('Agg'); from matplotlib.figure import Figure; import io; "
            "Figure().savefig(io.BytesIO(), format='png')")


def timed(args: list[str], cwd: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    base, ours = [], []
    for i in range(a.repeat):
        with tempfile.TemporaryDirectory() as d:
            base.append(timed([sys.executable, "-c", BASELINE], d))
            ours.append(timed([sys.executable, "-c", "from openrs_cli.main import run; run()", "report"], d))
        print(f"run {i + 1}: baseline (matplotlib import + one PNG) {base[-1]:.2f} s, openrs report {ours[-1]:.2f} s")
    mb, mo = statistics.median(base), statistics.median(ours)
    print(f"median baseline {mb:.2f} s, median openrs report {mo:.2f} s, ratio {mo / mb:.1f}x (goal: < 10 s)")
    print(f"report_no_args_median_s: {mo:.2f}")


if __name__ == "__main__":
    main()
