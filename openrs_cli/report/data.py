"""The report's data model and the published numbers shipped in `paper_data/` (see its SOURCES.md).

`paper_models()` gives Table 2 joined with `models.csv` (size, Figure 1 membership, cost row),
`paper_costs()` Tables 3/4, `paper_checkpoints()` the per-checkpoint scores of exp1-3. Stdlib only (csv), so
reading them is instant; percentages stay percentages (0-100).
"""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

PAPER_DIR = Path(__file__).resolve().parent / "paper_data"

# Table 2 columns: (key in the data, heading). Task names written by `openrs eval` map onto these keys.
BENCHMARKS: list[tuple[str, str]] = [
    ("aime24", "AIME24"),
    ("math_500", "MATH-500"),
    ("amc23", "AMC23"),
    ("minerva", "Minerva"),
    ("olympiadbench", "OlympiadBench"),
]
BENCH_TITLES = dict(BENCHMARKS)
TASK_ALIASES = {
    "aime24": "aime24", "aime_24": "aime24", "aime": "aime24",
    "math500": "math_500", "math_500": "math_500", "math-500": "math_500",
    "amc23": "amc23", "amc_23": "amc23", "amc": "amc23",
    "minerva": "minerva", "minerva_math": "minerva", "minervamath": "minerva",
    "olympiadbench": "olympiadbench", "olympiad_bench": "olympiadbench", "olympiad": "olympiadbench",
}
_BUNDLED = {"aime24": "aime24", "math_500": "math500", "amc23": "amc23", "minerva": "minerva",
            "olympiadbench": "olympiadbench"}


@functools.lru_cache(maxsize=1)
def bench_problems() -> dict[str, int]:
    """Problems per benchmark: the rows of the bundled evaluation sets (30/500/40/272/675)."""
    from openrs_cli import evalsets

    out = {}
    for key, name in _BUNDLED.items():
        with open(evalsets.path(name, verify=False), "rb") as f:
            out[key] = sum(1 for line in f if line.strip())
    return out


CHECKPOINT_BENCHES = ["aime24", "math_500", "amc23"]  # the three the paper's logs score per checkpoint

# How the paper's groups (and the user's) are titled in Table 2, in display order.
GROUP_TITLES = {
    "General": "General models",
    "7B": "7B models",
    "1.5B": "1.5B models",
    "Open-RS": "Open-RS (the paper)",
    "1.7B": "Reproductions and Qwen3-1.7B (open-rs fork README)",
    "Extension": "Reproductions and Qwen3-1.7B (open-rs fork README)",
    "Yours": "Your models",
}


@dataclass(frozen=True)
class Score:
    """A pass@1 in percent, with the half-width of its 95% CI in percent points when known."""

    mean: float
    ci: float | None = None
    of: str | None = None  # a partial score: what it covers ("5/30 problems"); None for the whole benchmark


@dataclass
class ModelRow:
    """One Table 2 row (paper or user) with what the figures need."""

    group: str
    model: str
    scores: dict[str, Score]
    source: str
    avg: Score | None = None
    size_b: float | None = None
    cost_usd: float | None = None
    figure1: bool = False
    user: bool = False
    run_dir: Path | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class CostRow:
    """One Tables 3/4 row. Strings are shown as published; numbers may be None (not reported)."""

    model: str
    base_model: str
    sft_data: str
    rm_data: str
    reward_model: str
    rl_data: str
    hardware: str
    hours: float | None
    gpu_hours: float | None
    cost_usd: float | None
    source: str
    user: bool = False


@dataclass
class Series:
    """Scores of one training run over checkpoints: name -> [(step, {bench: Score})] sorted by step."""

    name: str
    points: list[tuple[int, dict[str, Score]]]
    user: bool = False
    released_step: int | None = None
    released_model: str | None = None


def _num(text: str) -> float | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _read(name: str) -> list[dict[str, str]]:
    with open(PAPER_DIR / name, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def paper_models() -> list[ModelRow]:
    """Table 2 (paper + fork extension rows) in published order, joined with models.csv and the cost rows."""
    meta = {r["model"]: r for r in _read("models.csv")}
    costs = {c.model: c for c in paper_costs()}
    rows = []
    for r in _read("table2_performance.csv"):
        scores = {key: Score(v) for key, _ in BENCHMARKS if (v := _num(r[key])) is not None}
        avg = _num(r["avg"])
        m = meta.get(r["model"], {})
        cost_row = costs.get(m.get("cost_row") or "")
        rows.append(ModelRow(
            group=r["group"], model=r["model"], scores=scores, source=r["source"],
            avg=Score(avg) if avg is not None else None, size_b=_num(m.get("size_b", "")),
            cost_usd=cost_row.cost_usd if cost_row else None, figure1=m.get("figure1") == "yes",
        ))
    return rows


def hub_sizes() -> dict[str, float]:
    """Hub id (lower case) -> parameter count in billions, for the published models models.csv names."""
    return {r["hub_id"].lower(): v for r in _read("models.csv") if r.get("hub_id") and (v := _num(r["size_b"]))}


def paper_costs() -> list[CostRow]:
    """Tables 3 and 4 as published."""
    return [
        CostRow(model=r["model"], base_model=r["base_model"], sft_data=r["sft_data"], rm_data=r["rm_data"],
                reward_model=r["reward_model"], rl_data=r["rl_data"], hardware=r["hardware"], hours=_num(r["hours"]),
                gpu_hours=_num(r["gpu_hours"]), cost_usd=_num(r["cost_usd"]), source=r["source"])
        for r in _read("table34_costs.csv")
    ]


def implied_rates() -> dict[str, float]:
    """USD per GPU-hour implied by the paper's Tables 3/4 (cost / GPU-hours), per GPU type, rounded to cents."""
    rates: dict[str, list[float]] = {}
    for r in _read("table34_costs.csv"):
        gpu, hours, cost = r.get("gpu_type", ""), _num(r["gpu_hours"]), _num(r["cost_usd"])
        if gpu and hours and cost:
            rates.setdefault(gpu, []).append(cost / hours)
    return {gpu: round(sum(v) / len(v), 2) for gpu, v in rates.items()}


def paper_checkpoints() -> list[Series]:
    """exp1-3 per-checkpoint AIME24/MATH-500/AMC23 scores; `released_step` is the checkpoint the paper released."""
    by_exp: dict[str, list[tuple[int, dict[str, Score]]]] = {}
    for r in _read("checkpoints.csv"):
        scores = {k: Score(v) for k in CHECKPOINT_BENCHES if (v := _num(r[k])) is not None}
        by_exp.setdefault(r["experiment"], []).append((int(r["step"]), scores))
    released = {}
    for m in _read("models.csv"):  # checkpoint "exp1:100" = the released model is exp1's step 100
        if m.get("checkpoint"):
            exp, step = m["checkpoint"].split(":")
            released[exp] = (int(step), m["model"])
    return [Series(name=exp, points=sorted(pts, key=lambda p: p[0]), released_step=released.get(exp, (None, None))[0],
                   released_model=released.get(exp, (None, None))[1])
            for exp, pts in by_exp.items()]


def mean_score(scores: dict[str, Score], keys: list[str]) -> Score | None:
    """Plain mean over `keys` (None unless all are present); CI half-widths combine as independent estimates."""
    if not all(k in scores for k in keys):
        return None
    vals = [scores[k] for k in keys]
    mean = sum(s.mean for s in vals) / len(vals)
    ci = math.sqrt(sum(s.ci**2 for s in vals)) / len(vals) if all(s.ci is not None for s in vals) else None
    return Score(mean, ci)
