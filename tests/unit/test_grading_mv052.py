"""openrs's grader under math-verify 0.5.2 (the paper's version), in a small separate environment.

The environment is a venv with only `math-verify==0.5.2 latex2sympy2_extended==1.0.6` (what lighteval 0.13 pins);
`.ci/run` builds it and sets OPENRS_MV052_PYTHON to its python. The grader's workers must start there and give
the verdicts they give under the tested math-verify on clear-cut cases."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from openrs_cli.grading import EVAL_EXPR_GOLD, EVAL_LATEX_GOLD, PAPER_REWARD, grade_many

REPO = Path(__file__).resolve().parents[2]
PY = os.environ.get("OPENRS_MV052_PYTHON")

CASES = [
    ("paper", r"</think> so \boxed{0.5}", r"The sum is $\boxed{\frac{1}{2}}$."),
    ("paper", r"\boxed{2}", r"The sum is $\boxed{\frac{1}{2}}$."),
    ("paper", "it is 1/2", r"The sum is $\boxed{\frac{1}{2}}$."),
    ("paper", r"\boxed{3}", "no math here"),
    ("expr", r"Therefore, the final answer is: $\boxed{\frac{1}{2}}$.", "0.5"),
    ("expr", r"... so $\boxed{3}$", "7"),
    ("latex", r"The answer is $\boxed{0.5}$", r"Hence $x=\boxed{\frac12}$."),
    ("latex", r"$\boxed{(3, \frac{\pi^2}{2})}$", r"$\left( 3, \frac{\pi^2}{2} \right)$"),
]
CFGS = {"paper": "PAPER_REWARD", "expr": "EVAL_EXPR_GOLD", "latex": "EVAL_LATEX_GOLD"}

SCRIPT = r"""
import json, sys
from importlib.metadata import version
from openrs_cli import grading
cases = json.loads(sys.stdin.read())
out = [grading.grade(c, g, getattr(grading, cfg)).verdict.value for cfg, c, g in cases]
print(json.dumps({"math_verify": version("math-verify"), "verdicts": out}))
"""


@pytest.mark.skipif(not PY, reason="OPENRS_MV052_PYTHON is not set (.ci/run builds that environment)")
def test_grader_runs_under_math_verify_052_with_the_same_verdicts():
    cases = [(CFGS[k], c, g) for k, c, g in CASES]
    r = subprocess.run([PY, "-c", SCRIPT], input=json.dumps(cases), capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["math_verify"] == "0.5.2"
    presets = {"paper": PAPER_REWARD, "expr": EVAL_EXPR_GOLD, "latex": EVAL_LATEX_GOLD}
    here = [grade_many([(c, g)], presets[k])[0].verdict.value for k, c, g in CASES]
    assert got["verdicts"] == here
