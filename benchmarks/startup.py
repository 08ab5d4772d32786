"""Start-up time of `openrs --help` against `python -c "import trl, transformers"`, measured in the same run.

Goal: `openrs --help` median under 0.3 s (heavy libraries are imported only inside the commands that use them).
Prints the medians and, last, `help_median_s: <seconds>`.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 7


def median_wall(cmd: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    help_s = median_wall([sys.executable, "-c", "from openrs_cli.main import run; import sys; sys.argv=['openrs','--help']; run()"])
    heavy_s = median_wall([sys.executable, "-c", "import trl, transformers"])
    bare_s = median_wall([sys.executable, "-c", "pass"])
    print(f"python -c pass               median {bare_s:.3f} s")
    print(f"python -c 'import trl, transformers' median {heavy_s:.3f} s")
    print(f"openrs --help                median {help_s:.3f} s")
    print(f"ratio_vs_trl_import: {heavy_s / help_s:.1f}")
    print(f"help_median_s: {help_s:.3f}")


if __name__ == "__main__":
    main()
