"""The claims audit: labels by the stated rule, pinned on the published numbers, and your own evals beside them."""

from __future__ import annotations

import math

import pytest

from openrs_cli.report import audit
from openrs_cli.report.data import ModelRow, Score, paper_models


def _cells():
    cells, gains = audit.audit(paper_models())
    return {(c.model, c.bench): {e.source: e for e in c.evidence} for c in cells}, \
        {(g.model, g.bench, g.source): g for g in gains}


def test_open_rs3_aime24_against_the_reevaluations():
    cells, gains = _cells()
    ev = cells[("Open-RS3", "aime24")]
    sober = ev["Sober-reasoning"]
    assert (sober.score, sober.seeds) == (29.7, 10)
    assert sober.sigma == pytest.approx(4.6 * math.sqrt(1.1))  # single-seed spread, plus the mean's own error
    assert sober.label == "contradicted"  # 46.7 is 3.5 sigma above 29.7
    assert ev["open-rs #11"].label == "contradicted" and ev["Tina"].label == "reproduced"  # 43.3, one sample
    g = gains[("Open-RS3", "aime24", "Sober-reasoning")]
    assert g.paper_gain == pytest.approx(46.7 - 28.8) and g.delta == pytest.approx(29.7 - 28.7)
    half = 1.96 * math.sqrt(4.6**2 / 10 + 4.8**2 / 10)
    assert (g.lo, g.hi) == (pytest.approx(1.0 - half), pytest.approx(1.0 + half))
    assert g.label == "contradicted"  # +17.9 is far outside [-3.1, +5.1]
    assert gains[("Open-RS3", "aime24", "Tina")].label == "inside noise"  # one sample each: the interval holds 0


def test_labels_follow_the_rule_at_its_edges():
    assert audit.cell_label(1.0, 1.0) == "reproduced" and audit.cell_label(-1.5, 1.0) == "inside noise"
    assert audit.cell_label(2.0, 1.0) == "inside noise" and audit.cell_label(2.01, 1.0) == "contradicted"
    assert audit.gain_label(5.0, 1.0, 6.0) == "reproduced"
    assert audit.gain_label(5.0, -1.0, 6.0) == "inside noise"
    assert audit.gain_label(7.0, -1.0, 6.0) == "contradicted" and audit.gain_label(-2.0, -1.0, 6.0) == "contradicted"
    assert audit.binomial_sd(50.0, "aime24") == pytest.approx(100 * math.sqrt(0.25 / 30))


def test_every_open_rs_cell_is_audited_and_counts_add_up():
    cells, gains = audit.audit(paper_models())
    assert len(cells) == 15 and {c.model for c in cells} == set(audit.AUDITED)
    assert all(c.evidence for c in cells)
    text = audit.summary(cells, gains)
    n = sum(len(c.evidence) for c in cells)
    assert text.startswith(f"Of {n} comparisons") and f"Of {len(gains)} re-tested gains" in text


def test_your_eval_of_a_released_checkpoint_joins_the_audit():
    mine = ModelRow(group="Yours", model="knoveleng/Open-RS3", scores={"aime24": Score(30.0, 4.0)}, source="x",
                    user=True)
    other = ModelRow(group="Yours", model="runs/mine/final", scores={"aime24": Score(50.0, 4.0)}, source="x",
                     user=True)
    cells, _ = audit.audit(paper_models(), [mine, other])
    ev = {e.source: e for c in cells if (c.model, c.bench) == ("Open-RS3", "aime24") for e in c.evidence}
    yours = ev["yours: knoveleng/Open-RS3"]
    assert yours.sigma == pytest.approx(math.sqrt(4.6**2 + (4.0 / 1.96) ** 2))
    assert yours.label == "contradicted" and not any("runs/mine" in s for s in ev)


def test_default_report_has_the_audit(tmp_path):
    from openrs_cli.report import build_report

    build_report([], [], tmp_path / "r", formats=("md", "csv"))
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## Claims audit" in md and "| Open-RS3 | AIME24 | 46.7 | 29.7 (σ 4.8, 10 seeds): contradicted |" in md
    assert "Rule: Each paper number is a single run" in md
    csv_text = (tmp_path / "r" / "tables" / "audit_gains.csv").read_text()
    assert "Open-RS3,aime24,17.9,Sober-reasoning,1.0,-3.12,5.12,contradicted" in csv_text
