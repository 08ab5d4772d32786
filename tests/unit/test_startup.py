"""`openrs --help` must not import heavy libraries."""

import json
import subprocess
import sys

HEAVY = ["torch", "trl", "transformers", "vllm", "lighteval", "math_verify", "pandas", "matplotlib", "datasets",
         "pynvml", "deepspeed", "accelerate", "numpy"]


def test_main_import_loads_no_heavy_module():
    code = "import sys, json; import openrs_cli.main; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert not [m for m in HEAVY if m in loaded]


def test_help_runs_without_heavy_modules():
    code = ("import sys\nfrom openrs_cli.main import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
            f"bad=[m for m in {HEAVY!r} if m in sys.modules]\nprint('HEAVY', bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout[-500:]
