"""The claims audit: each Table 2 number of Open-RS1/2/3, and each gain over the base model, against independent
re-evaluations (paper_data/reevaluations.csv) and your own evals of the same models, labelled by a stated rule.

Every paper number is one run of one sample per problem. A re-evaluation gives a mean `m` over `n` seeds with a
spread `s` of single-seed scores (Sober-reasoning), or one single-sample run (its spread unknown: the binomial
bound below stands in). Pure and stdlib only, like `data`.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass

from openrs_cli.report.data import BENCH_TITLES, BENCHMARKS, PAPER_DIR, ModelRow, _num, bench_problems

BASE_MODEL = "DeepSeek-R1-Distill-Qwen-1.5B"
AUDITED = ("Open-RS1", "Open-RS2", "Open-RS3")
STUDY_TITLES = {"sober-reasoning": "Sober-reasoning", "open-rs issue 11": "open-rs #11", "tina": "Tina"}

RULE = (
    "Each paper number is a single run, so it is compared with the spread of a single run around the "
    "re-evaluation's mean: sigma = s * sqrt(1 + 1/n) for a mean over n seeds whose single-seed scores spread by s "
    "(Sober-reasoning); for a single-sample re-run (open-rs #11, Tina), whose spread is not published, "
    "sigma = sqrt(2) * b with b = 100 * sqrt(p (1 - p) / N), the binomial bound on one run's spread at the score p "
    "over the benchmark's N problems; for your own eval, sigma = sqrt(s^2 + (ci / 1.96)^2) from your 95% CI and the "
    "single-run spread (Sober-reasoning's s where published, else b). With d = paper - re-evaluation: "
    "**reproduced** if |d| <= sigma, **inside noise** if sigma < |d| <= 2 sigma (the paper's run could be a lucky "
    "or unlucky draw), **contradicted** if |d| > 2 sigma."
)
GAIN_RULE = (
    "The paper's gain is its model's number minus its base model's (DeepSeek-R1-Distill-Qwen-1.5B), both single "
    "runs. It is re-tested as the same difference in each study that evaluated both models: Delta = m1 - m0 with a "
    "95% interval Delta +- 1.96 sqrt(s1^2/n1 + s0^2/n0) (single-sample studies: s = b, n = 1). "
    "**reproduced** if the interval holds the paper's gain and excludes 0, **inside noise** if it holds both the "
    "paper's gain and 0 (the data cannot tell), **contradicted** if the paper's gain lies outside it."
)


@dataclass(frozen=True)
class Evidence:
    source: str  # study title, or "yours: <model>"
    score: float  # mean over seeds/samples (%)
    sigma: float  # spread used by the rule (percent points)
    seeds: int | None
    label: str


@dataclass(frozen=True)
class CellAudit:
    model: str  # Open-RS1..3
    bench: str
    paper: float
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True)
class GainAudit:
    model: str
    bench: str
    paper_gain: float
    source: str
    delta: float
    lo: float
    hi: float
    label: str


def reevaluations() -> list[dict]:
    with open(PAPER_DIR / "reevaluations.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def binomial_sd(score: float, bench: str) -> float:
    """Upper bound (percent points) on the seed-to-seed spread of one single-sample run scoring `score`."""
    p = min(max(score / 100, 0.0), 1.0)
    return 100 * math.sqrt(max(p * (1 - p), 1e-4) / bench_problems()[bench])  # N: the bundled set's size


def cell_label(d: float, sigma: float) -> str:
    if abs(d) <= sigma:
        return "reproduced"
    return "inside noise" if abs(d) <= 2 * sigma else "contradicted"


def gain_label(paper_gain: float, lo: float, hi: float) -> str:
    if not lo <= paper_gain <= hi:
        return "contradicted"
    return "inside noise" if lo <= 0 <= hi else "reproduced"


def _spread(r: dict, bench: str) -> tuple[float, int]:
    """(single-run spread s, seeds n) of a re-evaluation row."""
    n = int(_num(r.get("seeds", "")) or 1)
    s = _num(r.get("std_across_seeds", ""))
    return (s, n) if s is not None else (binomial_sd(float(r["score"]), bench), 1)


def _short(name: str) -> str:
    return name.split(" (")[0]


def _user_matches(user: ModelRow, short: str) -> bool:
    """A user row evaluated the released checkpoint (hub id knoveleng/Open-RS3, or a path ending in it)."""
    name = user.model.lower().rstrip("/")
    return name == short.lower() or name.endswith("/" + short.lower())


def audit(paper_rows: list[ModelRow], user_rows: list[ModelRow] = ()) -> tuple[list[CellAudit], list[GainAudit]]:
    """The audit of every Open-RS Table 2 cell and of every gain over the base model."""
    paper = {_short(r.model): r for r in paper_rows if not r.user}
    re_rows = reevaluations()
    by = {(r["study"], r["model"], r["benchmark"]): r for r in re_rows}
    studies = list(dict.fromkeys(r["study"] for r in re_rows))
    cells, gains = [], []
    for short in AUDITED:
        row = paper.get(short)
        if row is None:
            continue
        for bench, _ in BENCHMARKS:
            if bench not in row.scores:
                continue
            claimed = row.scores[bench].mean
            ev = []
            for study in studies:
                r = by.get((study, short, bench))
                if r is None:
                    continue
                s, n = _spread(r, bench)
                sigma = s * math.sqrt(1 + 1 / n) if n > 1 else math.sqrt(2) * s
                m = float(r["score"])
                ev.append(Evidence(STUDY_TITLES.get(study, study), m, sigma, n, cell_label(claimed - m, sigma)))
            for u in user_rows:
                sc = u.scores.get(bench)
                if sc is None or not _user_matches(u, short):
                    continue
                sober = by.get(("sober-reasoning", short, bench))
                single = _num(sober["std_across_seeds"]) if sober else None
                single = single if single is not None else binomial_sd(sc.mean, bench)
                sigma = math.sqrt(single**2 + ((sc.ci or 0) / 1.96) ** 2)
                ev.append(Evidence(f"yours: {u.model}", sc.mean, sigma, None, cell_label(claimed - sc.mean, sigma)))
            cells.append(CellAudit(short, bench, claimed, tuple(ev)))
            base = paper.get(BASE_MODEL)
            if base is None or bench not in base.scores:
                continue
            paper_gain = claimed - base.scores[bench].mean
            for study in studies:
                r1, r0 = by.get((study, short, bench)), by.get((study, BASE_MODEL, bench))
                if r1 is None or r0 is None:
                    continue
                (s1, n1), (s0, n0) = _spread(r1, bench), _spread(r0, bench)
                delta = float(r1["score"]) - float(r0["score"])
                half = 1.96 * math.sqrt(s1**2 / n1 + s0**2 / n0)
                gains.append(GainAudit(short, bench, paper_gain, STUDY_TITLES.get(study, study), delta,
                                       delta - half, delta + half, gain_label(paper_gain, delta - half, delta + half)))
    return cells, gains


def _ev_text(e: Evidence) -> str:
    seeds = f", {e.seeds} seeds" if e.seeds and e.seeds > 1 else ""
    return f"{e.score:.1f} (σ {e.sigma:.1f}{seeds}): {e.label}"


def cells_table(cells: list[CellAudit], fmt: str = "md") -> str:
    sources = list(dict.fromkeys(e.source for c in cells for e in c.evidence))
    if fmt == "csv":
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["model", "benchmark", "paper", "evidence", "score", "sigma", "seeds", "label"])
        for c in cells:
            for e in c.evidence:
                w.writerow([c.model, c.bench, c.paper, e.source, e.score, round(e.sigma, 2), e.seeds or "", e.label])
        return buf.getvalue()
    head = "| Model | Benchmark | Paper | " + " | ".join(sources) + " |"
    lines = [head, "|---|---|---:|" + "---|" * len(sources)]
    for c in cells:
        got = {e.source: _ev_text(e) for e in c.evidence}
        lines.append(f"| {c.model} | {BENCH_TITLES[c.bench]} | {c.paper:.1f} | "
                     + " | ".join(got.get(s, "–") for s in sources) + " |")
    return "\n".join(lines) + "\n"


def gains_table(gains: list[GainAudit], fmt: str = "md") -> str:
    if fmt == "csv":
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["model", "benchmark", "paper_gain", "study", "delta", "ci95_low", "ci95_high", "label"])
        for g in gains:
            w.writerow([g.model, g.bench, round(g.paper_gain, 2), g.source, round(g.delta, 2), round(g.lo, 2),
                        round(g.hi, 2), g.label])
        return buf.getvalue()
    lines = ["| Model | Benchmark | Paper's gain | Study | Re-tested gain (95% interval) | Label |",
             "|---|---|---:|---|---:|---|"]
    for g in gains:
        lines.append(f"| {g.model} | {BENCH_TITLES[g.bench]} | {g.paper_gain:+.1f} | {g.source} | "
                     f"{g.delta:+.1f} [{g.lo:+.1f}, {g.hi:+.1f}] | {g.label} |")
    return "\n".join(lines) + "\n"


def _counts(labels) -> str:
    from collections import Counter

    c = Counter(labels)
    return ", ".join(f"{c[k]} {k}" for k in ("reproduced", "inside noise", "contradicted") if c[k]) or "none"


def summary(cells: list[CellAudit], gains: list[GainAudit]) -> str:
    """One sentence: how many labels of each kind, for the report's text."""
    n_cells = sum(len(c.evidence) for c in cells)
    return (f"Of {n_cells} comparisons of a published number with a re-evaluation: "
            f"{_counts(e.label for c in cells for e in c.evidence)}. Of {len(gains)} re-tested gains over the base "
            f"model: {_counts(g.label for g in gains)}.")
