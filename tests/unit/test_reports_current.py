"""reports/paper is current: regenerating it changes no table, no figure's data, and README.md's Table 2 matches."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAPER = REPO / "reports" / "paper"
FIX = "run `make report` and commit reports/paper and README.md"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    from openrs_cli.report import build_report

    out = tmp_path_factory.mktemp("report") / "paper"
    build_report([], [], out, timestamp=False)
    return out


def test_every_file_is_there(fresh):
    want = sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file())
    have = sorted(p.relative_to(PAPER).as_posix() for p in PAPER.rglob("*") if p.is_file())
    assert have == want, FIX


@pytest.mark.parametrize("name", ["report.md", "tables/table2.md", "tables/table2.csv", "tables/table2.tex",
                                  "tables/table34.md", "tables/table34.csv", "tables/table34.tex",
                                  "tables/audit.md", "tables/audit.csv", "tables/audit_gains.md",
                                  "tables/audit_gains.csv"])
def test_text_files_are_identical(fresh, name):
    assert (PAPER / name).read_text() == (fresh / name).read_text(), f"reports/paper/{name} is stale: {FIX}"


def test_figures_show_the_same_data(fresh):
    have = json.loads((PAPER / "figures" / "data.json").read_text())
    want = json.loads((fresh / "figures" / "data.json").read_text())
    assert set(have) == set(want) == {"figure1", "benchmarks", "average", "checkpoints"}
    for name in want:
        assert have[name] == want[name], f"reports/paper/figures/{name} shows other data: {FIX}"
    # the data is the figure's: Table 2's AIME24 column is what figure 1 plots
    aime = {line.split("|")[1].strip(): line.split("|")[2].strip().strip("*")
            for line in (fresh / "tables" / "table2.md").read_text().splitlines()[2:] if "|" in line}
    ys = {round(y, 1) for p in want["figure1"]["panels"] for _, y in p["points"]}
    assert float(aime["Open-RS3 (50 steps)"]) in ys and float(aime["DeepScaleR-1.5B-Preview"]) in ys


def test_readme_shows_the_current_table_and_figure():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- table2:start \(make report\) -->\n(.*?)\n<!-- table2:end -->", readme, re.S)
    assert block, "README.md lost its Table 2 block"
    assert block.group(1).strip() == (PAPER / "tables" / "table2.md").read_text().strip(), FIX
    for link in ("reports/paper/figures/figure1.png", "reports/paper/tables/table2.md"):
        assert f"]({link})" in readme and (REPO / link).is_file()


def test_readme_quotes_the_audit_as_it_stands():
    readme = (REPO / "README.md").read_text()
    assert "contradicted by Sober-reasoning's 29.7 over 10 seeds (σ 4.8)" in readme
    assert "| Open-RS3 | AIME24 | 46.7 | 29.7 (σ 4.8, 10 seeds): contradicted |" in (PAPER / "tables" / "audit.md").read_text()
    assert "+1.0 [-3.1, +5.1] instead of +17.9" in readme
    assert "| Open-RS3 | AIME24 | +17.9 | Sober-reasoning | +1.0 [-3.1, +5.1] | contradicted |" in \
        (PAPER / "tables" / "audit_gains.md").read_text()
