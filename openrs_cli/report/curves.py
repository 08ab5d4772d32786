"""Training curves of one run from its metrics.jsonl (the keys train/callbacks.py writes): reward (total and per function),
completion length against max_completion_length, truncated and non-English fractions, KL, time per step.
Missing keys leave their panel marked "not logged"; long runs get a moving average over the raw lines.
"""

from __future__ import annotations

import math
import re


def _smooth(vals: list[float], window: int) -> list[float]:
    out, acc, q = [], 0.0, []
    for v in vals:
        q.append(v)
        acc += v
        if len(q) > window:
            acc -= q.pop(0)
        out.append(acc / len(q))
    return out


def training(fig, run, color: str) -> list[str]:
    """The curves the paper discusses, from one run's metrics.jsonl."""
    from matplotlib.ticker import MaxNLocator

    m = run.metrics
    axes = fig.subplots(2, 3).ravel()
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.08, top=0.9, wspace=0.25, hspace=0.38)
    window = len(m) // 25 if len(m) >= 100 else 1

    def series_of(key, scale=1.0):
        pts = [(r["step"], r[key] * scale) for r in m if isinstance(r.get(key), (int, float))
               and math.isfinite(r[key])]
        return [p[0] for p in pts], [p[1] for p in pts]

    def draw(ax, key, label, c, scale=1.0, ls="-"):
        x, y = series_of(key, scale)
        if not x:
            return False
        if window > 1:
            ax.plot(x, y, color=c, lw=0.8, alpha=0.3, ls=ls)
            ax.plot(x, _smooth(y, window), color=c, lw=1.8, ls=ls, label=label)
        else:
            ax.plot(x, y, color=c, lw=1.8, ls=ls, marker="o" if len(x) < 30 else None, ms=3, label=label)
        return True

    fn_keys = sorted({k for r in m for k in r if re.fullmatch(r"rewards/.+/mean", k)})
    fn_colors = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02"]
    panels = [
        ("Reward (total, mean over completions)", "reward", [("reward_mean", "reward", color, 1.0, "-")]),
        ("Reward per function", "reward",
         [(k, k.split("/")[1], fn_colors[i % len(fn_colors)], 1.0, "-") for i, k in enumerate(fn_keys)]),
        ("Completion length", "tokens", [("completion_length_mean", "mean", color, 1.0, "-"),
                                         ("completion_length_max", "max", color, 1.0, ":")]),
        ("Truncated and non-English completions", "% of completions",
         [("truncated_frac", "truncated (hit the limit)", "#d7191c", 100.0, "-"),
          ("non_english_frac", "non-English", "#2c7bb6", 100.0, "-")]),
        ("KL divergence to the reference model", "KL", [("kl", "KL", color, 1.0, "-")]),
        ("Time per step", "seconds", [("step_time_s", "step", color, 1.0, "-"),
                                      ("generation_time_s", "generation", "#1b9e77", 1.0, "--"),
                                      ("optimisation_time_s", "optimisation", "#d95f02", 1.0, "--")]),
    ]
    missing = []
    for ax, (title, ylabel, lines) in zip(axes, panels, strict=False):
        drawn = [draw(ax, k, lab, c, sc, ls) for k, lab, c, sc, ls in lines]
        if title == "Reward (total, mean over completions)" and any(drawn):
            x, mu = series_of("reward_mean")
            xs, sd = series_of("reward_std")
            if x == xs:
                lo = [a - b for a, b in zip(mu, sd, strict=False)]
                hi = [a + b for a, b in zip(mu, sd, strict=False)]
                ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0, label="± std across completions")
                drawn.append(True)
        if title == "Completion length":
            _, limit = series_of("max_completion_length")
            if limit:
                ax.axhline(limit[-1], color="#d7191c", ls="--", lw=1.2, label=f"max_completion_length {limit[-1]:.0f}")
                drawn.append(True)
        if ylabel in ("tokens", "% of completions", "seconds") and any(drawn):
            top = max(ax.get_ylim()[1], 1.0) * (1.08 if ylabel == "tokens" else 1.0)
            ax.set_ylim(bottom=-0.02 * top, top=top)  # from zero, so a zero line stays visible
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("Training step")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if any(drawn):
            if len([d for d in drawn if d]) > 1 or title == "Reward per function":
                ax.legend(fontsize=7, loc="best", frameon=False)
        else:
            missing.append(title.lower())
            ax.text(0.5, 0.5, "not logged", transform=ax.transAxes, ha="center", va="center", color="#888888")
            ax.set_xticks([])
            ax.set_yticks([])
    smooth = f"; thick lines: moving average over {window} steps" if window > 1 else ""
    fig.suptitle(f"Training curves: {run.name} ({len(m)} logged steps{smooth})", fontsize=12)
    return [f"run {run.name}: {', '.join(missing)} not in metrics.jsonl"] if missing else []
