"""Carve the checkpoint-selection validation split from the bundled DeepScaleR training sample.

    .venv/bin/python scripts/make_validation.py

Takes the last 200 rows of train-sample-deepscaler.jsonl (the tiny recipe trains on its first rows, and
`bundled:train-sample` leaves these out of training data), drops every row that shares a 13-word n-gram with one
of the five test sets (openrs data's decontamination, stricter 8-word n-grams too) or whose answer does not parse
as a gold, and keeps the first 100. Writes openrs_cli/evalsets/data/validation.jsonl and updates SHA256SUMS;
the same input gives the same file.
"""

from __future__ import annotations

import hashlib
import json

from openrs_cli import evalsets
from openrs_cli.data.decontam import EvalIndex

BENCHES = ["aime24", "amc23", "math500", "minerva", "olympiadbench"]
TAIL, KEEP = 200, 100


def main() -> None:
    from openrs_cli.evaluate.tasks import latex_delimited
    from openrs_cli.grading import EVAL_LATEX_GOLD, gold_parses

    rows = evalsets.load("train-sample")[-TAIL:]
    strict, loose = EvalIndex(BENCHES, 13), EvalIndex(BENCHES, 8)
    out = []
    for r in rows:
        if strict.matches(r["problem"]) or loose.matches(r["problem"]):
            continue
        if not gold_parses(latex_delimited(r["answer"]), EVAL_LATEX_GOLD):
            continue
        out.append({"id": f"validation-{len(out)}", "problem": r["problem"], "answer": r["answer"],
                    "source": f"train-sample-deepscaler.jsonl:{r['id']}",
                    "meta": {"train_sample_id": r["id"], "decontaminated_against": BENCHES,
                             "ngrams": [13, 8]}})
        if len(out) == KEEP:
            break
    path = evalsets.DATA_DIR / "validation.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), encoding="utf-8")
    sums = evalsets.DATA_DIR / "SHA256SUMS"
    lines = [ln for ln in sums.read_text().splitlines() if not ln.endswith("  validation.jsonl")]
    lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  validation.jsonl")
    sums.write_text("\n".join(sorted(lines, key=lambda x: x.split()[-1])) + "\n")
    print(f"wrote {path} ({len(out)} rows of the last {TAIL})")


if __name__ == "__main__":
    main()
