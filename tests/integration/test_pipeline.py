"""The README's demo pipeline end to end (data build -> train tiny -> eval -> cost summary -> report), as CI runs
it, with every artifact checked against its schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from openrs_cli.schema import check_schema
from tests.conftest import REPO


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_demo_pipeline(tmp_path):
    demo = tmp_path / "demo"
    env = {**os.environ, "DEMO_DIR": str(demo), "DEMO_LIMIT": "2", "OPENRS": f"{sys.executable} -m openrs_cli.main"}
    r = subprocess.run(["bash", str(REPO / "scripts" / "demo.sh")], env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    assert f"report: {demo / 'report' / 'report.html'}" in r.stdout

    # data build: a saved dataset, its Parquet copy and a manifest
    from datasets import load_from_disk

    manifest = json.loads((demo / "data" / "manifest.json").read_text())
    check_schema(manifest, "data_manifest", "manifest.json")
    ds = load_from_disk(str(demo / "data"))
    assert {"problem", "solution", "answer", "source"} <= set(ds.column_names) and len(ds) > 1000
    assert manifest["content_sha256"] and (demo / "data" / "data.parquet").is_file()

    # train: run directory
    run = demo / "runs" / "tiny"
    check_schema(json.loads((run / "launch.json").read_text()), "launch", "launch.json")
    metrics = _jsonl(run / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    for m in metrics:
        check_schema(m, "metrics", "metrics.jsonl")
        for key in ("reward_mean", "reward_std", "completion_length_mean", "truncated_frac", "non_english_frac",
                    "kl", "learning_rate", "step_time_s", "rewards/toy_digits/mean"):
            assert key in m, key
    for rec in _jsonl(run / "completions.jsonl"):
        check_schema(rec, "completions", "completions.jsonl")
    assert (run / "final" / "config.json").is_file() and (run / "final" / "tokenizer.json").is_file()
    ledgers = list((run / "cost").glob("ledger-*.jsonl"))
    assert ledgers
    records = _jsonl(ledgers[0])
    for rec in records:
        check_schema(rec, "ledger", ledgers[0].name)
    assert records[0]["record"] == "run_start" and records[-1]["record"] == "run_end"

    # eval: generations and results
    gens = _jsonl(demo / "eval" / "generations.jsonl")
    for g in gens:
        check_schema(g, "generation", "generations.jsonl")
    assert len(gens) == 2 * 2 * 2  # 2 tasks x 2 problems x 2 samples
    results = json.loads((demo / "eval" / "results.json").read_text())
    check_schema(results, "results", "results.json")
    assert set(results["tasks"]) == {"aime24", "amc23"} and results["tasks"]["aime24"]["samples"] == 2

    # cost summary: a CPU run, stated plainly
    assert "no GPU was allocated, so no GPU-hours and no dollar figure" in r.stdout

    # report: the tiny run's row and its curves beside the paper's
    report = (demo / "report" / "report.md").read_text()
    assert "tiny-demo" in report and "Open-RS3" in report
    assert (demo / "report" / "figures" / "training-tiny.png").stat().st_size > 10_000
    assert "data:image/png;base64," in (demo / "report" / "report.html").read_text()
