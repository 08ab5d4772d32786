"""The solvable-by-model filter for real: `openrs data build open-rs` (in-process CLI) with the tiny offline model
generating through eval's transformers backend and the shared grader; the rebuild must be byte-identical."""

from __future__ import annotations

import json

import pytest

from openrs_cli import evalsets


@pytest.mark.slow
def test_open_rs_with_tiny_model_solver(tmp_path, tiny_model_dir, cli):
    rows = evalsets.load("train-sample")
    s1, ds = tmp_path / "s1.jsonl", tmp_path / "ds.jsonl"
    s1.write_text(
        "".join(
            json.dumps({"question": r["problem"], "solution": r.get("solution") or f"$\\boxed{{{r['answer']}}}$"})
            + "\n"
            for r in rows[:80]
        )
    )
    ds.write_text(
        "".join(json.dumps({"problem": r["problem"], "answer": r["answer"]}) + "\n" for r in rows[1000:1020])
    )
    args = [
        "data",
        "build",
        "open-rs",
        "--source",
        f"open-s1={s1}",
        "--source",
        f"open-deepscaler={ds}",
        "sources.open-s1.solvable.model=null",
        "sources.open-deepscaler.solvable.model=openrs-tiny",
        "sources.open-deepscaler.solvable.samples=2",
        "sources.open-deepscaler.solvable.max_new_tokens=8",
        "sources.open-deepscaler.solvable.batch_size=64",
        "sources.open-deepscaler.solvable.prompt={problem}",
        "sources.open-deepscaler.solvable.threshold=0.5",
        "mix.open-s1=30",
        "mix.open-deepscaler=null",
        "mix.easy=null",
    ]
    code, _, err = cli(*args, "--out", str(tmp_path / "a"))
    assert code == 0, err
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    sv = next(s for s in m["stages"] if s["stage"] == "solvable")
    st = m["solvable"]["open-deepscaler"]
    assert sv["pool"] == "open-deepscaler" and st["model"] == "openrs-tiny" and st["samples"] == 2
    assert 15 <= sv["in"] <= 20  # 20 problems minus multi-part / duplicate / contaminated ones
    assert sv["in"] == sv["out"] + st["easy"] == sum(st["correct_histogram"].values())
    # threshold 0.5 of 2 samples: a problem is easy at >= 1 correct. A random tiny model solves none (so this is
    # 0 == 0 here); tests/unit/test_data_stages.py checks the split with a generator that solves some.
    solved = sum(n for k, n in st["correct_histogram"].items() if int(k) >= 1)
    assert st["easy"] == solved
    assert m["rows"] == 30 + sv["out"] + st["easy"]
    code, _, err = cli(*args, "--out", str(tmp_path / "b"))
    assert code == 0, err
    m2 = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m2["content_sha256"] == m["content_sha256"] and m2["files"] == m["files"]
    assert m2["solvable"] == m["solvable"]
    # Threshold 0: every problem counts as solved, so the whole pool moves to 'easy' (the easy path, real engines).
    code, _, err = cli(
        *args, "sources.open-deepscaler.solvable.threshold=0", "mix.open-deepscaler=0", "--out", str(tmp_path / "c")
    )
    assert code == 0, err
    m3 = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert m3["solvable"]["open-deepscaler"]["easy"] == sv["in"] and m3["pools"]["open-deepscaler"] == 0
    import datasets

    sources = datasets.load_from_disk(str(tmp_path / "c"))["source"]
    assert sources.count("open-deepscaler/easy") == sv["in"] and sources.count("open-s1") == 30
