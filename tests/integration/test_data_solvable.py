"""The solvable-by-model filter for real: `openrs data build open-rs` in a subprocess with the tiny offline model
generating through eval's transformers backend and the shared grader; the rebuild must be byte-identical."""

from __future__ import annotations

import json

import pytest

from openrs_cli import benchmarks
from tests.conftest import run_openrs


@pytest.mark.slow
def test_open_rs_with_tiny_model_solver(tmp_path, tiny_model_dir):
    rows = benchmarks.load("train-sample")
    s1, ds = tmp_path / "s1.jsonl", tmp_path / "ds.jsonl"
    s1.write_text("".join(json.dumps({"question": r["problem"], "solution": r.get("solution") or f"$\\boxed{{{r['answer']}}}$"})
                          + "\n" for r in rows[:200]))
    ds.write_text("".join(json.dumps({"problem": r["problem"], "answer": r["answer"]}) + "\n" for r in rows[1000:1032]))
    args = ["data", "build", "open-rs", "--source", f"open-s1={s1}", "--source", f"open-deepscaler={ds}",
            "sources.open-s1.solvable.model=null", "sources.open-deepscaler.solvable.model=openrs-tiny",
            "sources.open-deepscaler.solvable.samples=2", "sources.open-deepscaler.solvable.max_new_tokens=8",
            "sources.open-deepscaler.solvable.batch_size=64", "sources.open-deepscaler.solvable.prompt={problem}",
            "sources.open-deepscaler.solvable.threshold=0.5",
            "mix.open-s1=50", "mix.open-deepscaler=null", "mix.easy=null"]
    r = run_openrs(*args, "--out", str(tmp_path / "a"))
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    sv = next(s for s in m["stages"] if s["stage"] == "solvable")
    st = m["solvable"]["open-deepscaler"]
    assert sv["pool"] == "open-deepscaler" and st["model"] == "openrs-tiny" and st["samples"] == 2
    assert 25 <= sv["in"] <= 32  # 32 problems minus multi-part / duplicate / contaminated ones
    assert sv["in"] == sv["out"] + st["easy"] == sum(st["correct_histogram"].values())
    solved = sum(n for k, n in st["correct_histogram"].items() if int(k) >= 1)  # threshold 0.5 of 2 samples
    assert st["easy"] == solved
    assert m["rows"] == 50 + sv["out"] + st["easy"]
    r2 = run_openrs(*args, "--out", str(tmp_path / "b"))
    assert r2.returncode == 0, r2.stderr
    m2 = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m2["content_sha256"] == m["content_sha256"] and m2["files"] == m["files"]
    assert m2["solvable"] == m["solvable"]
