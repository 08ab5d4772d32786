"""The report's figures (matplotlib, Agg, no pyplot state): Figure 1, pass@1 per benchmark, average pass@1,
eval over checkpoints, and training curves per run (drawn by `curves.py`). Every model keeps one colour in
every figure (`colors`).

`render_all(...)` draws each figure and returns `RenderedFigure`s holding the PNG and/or SVG bytes (the caller
writes them; the HTML embeds the PNG). matplotlib is imported inside functions only, so importing openrs stays
fast, and its global settings are left alone (rc_context, no pyplot).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from openrs_cli.report.curves import training
from openrs_cli.report.data import BENCH_TITLES, BENCHMARKS, CHECKPOINT_BENCHES, ModelRow, Series
from openrs_cli.report.labels import place_labels

# Colour families per Table 2 group (shades in row order); Open-RS3 gets the paper's highlight red.
PALETTE = {
    "General": ["#525252", "#969696"],
    "7B": ["#00441b", "#238b45", "#74c476", "#a1d99b"],
    "1.5B": ["#08306b", "#2171b5", "#6baed6"],
    "Open-RS": ["#f59e0b", "#9a3412", "#dc2626"],
    "1.7B": ["#01665e"],
    "Extension": ["#35978f", "#80cdc1"],
    "Yours": ["#7b3294", "#e7298a", "#542788", "#c51b7d", "#9970ab", "#dd3497"],
}
OTHER = ["#666666", "#999999"]
LINESTYLES = [("-", "o"), ("--", "s"), ("-.", "^"), (":", "v")]


def _dark(color: str, amount: float = 0.35) -> str:
    """The colour mixed with black, for text in that colour on white."""
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{int(v * (1 - amount)):02x}" for v in (r, g, b))
DPI = 150


@dataclass
class RenderedFigure:
    name: str
    title: str
    caption: str
    data: dict[str, bytes] = field(default_factory=dict)  # ext -> encoded image
    notes: list[str] = field(default_factory=list)
    plotted: dict = field(default_factory=dict)  # what was drawn, as data (see `plotted`)


def _num(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if v != v else round(v, 4)


def plotted(fig) -> dict:
    """The data a figure shows, independent of how matplotlib renders it: per panel its title, axis labels and
    scales, tick labels, and every line, point, bar and text drawn (text positions left out: label placement is
    layout, not data). Written next to the images as figures/data.json; the reports/ staleness test compares it."""
    from matplotlib.collections import LineCollection, PathCollection
    from matplotlib.patches import Rectangle

    panels = []
    for ax in fig.axes:
        p = {"title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
             "xscale": ax.get_xscale(), "yticklabels": [t.get_text() for t in ax.get_yticklabels()],
             "lines": [], "points": [], "bars": [], "errorbars": [], "texts": sorted(t.get_text() for t in ax.texts)}
        for ln in ax.get_lines():
            xy = [[_num(a), _num(b)] for a, b in ln.get_xydata()]
            p["lines"].append({"color": str(ln.get_color()), "style": str(ln.get_linestyle()), "xy": xy})
        for c in ax.collections:
            if isinstance(c, PathCollection):
                p["points"] += [[_num(a), _num(b)] for a, b in c.get_offsets()]
            elif isinstance(c, LineCollection):
                p["errorbars"] += [[[_num(a), _num(b)] for a, b in seg] for seg in c.get_segments()]
        for patch in ax.patches:
            if isinstance(patch, Rectangle):
                p["bars"].append([_num(patch.get_x()), _num(patch.get_y()), _num(patch.get_width()),
                                  _num(patch.get_height())])
        panels.append(p)
    return {"suptitle": fig._suptitle.get_text() if fig._suptitle else None, "panels": panels,
            "legend": [t.get_text() for leg in fig.legends for t in leg.get_texts()]}


def colors(rows: list[ModelRow], series: list[Series]) -> dict[str, str]:
    """One colour per model name (and per checkpoint series: a paper experiment takes its released model's)."""
    out: dict[str, str] = {}
    used: dict[str, int] = {}
    for r in rows:
        fam = PALETTE.get(r.group, OTHER)
        out[r.model] = fam[used.get(r.group, 0) % len(fam)]
        used[r.group] = used.get(r.group, 0) + 1
        if r.user:
            out[r.extra.get("series", r.model)] = out[r.model]
    for s in series:
        if s.name not in out:
            if s.released_model in out:
                out[s.name] = out[s.released_model]
            else:
                fam = PALETTE["Yours"] if s.user else OTHER
                out[s.name] = fam[used.get("Yours" if s.user else "", 0) % len(fam)]
                used["Yours" if s.user else ""] = used.get("Yours" if s.user else "", 0) + 1
    return out


def _marker(r: ModelRow) -> tuple[str, float]:
    if r.user:
        return "D", 60
    return ("*", 260) if r.group == "Open-RS" else ("o", 70)


def figure1(fig, rows: list[ModelRow], col: dict[str, str]) -> list[str]:
    """AIME24 vs model size and vs training cost (log x), as the paper's Figure 1; your models with 95% CIs."""
    notes = []
    axes = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.06, right=0.985, bottom=0.2, top=0.9, wspace=0.16)
    shown = [r for r in rows if (r.figure1 or r.user) and "aime24" in r.scores]
    refs = [r for r in shown if not r.user and r.size_b is None and r.cost_usd is None]
    panels = [(axes[0], "size_b", "Model size (billion parameters, log scale)", "AIME24 vs model size"),
              (axes[1], "cost_usd", "Training cost (US$, log scale)", "AIME24 vs training cost")]
    for ax, attr, xlabel, title in panels:
        pts = [r for r in shown if getattr(r, attr) is not None]
        for r in shown:
            if r.user and getattr(r, attr) is None:
                why = ("unknown model size (no `<N>B` in its name or base model, no local safetensors)"
                       if attr == "size_b" else "unknown training cost: " + r.extra.get("cost_note", "no cost data"))
                notes.append(f"Figure 1: {r.model} left off the {title} panel: {why}")
        ys = [r.scores["aime24"].mean + sign * (r.scores["aime24"].ci or 0) for r in shown for sign in (-1, 1)]
        xs = [getattr(r, attr) for r in pts] or [1.0]
        ax.set_xscale("log")
        lo, hi = min(xs), max(xs)
        ax.set_xlim(lo / 2.2, hi * (6 if attr == "cost_usd" else 4))
        ax.set_ylim(max(0, min(ys) - 8), min(100, max(ys) + 8))
        for r in refs:  # no size or cost disclosed: a reference line, named in the legend
            ax.axhline(r.scores["aime24"].mean, color=col[r.model], ls="--", lw=1.2, zorder=1)
        groups: dict[tuple[float, float], list[ModelRow]] = {}
        for r in pts:
            groups.setdefault((round(getattr(r, attr), 6), round(r.scores["aime24"].mean, 6)), []).append(r)
        items = []
        for (x, y), members in groups.items():
            for r in members:
                m, s = _marker(r)
                ci = r.scores["aime24"].ci
                if ci:
                    ax.errorbar(x, y, yerr=ci, fmt="none", ecolor=col[r.model], elinewidth=1.3, capsize=4, zorder=2)
                ax.scatter([x], [y], marker=m, s=s, color=col[r.model], edgecolor="white", linewidth=0.8, zorder=3)
            text = "\n".join(f"{r.model}" for r in members) + f"  {y:.1f}"
            cost = "" if attr != "cost_usd" else (f" (${x:,.0f})" if x >= 1 else f" (${x:.2g})")
            items.append((x, y, text + cost, _dark(col[members[-1].model]),
                           any(r.group == "Open-RS" for r in members)))
        place_labels(ax, items, fontsize=8)
        _log_ticks(ax, dollars=attr == "cost_usd")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("AIME24 pass@1 (%)")
        ax.set_title(title, fontsize=11)
        ax.grid(True, which="major", alpha=0.3)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="*", ls="", ms=14, color=PALETTE["Open-RS"][-1], label="Open-RS (the paper)"),
               Line2D([], [], marker="o", ls="", ms=8, color=PALETTE["1.5B"][1], label="other published models")]
    handles += [Line2D([], [], ls="--", lw=1.2, color=col[r.model],
                       label=f"{r.model} {r.scores['aime24'].mean:.1f} (size and cost not disclosed)") for r in refs]
    if any(r.user for r in shown):
        handles.append(Line2D([], [], marker="D", ls="-", ms=7, color=PALETTE["Yours"][0],
                              label="your models (bars: 95% CI)"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), frameon=False, fontsize=9)
    fig.suptitle("AIME24 pass@1 against model size and training cost", fontsize=13)
    return notes


def _log_ticks(ax, dollars: bool) -> None:
    """Plain numbers on a log axis (1.5, 7, 70 / $42, $1,000) instead of powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = ax.get_xlim()
    few_decades = math.log10(hi / lo) <= 2.5
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if few_decades and not dollars else (1.0,)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: (f"${v:,.0f}" if v >= 1 else f"${v:g}") if dollars
                                               else f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _val_text(r: ModelRow, key: str) -> str:
    s = r.avg if key == "avg" else r.scores.get(key)
    if s is None:
        return ""
    return (f"{s.mean:.1f} ± {s.ci:.1f}" if s.ci else f"{s.mean:.1f}") + (f" ({s.of})" if s.of else "")


def _y_layout(rows: list[ModelRow]) -> list[float]:
    """Top-to-bottom positions in table order with a gap between groups."""
    ys, y, prev = [], 0.0, None
    for r in rows:
        if prev is not None and r.group != prev and not (r.group == "Extension" and prev == "1.7B"):
            y += 0.6
        ys.append(-y)
        y += 1
        prev = r.group
    return ys


def benchmarks(fig, rows: list[ModelRow], col: dict[str, str]) -> list[str]:
    """pass@1 of every model on each benchmark: one panel per benchmark, models in Table 2 order."""
    ys = _y_layout(rows)
    axes = fig.subplots(1, len(BENCHMARKS), sharey=True)
    fig.subplots_adjust(left=0.17, right=0.99, bottom=0.08, top=0.9, wspace=0.08)
    for ax, (key, title) in zip(axes, BENCHMARKS, strict=False):
        for y, r in zip(ys, rows, strict=False):
            s = r.scores.get(key)
            if s is None:
                ax.text(1, y, "not evaluated" if r.user else "not reported", va="center", fontsize=7,
                        color="#888888")
                continue
            ax.barh(y, s.mean, height=0.8, color=col[r.model], xerr=s.ci or None,
                    error_kw={"elinewidth": 1, "capsize": 2, "ecolor": "#333333"})
            ax.text(s.mean + (s.ci or 0) + 1.2, y, _val_text(r, key), va="center", fontsize=7)
        ax.set_xlim(0, 118)
        ax.set_xticks([0, 25, 50, 75, 100])
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("pass@1 (%)")
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_axisbelow(True)
    axes[0].set_yticks(ys, [r.model for r in rows], fontsize=8)
    for lbl, r in zip(axes[0].get_yticklabels(), rows, strict=False):
        if r.user or r.group == "Open-RS":
            lbl.set_fontweight("bold")
    axes[0].set_ylim(min(ys) - 0.8, 0.8)
    fig.suptitle("Zero-shot pass@1 per benchmark (bars: 95% CI where known)", fontsize=13)
    return []


def average(fig, rows: list[ModelRow], col: dict[str, str]) -> list[str]:
    """Average pass@1 over the five benchmarks, best first; models missing a benchmark are listed below."""
    have = sorted((r for r in rows if r.avg is not None), key=lambda r: r.avg.mean)
    missing = [r.model for r in rows if r.avg is None]
    ax = fig.subplots()
    fig.subplots_adjust(left=0.3, right=0.97, bottom=0.14 if missing else 0.09, top=0.93)
    ys = list(range(len(have)))
    for y, r in zip(ys, have, strict=False):
        ax.barh(y, r.avg.mean, height=0.75, color=col[r.model], xerr=r.avg.ci or None,
                error_kw={"elinewidth": 1, "capsize": 3, "ecolor": "#333333"})
        ax.text(r.avg.mean + (r.avg.ci or 0) + 0.8, y, _val_text(r, "avg"), va="center", fontsize=8)
    ax.set_yticks(ys, [r.model for r in have], fontsize=9)
    for lbl, r in zip(ax.get_yticklabels(), have, strict=False):
        if r.user or r.group == "Open-RS":
            lbl.set_fontweight("bold")
    top = max((r.avg.mean + (r.avg.ci or 0) for r in have), default=50)
    ax.set_xlim(0, min(100, top + 12) if top < 88 else 105)
    ax.set_ylim(-0.7, len(have) - 0.3)
    ax.set_xlabel("Average pass@1 over AIME24, MATH-500, AMC23, Minerva, OlympiadBench (%)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title("Average performance", fontsize=13)
    if missing:
        fig.text(0.01, 0.015, "Not shown (not every benchmark reported or evaluated): " + ", ".join(missing),
                 fontsize=8, color="#555555")
    return []


def checkpoints(fig, series: list[Series], col: dict[str, str]) -> list[str]:
    """AIME24 / MATH-500 / AMC23 pass@1 against training step for the paper's exp1-3 and your runs."""
    axes = fig.subplots(1, len(CHECKPOINT_BENCHES))
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.24, top=0.86, wspace=0.2)
    style = {s.name: LINESTYLES[i % len(LINESTYLES)] for i, s in enumerate(series)}
    for ax, key in zip(axes, CHECKPOINT_BENCHES, strict=False):
        for s in series:
            pts = [(step, sc[key]) for step, sc in s.points if key in sc]
            if not pts:
                continue
            x = [p[0] for p in pts]
            y = [p[1].mean for p in pts]
            c = col[s.name]
            ls, mk = style[s.name]
            if s.user:
                ax.errorbar(x, y, yerr=[p[1].ci or 0 for p in pts], color=c, marker="D", ms=5, lw=1.8, ls=ls,
                            capsize=3)
            else:
                ax.plot(x, y, color=c, marker=mk, ms=4.5, lw=1.8, ls=ls)
            if s.released_step is not None and s.released_step in x:
                i = x.index(s.released_step)
                ax.scatter([x[i]], [y[i]], marker="*", s=240, color=c, edgecolor="black", linewidth=0.6, zorder=4)
        ax.set_title(BENCH_TITLES[key], fontsize=11)
        ax.set_xlabel("Training step")
        ax.set_ylabel("pass@1 (%)")
        ax.grid(True, alpha=0.3)
    from matplotlib.lines import Line2D

    handles = []
    for s in series:
        label = s.name
        if s.released_model:
            label += f" (★ step {s.released_step} = {s.released_model.split(' (')[0]})"
        elif s.user:
            label += " (yours; bars: 95% CI)"
        ls, mk = style[s.name]
        handles.append(Line2D([], [], color=col[s.name], ls=ls, marker="D" if s.user else mk, label=label))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 3), frameon=False, fontsize=9)
    fig.suptitle("Evaluation over training checkpoints (paper: single-sample scores from the open-rs logs)",
                 fontsize=12)
    return []


def render_all(rows, series, runs, exts: list[str], on_progress: Callable[[str], None] | None = None,
               ) -> list[RenderedFigure]:
    """Draw every figure and encode it in each of `exts` (png, svg); bytes only, the caller writes the files."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    col = colors(rows, series)
    n = len(rows)
    specs = [
        ("figure1", "Figure 1: AIME24 vs model size and training cost", (13, 5.6), lambda f: figure1(f, rows, col),
         "AIME24 pass@1 (%) against parameter count and training cost (both log scale), as in the paper's Figure 1. "
         "o1-preview is a dashed reference line (its size and cost are not disclosed)."),
        ("benchmarks", "Pass@1 per benchmark", (15, 1.6 + 0.27 * n), lambda f: benchmarks(f, rows, col),
         "Zero-shot pass@1 (%) of every model on each benchmark, in Table 2 order; bold names: Open-RS and yours."),
        ("average", "Average pass@1", (10, 1.4 + 0.3 * n), lambda f: average(f, rows, col),
         "Plain mean of the five benchmarks (Table 2's Avg), best first."),
        ("checkpoints", "Evaluation over training checkpoints", (14, 5), lambda f: checkpoints(f, series, col),
         "pass@1 (%) of each saved checkpoint; stars mark the checkpoints the paper released as Open-RS1-3."),
    ]
    for run in runs:
        if run.metrics:
            name = "training-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", run.name)
            specs.append((name, f"Training curves: {run.name}", (14, 7.5),
                          lambda f, run=run: training(f, run, col.get(run.name, PALETTE["Yours"][0])),
                          f"From {run.name}/metrics.jsonl: reward, completion length (dashed: the length limit), "
                          "truncated and non-English fractions, KL, time per step."))
    out = []
    style = {"svg.hashsalt": "openrs", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False}
    with matplotlib.rc_context(style):  # the caller's own matplotlib settings are left as they were
        for name, title, size, draw, caption in specs:
            if on_progress:
                on_progress(f"figure {name}")
            fig = Figure(figsize=size, dpi=DPI)
            FigureCanvasAgg(fig)  # Agg, without pyplot's global state
            rf = RenderedFigure(name=name, title=title, caption=caption, notes=draw(fig) or [])
            rf.plotted = plotted(fig)
            for ext in exts:
                buf = io.BytesIO()
                fig.savefig(buf, format=ext, dpi=DPI, metadata={"Date": None} if ext == "svg" else {"Software": None})
                rf.data[ext] = buf.getvalue()
            out.append(rf)
    return out
