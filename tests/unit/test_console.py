"""Plain output (a log file, a pipe, a batch job) is never wrapped at 80 columns."""

from __future__ import annotations

import subprocess
import sys


def test_long_progress_lines_stay_whole_when_output_is_not_a_terminal():
    from openrs_cli.commands.train import _line

    rec = {"step": 12, "max_steps": 500, "reward_mean": 0.123456, "reward_std": 0.5, "completion_length_mean": 1234.5,
           "kl": 0.0012, "step_time_s": 61.2, "generation_time_s": 40.1, "eta_s": 7}
    line = _line(rec)
    assert len(line) > 80
    code = ("from openrs_cli.commands._console import console; from openrs_cli.commands.train import _line; "
            f"console.print(_line({rec!r}), highlight=False)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"COLUMNS": "80", "PATH": "/usr/bin:/bin"}).stdout
    assert out.splitlines() == [line]  # one line, "eta 7s" included
