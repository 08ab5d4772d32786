"""Grader parity: lighteval 0.13's extractive match (the paper's metric config) vs openrs's grader.

Runs in an environment that has lighteval (it pins math-verify 0.5.2, so not openrs's own venv); the openrs
side is graded in openrs's venv through a subprocess. Both grade the same (completion, gold) pairs: for every
problem of the five tasks a right answer (the bundled `answer`, boxed in the paper's answer line), a wrong
one (the answer perturbed) and no answer, plus any `--generations FILE` (e.g. a real model's generations.jsonl).
Prints agreement per task, every disagreement, and last `lighteval_agreement: <fraction>`.

    python -m venv /tmp/le-venv && /tmp/le-venv/bin/pip install torch==2.13.0 \
        && /tmp/le-venv/bin/pip install "lighteval>=0.13,<0.14" "math-verify==0.5.2" "xxhash<4"
    PYTHONPATH=. /tmp/le-venv/bin/python benchmarks/lighteval_parity.py [--per-task N] [--generations F.jsonl]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
LAST = "Therefore, the final answer is: $\\boxed{%s}$. I hope it is correct"

OPENRS_SIDE = """
import json, sys
from openrs_cli.evaluate.scoring import score_file
res = score_file(sys.argv[1])
json.dump(res["graded"], open(sys.argv[2], "w"))
"""


def perturb(ans: str) -> str:
    a = ans.strip()
    if re.fullmatch(r"-?\d+", a):
        return str(int(a) + 1)
    return f"{a}+1"


def make_cases(per_task: int) -> list[dict]:
    from openrs_cli import evalsets
    from openrs_cli.evaluate.tasks import TASKS

    out = []
    for name, t in TASKS.items():
        rows = evalsets.load(t.bundled)
        rows = rows[:per_task] if per_task else rows
        for r in rows:
            out.append({"task": name, "id": r["id"], "sample": 0, "kind": "right", "completion": LAST % r["answer"]})
            out.append({"task": name, "id": r["id"], "sample": 1, "kind": "wrong",
                        "completion": LAST % perturb(r["answer"])})
            out.append({"task": name, "id": r["id"], "sample": 2, "kind": "none",
                        "completion": "I could not solve this problem."})
    return out


def lighteval_grade(cases: list[dict], golds: dict) -> list[tuple[float, list, list]]:
    from lighteval.models.model_output import ModelResponse
    from lighteval.tasks.requests import Doc

    from openrs_cli.evaluate.lighteval_tasks import extractive_match
    from openrs_cli.evaluate.tasks import TASKS

    metrics = {n: extractive_match(t.gold_kind) for n, t in TASKS.items()}
    out = []
    for c in cases:
        doc = Doc(query="", choices=[golds[(c["task"], c["id"])]], gold_index=0, task_name=c["task"])
        score = metrics[c["task"]].compute(doc=doc, model_response=ModelResponse(text=[c["completion"]]))
        spec = doc.specific or {}
        out.append((float(score), spec.get("extracted_predictions", []), spec.get("extracted_golds", [])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-task", type=int, default=0, help="first N problems of each task (0 = all)")
    ap.add_argument("--generations", action="append", default=[], help="extra JSONL of {task?, id, completion}")
    ap.add_argument("--no-synthetic", action="store_true", help="grade only the --generations files")
    ap.add_argument("--openrs-python", default=str(REPO / ".venv" / "bin" / "python"))
    ap.add_argument("--show", type=int, default=40, help="disagreements to print")
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # lighteval warns on every unparsed prediction

    from openrs_cli.evaluate.tasks import TASKS, load_task, task_for_id

    golds = {(n, p.id): p.gold for n, t in TASKS.items() for p in load_task(t).problems}
    cases = [] if args.no_synthetic else make_cases(args.per_task)
    for g in args.generations:
        for i, line in enumerate(Path(g).read_text().splitlines()):
            r = json.loads(line)
            task = r.get("task") or task_for_id(r["id"]).name
            cases.append({"task": task, "id": r["id"], "sample": 1000 + i, "kind": "generated",
                          "completion": r["completion"]})

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "cases.jsonl", Path(tmp) / "graded.json"
        src.write_text("".join(json.dumps(c) + "\n" for c in cases))
        t0 = time.time()
        subprocess.run([args.openrs_python, "-c", OPENRS_SIDE, str(src), str(dst)], check=True, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
        t_openrs = time.time() - t0
        graded = {(g["task"], g["id"], g["sample"]): g for g in json.loads(dst.read_text())}
    t0 = time.time()
    le = lighteval_grade(cases, golds)
    t_le = time.time() - t0

    per_task: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    disagree = []
    for c, (score, le_pred, le_gold) in zip(cases, le, strict=True):
        o = graded[(c["task"], c["id"], c["sample"])]
        same = (score >= 1.0) == bool(o["correct"])
        for d, k in ((per_task, c["task"]), (per_kind, c["kind"])):
            d[k][0] += same
            d[k][1] += 1
        if not same:
            disagree.append((c, score, le_pred, le_gold, o))
    n_syn = sum(c["kind"] != "generated" for c in cases)
    print(f"graded {len(cases)} pairs ({n_syn} synthetic: each problem's own answer, a perturbed one and none, in "
          f"the paper's answer line; {len(cases) - n_syn} from --generations): openrs {t_openrs:.1f} s, "
          f"lighteval {t_le:.1f} s")
    for name, (a, n) in per_task.items():
        print(f"  {name:14s} agreement {a}/{n} = {a / n:.4f}")
    for name, (a, n) in per_kind.items():
        print(f"  {name:14s} agreement {a}/{n} = {a / n:.4f}")
    print(f"{len(disagree)} disagreements" + (f" (first {args.show}):" if disagree else ""))
    for c, score, le_pred, le_gold, o in disagree[: args.show]:
        print(f"- {c['task']} {c['id']} [{c['kind']}] completion …{c['completion'][-70:]!r}")
        print(f"    lighteval {score:.0f} pred={le_pred[:2]} gold={le_gold[:2]} | openrs {o['verdict']} "
              f"pred={o['pred']!r} gold={golds[(c['task'], c['id'])][-60:]!r}")
    total = sum(a for a, _ in per_task.values()), sum(n for _, n in per_task.values())
    if not n_syn < len(cases):
        print("agreement on synthetic completions only: real model outputs (--generations) can disagree more")
    print(f"lighteval_agreement: {total[0] / total[1]:.4f}")


if __name__ == "__main__":
    main()
