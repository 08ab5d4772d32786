"""`openrs report` figures and documents: every figure renders to PNG and SVG, each PNG is non-trivial, the HTML
is self-contained, and a user's evaluated checkpoints, metrics.jsonl and cost ledger all reach the report.

The user's artifacts are made here as openrs writes them (openrs_cli/schema.py): results.json (eval), metrics.jsonl + recipe.yaml (train),
and a cost ledger written by the real cost monitor on a fake 4-GPU backend and fake clock.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from openrs_cli.report import build_report
from openrs_cli.schema import header
from tests.unit.test_report_tables import FULL, task, write_results

FIGURES = ["figure1", "benchmarks", "average", "checkpoints", "training-grpo-mini"]


def make_run(root: Path, name: str = "grpo-mini", steps: int = 60) -> Path:
    """A run dir as `openrs train` leaves it: recipe.yaml, metrics.jsonl, cost ledger, checkpoints."""
    from openrs_cli.cost import FakeBackend, FakeClock, FakeDevice, open_monitor
    from openrs_cli.recipes import load_recipe
    from openrs_cli.train.rundir import recipe_yaml_text

    run = root / name
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text(recipe_yaml_text(load_recipe("exp3")))
    lines = []
    for s in range(1, steps + 1):
        f = s / steps
        lines.append(json.dumps({
            **header("metrics"), "step": s, "reward_mean": 0.4 + 0.8 * f + 0.1 * math.sin(s), "reward_std": 0.3,
            "rewards/format/mean": 0.2 + 0.7 * f, "rewards/cosine/mean": 0.2 + 0.1 * f + 0.1 * math.cos(s),
            "completion_length_mean": 2500 - 1200 * f, "completion_length_max": 3584 - 500 * f * (s % 3),
            "max_completion_length": 3584, "truncated_frac": 0.2 * (1 - f), "non_english_frac": 0.02 + 0.1 * f * f,
            "kl": 0.002 * s ** 0.5, "learning_rate": 1e-6, "step_time_s": 60 + 5 * math.sin(s),
            "generation_time_s": 45.0, "optimisation_time_s": 12.0,
        }))
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n{\"truncated")  # a run killed mid-line
    clock = FakeClock()
    mon = open_monitor(run, kind="train", backend=FakeBackend([FakeDevice() for _ in range(4)], clock=clock),
                       clock=clock, interval_s=600, heartbeat_s=3600, thread=False)
    with mon.phase("generation"):
        for _ in range(12):
            clock.advance(600)
            mon.tick()
    mon.close()
    for step in (20, 40, 60):
        (run / f"checkpoint-{step}").mkdir()
    return run


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("report")
    old = Path.cwd()
    os.chdir(root)
    try:
        run = make_run(Path("runs"))
        for step, p in ((20, 0.30), (40, 0.40), (60, 0.35)):
            write_results(run / "evals" / f"checkpoint-{step}" / "results.json", str(run / f"checkpoint-{step}"),
                          {"aime24": task(p, p - 0.09, p + 0.09), "math500": task(p + 0.45, p + 0.42, p + 0.48),
                           "amc23": task(p + 0.3, p + 0.2, p + 0.4)})
        write_results(Path("evals/other/results.json"), "org/Other-7B", FULL, label="Other-7B (yours)")
        res = build_report([Path("evals")], [Path("runs")], Path("out"))
    finally:
        os.chdir(old)
    return root / "out", res


def test_every_figure_png_and_svg_nontrivial(report_dir):
    from matplotlib.image import imread

    out, res = report_dir
    for name in FIGURES:
        png, svg = out / "figures" / f"{name}.png", out / "figures" / f"{name}.svg"
        assert png.stat().st_size > 30_000, name
        img = imread(png)
        assert img.shape[0] > 400 and img.shape[1] > 800, name
        flat = img.reshape(-1, img.shape[-1])
        assert len({tuple(px) for px in flat[:: max(1, len(flat) // 20000)]}) > 20, f"{name} is (nearly) one colour"
        assert (img[..., :3] < 0.5).mean() > 0.005, f"{name} has almost no ink"
        text = svg.read_text()
        assert text.lstrip().startswith("<?xml") and "<svg" in text and svg.stat().st_size > 20_000, name
    assert {p.name for p in res.files} >= {f"{n}.{e}" for n in FIGURES for e in ("png", "svg")}


def test_user_data_reaches_tables_and_figures(report_dir):
    out, res = report_dir
    table2 = (out / "tables" / "table2.csv").read_text()
    assert "Yours,grpo-mini (step 60)," in table2 and "Yours,Other-7B (yours)," in table2
    t34 = (out / "tables" / "table34.csv").read_text().splitlines()
    mine = next(ln for ln in t34 if ln.startswith("grpo-mini,"))
    assert "4x NVIDIA A40" in mine and ",2,8," in mine  # 2 hours wall, 4 GPUs -> 8 GPU-hours, from the ledger
    assert any("skipped 1 unreadable line" in n for n in res.notes)
    # the user run's checkpoint series is in the checkpoint figure's SVG legend
    assert "grpo-mini" in (out / "figures" / "checkpoints.svg").read_text()


def test_report_md_and_self_contained_html(report_dir):
    out, _ = report_dir
    md = (out / "report.md").read_text()
    for name in FIGURES:
        assert f"(figures/{name}.png)" in md
    assert "## Training curves: grpo-mini" in md and "| grpo-mini (step 60) |" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(FIGURES)
    assert 'src="figures/' not in html and "<table>" in html and "<strong>" in html
    assert "</html>" in html


def test_default_report_without_arguments(tmp_path, monkeypatch, cli):
    """What a newcomer runs first, `openrs report`: the paper's own tables and figures, into ./openrs-report/."""
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("report")
    assert code == 0, err
    assert "wrote 21 files to openrs-report/" in out
    rep = tmp_path / "openrs-report"
    figs = sorted(p.name for p in (rep / "figures").iterdir())
    assert figs == sorted([f"{n}.{e}" for n in ("average", "benchmarks", "checkpoints", "figure1")
                           for e in ("png", "svg")] + ["data.json"])
    md = (rep / "report.md").read_text()
    assert "This is the paper's own data" in md and "Open-RS3 (50 steps)" in md
    assert (rep / "report.html").read_text().count("data:image/png;base64,") == 4
    assert (rep / ".openrs-report").exists()


def test_one_colour_per_model_across_figures():
    from openrs_cli.report.data import ModelRow, Score, Series, paper_checkpoints, paper_models
    from openrs_cli.report.figures import colors

    mine = ModelRow(group="Yours", model="run-a (step 20)", scores={"aime24": Score(30.0)}, source="x", user=True,
                    extra={"series": "run-a"})
    rows = paper_models() + [mine]
    series = paper_checkpoints() + [Series(name="run-a", points=[(10, {}), (20, {})], user=True)]
    col = colors(rows, series)
    assert col["exp3"] == col["Open-RS3 (50 steps)"] and col["exp1"] == col["Open-RS1 (100 steps)"]
    assert col["run-a"] == col["run-a (step 20)"]
    paper = [col[r.model] for r in paper_models()]
    assert len(set(paper)) == len(paper) and col["run-a"] not in paper  # every model its own colour


def test_figure1_labels_do_not_overlap(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    from openrs_cli.report.data import ModelRow, Score, paper_checkpoints, paper_models
    from openrs_cli.report.figures import colors, figure1

    rows = paper_models() + [
        ModelRow(group="Yours", model=f"mine-{i}", scores={"aime24": Score(y, 5.0)}, source="x", user=True,
                 size_b=1.5, cost_usd=c, extra={"series": f"mine-{i}"})
        for i, (y, c) in enumerate([(31.0, 40.0), (33.0, 2000.0), (44.0, 3000.0)])]
    fig = Figure(figsize=(13, 5.6), dpi=100)
    FigureCanvasAgg(fig)
    figure1(fig, rows, colors(rows, paper_checkpoints()))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        # Text's own extent (an Annotation's would include its leader line)
        boxes = [Text.get_window_extent(t, renderer) for t in ax.texts if t.get_text()]
        assert len(boxes) >= 6
        frame = ax.get_window_extent(renderer)
        for i, a in enumerate(boxes):
            assert frame.x0 - 1 <= a.x0 and a.x1 <= frame.x1 + 1, "label outside its axes"
            for b in boxes[i + 1:]:
                assert not a.overlaps(b), "two labels overlap"


def test_figures_plot_the_users_data(report_dir):
    """What the figures draw, read from figures/data.json (a plot of the wrong data had the same size and ink)."""
    out, _ = report_dir
    data = json.loads((out / "figures" / "data.json").read_text())
    # checkpoints: the user's series at steps 20/40/60 with AIME24 30/40/35 (pass@1 in %)
    aime = next(p for p in data["checkpoints"]["panels"] if p["title"] == "AIME24")
    assert [[20.0, 30.0], [40.0, 40.0], [60.0, 35.0]] in [ln["xy"] for ln in aime["lines"]]
    # average: the other model's five-benchmark mean (FULL: 60, 85, 70, 30, 50 -> 59.0) is one of the bars
    widths = {round(b[2], 1) for p in data["average"]["panels"] for b in p["bars"]}
    assert 59.0 in widths and 56.3 in widths  # and Open-RS3's published 56.3
    # figure 1: Open-RS3's 46.7 at its published $42
    cost_panel = next(p for p in data["figure1"]["panels"] if "cost" in p["title"])
    assert [42.0, 46.7] in cost_panel["points"]
    # training curves: one reward point per logged step
    curves = data["training-grpo-mini"]["panels"]
    assert any(len(ln["xy"]) == 60 for p in curves for ln in p["lines"])
