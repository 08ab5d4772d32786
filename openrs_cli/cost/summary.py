"""Summaries of cost ledgers: merge every host's ledger of a run, price it, and set it beside the paper's table.

Merging is by GPU UUID: each GPU's coverage intervals (from every sampler that saw it) are swept in a fixed order
and any overlap is clipped, so two samplers on one node, a copied ledger or a file read twice never count the same
GPU-second twice, and the result does not depend on file order (idempotent and order-independent).

GPU-hours are the billing view (allocated GPU time, busy or not); busy GPU-hours weight time by utilisation;
idle share is the share of GPU time with utilisation < 5 %. Energy is None when any GPU could not report it,
and dollars are None when any GPU has no price (with a warning naming the key to pass).
"""

from __future__ import annotations

import csv
from pathlib import Path

from openrs_cli.cost.ledger import ledger_files, read_ledger
from openrs_cli.cost.prices import PriceTable, gpu_key, load_prices
from openrs_cli.errors import LedgerError

# the one copy of the paper's Tables 3/4, shipped with the report data (its SOURCES.md says where each row is from)
PAPER_TABLE = Path(__file__).resolve().parent.parent / "report" / "paper_data" / "table34_costs.csv"
_ADDITIVE = ("gpu_seconds", "energy_j", "power_integral_j", "idle_s", "busy_s")


def merge_intervals(records: list[dict]) -> dict[str, list[dict]]:
    """Per GPU UUID, the non-overlapping coverage pieces of all interval records (overlaps clipped pro rata)."""
    pieces: dict[str, list[tuple]] = {}
    for rec in records:
        if rec.get("record") != "interval":
            continue
        for g in rec.get("gpus", []):
            key = (float(rec["start_ts"]), float(rec["end_ts"]), _num(g.get("energy_j")), str(rec.get("monitor_id")))
            pieces.setdefault(g["uuid"], []).append((key, g))
    merged: dict[str, list[dict]] = {}
    for uuid, items in pieces.items():
        items.sort(key=lambda kv: kv[0])
        covered = float("-inf")
        kept = []
        for (start, end, _, _), g in items:
            if end <= covered or end <= start:
                continue
            piece = {**g, "start_ts": start, "end_ts": end}
            if start < covered:  # partial overlap: keep only the uncovered tail, pro rata
                f = (end - covered) / (end - start)
                for k in _ADDITIVE:
                    if piece.get(k) is not None:
                        piece[k] = piece[k] * f
                piece["start_ts"] = covered
            kept.append(piece)
            covered = end
        merged[uuid] = kept
    return merged


def _num(v) -> float:
    return -1.0 if v is None else float(v)


def _union_seconds(spans: list[tuple[float, float]]) -> float:
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(spans):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    return total + ((cur_e - cur_s) if cur_e is not None else 0.0)


def summarize_records(records: list[dict], prices: PriceTable, where: str = "") -> dict:
    """The summary dict of one run from its ledger records (any order, duplicates allowed)."""
    warnings: list[str] = []
    # Wall time is the union of the monitors' spans: a resumed run does not bill the gap between its sessions.
    spans: dict[str, list[float]] = {}
    for r in records:
        if r.get("record") == "run_start":
            spans.setdefault(r.get("monitor_id"), [r["start_ts"], r["start_ts"]])[0] = r["start_ts"]
    if not spans:
        raise LedgerError(f"{where}: the ledger has no run_start record; is this an openrs cost ledger?")
    for r in records:
        if r.get("record") in ("run_end", "interval", "window") and r.get("monitor_id") in spans:
            spans[r["monitor_id"]][1] = max(spans[r["monitor_id"]][1], r["end_ts"])
    t0, t1 = min(s for s, _ in spans.values()), max(e for _, e in spans.values())
    wall = _union_seconds([tuple(v) for v in spans.values()])
    devices = {}
    for r in records:
        if r.get("record") == "run_start" and r.get("role") == "sampler":
            for d in r.get("devices", []):
                devices.setdefault(d["uuid"], d)
    merged = merge_intervals(records)
    per_gpu, by_key = [], {}
    for uuid in sorted(set(devices) | set(merged)):
        pcs = merged.get(uuid, [])
        dev = devices.get(uuid, {"name": pcs[0]["name"] if pcs else "unknown", "mem_total_mib": None})
        secs = sum(p["gpu_seconds"] for p in pcs)
        energy = None if any(p.get("energy_j") is None for p in pcs) or not pcs else sum(p["energy_j"] for p in pcs)
        known_util = all(p.get("busy_s") is not None for p in pcs) and pcs
        key = gpu_key(dev.get("name"), dev.get("mem_total_mib"))
        per_gpu.append({"uuid": uuid, "name": dev.get("name"), "price_key": key, "gpu_seconds": secs,
                        "energy_j": energy, "busy_s": sum(p["busy_s"] for p in pcs) if known_util else None,
                        "idle_s": sum(p["idle_s"] for p in pcs) if known_util else None})
        k = by_key.setdefault(key or f"unpriced:{dev.get('name')}", {"gpus": 0, "gpu_hours": 0.0})
        k["gpus"] += 1
        k["gpu_hours"] += secs / 3600
    gpu_s = sum(g["gpu_seconds"] for g in per_gpu)
    # No GPU: GPU energy is not "0 measured" (CPU energy is never measured), so it stays unknown like dollars.
    energy_j = None if not per_gpu or any(g["energy_j"] is None for g in per_gpu) else sum(g["energy_j"] for g in per_gpu)
    util_ok = per_gpu and all(g["busy_s"] is not None for g in per_gpu)
    busy_s = sum(g["busy_s"] for g in per_gpu) if util_ok else None
    idle_s = sum(g["idle_s"] for g in per_gpu) if util_ok else None
    cost = None
    if per_gpu:
        cost = 0.0
        for key, k in by_key.items():
            k["usd_per_gpu_hour"] = prices.price(key)
            if k["usd_per_gpu_hour"] is None:
                name = key.removeprefix("unpriced:")
                warnings.append(f"{where}: GPU '{name}' has no price in {prices.label}; no dollar figure "
                                f"(pass --price KEY=USD)")
                cost = None
            elif cost is not None:
                k["cost_usd"] = k["gpu_hours"] * k["usd_per_gpu_hour"]
                cost += k["cost_usd"]
    if per_gpu and energy_j is None:
        warnings.append(f"{where}: energy unknown (no NVML energy counter or power readings on some GPU)")
    phase_spans: dict[str, list[tuple[float, float]]] = {}
    for r in records:
        if r.get("record") == "window" and r.get("phase"):
            phase_spans.setdefault(r["name"], []).append((r["start_ts"], r["end_ts"]))
    phases = {n: _union_seconds(s) for n, s in sorted(phase_spans.items())}
    covered = _union_seconds([s for spans in phase_spans.values() for s in spans])
    phases["other"] = phases.get("other", 0.0) + max(0.0, wall - covered)
    statuses = sorted({r.get("status", "?") for r in records if r.get("record") == "run_end"})
    names = sorted({g["name"] for g in per_gpu if g["name"]})
    kwh = None if energy_j is None else energy_j / 3.6e6
    return {
        "run_dir": where, "wall_s": wall, "start_ts": t0, "end_ts": t1,
        "status": ",".join(statuses) if statuses else "incomplete (no run_end: still running or killed)",
        "hosts": sorted({r.get("host") for r in records if r.get("record") == "run_start"}),
        "gpu_count": len(per_gpu), "gpu_name": ", ".join(names) if names else None,
        "gpu_hours": gpu_s / 3600, "busy_gpu_hours": None if busy_s is None else busy_s / 3600,
        "util_gpu_mean": None if busy_s is None or not gpu_s else 100 * busy_s / gpu_s,
        "idle_share": None if idle_s is None or not gpu_s else idle_s / gpu_s,
        "energy_kwh": kwh, "cost_usd": cost,
        "energy_cost_usd": (kwh * prices.pue * prices.electricity_usd_kwh
                            if kwh is not None and prices.electricity_usd_kwh is not None else None),
        "phases": phases, "by_gpu_type": by_key, "gpus": per_gpu, "warnings": warnings,
    }


def load_run_records(run_dir, warnings: list[str]) -> list[dict]:
    if not Path(run_dir).is_dir():
        raise LedgerError(f"{run_dir}: no such run directory; pass a run or eval output directory")
    files = ledger_files(run_dir)
    if not files:
        raise LedgerError(f"{run_dir}: no cost ledger (cost/ledger-*.jsonl); the run was started with --no-cost "
                          f"or is not an openrs run directory")
    out = []
    for f in files:
        for n, rec in enumerate(read_ledger(f, warnings), 1):
            problem = _malformed(rec)
            if problem:
                warnings.append(f"{f}: skipped malformed {rec.get('record')} record {n} ({problem})")
            else:
                out.append(rec)
    return out


_NEEDS = {"run_start": ("start_ts",), "run_end": ("end_ts",), "window": ("start_ts", "end_ts"),
          "interval": ("start_ts", "end_ts")}


def _malformed(rec: dict) -> str | None:
    """Why a parsed ledger record cannot be summarised (a hand-edited or foreign line), or None."""
    def number(v) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    for k in _NEEDS.get(rec.get("record"), ()):
        if not number(rec.get(k)):
            return f"no numeric '{k}'"
    if rec.get("record") == "window" and rec.get("phase") and not isinstance(rec.get("name"), str):
        return "no 'name'"
    devices = rec.get("devices", []) if rec.get("record") == "run_start" else []
    if not isinstance(devices, list) or not all(isinstance(d, dict) and isinstance(d.get("uuid"), str)
                                                for d in devices):
        return "a device without 'uuid'"
    if rec.get("record") == "interval":
        gpus = rec.get("gpus", [])
        if not isinstance(gpus, list) or not all(
                isinstance(g, dict) and isinstance(g.get("uuid"), str) and number(g.get("gpu_seconds"))
                for g in gpus):
            return "a GPU entry without 'uuid' or 'gpu_seconds'"
    return None


def summarize_run(run_dir, prices: PriceTable | None = None) -> dict:
    """Summary of one run directory (keys: run_dir, wall_s, gpu_count, gpu_name, gpu_hours, busy_gpu_hours,
    energy_kwh, cost_usd, phases, idle_share, plus status, hosts, util, by_gpu_type, warnings)."""
    warnings: list[str] = []
    records = load_run_records(run_dir, warnings)
    s = summarize_records(records, prices or load_prices(), str(run_dir))
    s["warnings"] = warnings + s["warnings"]
    return s


def paper_table(prices: PriceTable) -> list[dict]:
    """The paper's Tables 3-4 rows with their implied rate and the cost re-priced with `prices`."""
    rows = []
    with open(PAPER_TABLE, newline="") as f:
        for r in csv.DictReader(f):
            gh = float(r["gpu_hours"]) if r["gpu_hours"] else None
            cost = float(r["cost_usd"]) if r["cost_usd"] else None
            rate = prices.price(r["gpu_type"] or None)
            rows.append({
                "model": r["model"], "hardware": r["hardware"], "gpu_type": r["gpu_type"] or None,
                "hours": float(r["hours"]) if r["hours"] else None, "gpu_hours": gh, "paper_cost_usd": cost,
                "paper_usd_per_gpu_hour": cost / gh if cost and gh else None,
                "repriced_usd": gh * rate if gh is not None and rate is not None else None, "source": r["source"],
            })
    return rows


def summarize_runs(run_dirs, prices: PriceTable | None = None) -> dict:
    """Per-run summaries, their total, the active price table and the paper's table re-priced."""
    prices = prices or load_prices()
    runs = [summarize_run(d, prices) for d in run_dirs]

    def total(key):
        # A run without GPUs adds nothing to GPU-hours, energy or dollars; it does not make the total unknown.
        vals = [r[key] for r in runs if r["gpu_count"] or key in ("wall_s", "gpu_hours")]
        return None if not vals or any(v is None for v in vals) else sum(vals)

    return {
        "runs": runs,
        "total": {k: total(k) for k in ("wall_s", "gpu_hours", "busy_gpu_hours", "energy_kwh", "cost_usd",
                                          "energy_cost_usd")} | {"runs": len(runs)},
        "price_table": prices.to_json(), "price_table_label": prices.label,
        "paper": paper_table(prices),
        "warnings": [w for r in runs for w in r["warnings"]],
    }


def clip_records(records: list[dict], cut_ts: float) -> list[dict]:
    """The ledger records as if the run had stopped at `cut_ts`: later records dropped, an interval or window
    that spans the cut kept pro rata (its additive GPU figures scaled by the share before the cut)."""
    out = []
    for r in records:
        if r.get("record") == "run_start":
            if r["start_ts"] < cut_ts:
                out.append(r)
            continue
        if r.get("record") not in ("interval", "window", "run_end"):
            continue
        start, end = float(r.get("start_ts", r.get("end_ts", 0))), float(r["end_ts"])
        if start >= cut_ts:
            continue
        if end <= cut_ts:
            out.append(r)
            continue
        if r.get("record") == "run_end":
            continue
        share = (cut_ts - start) / (end - start) if end > start else 0.0
        piece = {**r, "end_ts": cut_ts}
        if r.get("record") == "interval":
            piece["gpus"] = [{**g, **{k: g[k] * share for k in _ADDITIVE if isinstance(g.get(k), int | float)}}
                             for g in r.get("gpus", [])]
        out.append(piece)
    return out


def search_cost(run_dir, prices: PriceTable | None = None) -> dict | None:
    """The chosen checkpoint's cost beside the whole search's, for a run `openrs eval select` chose on: training up
    to the end of the chosen step (its `train_step` window in the ledgers), the steps trained past it, and the
    validation evals of every checkpoint (RUN/select/*/cost). None without RUN/select/selection.json."""
    from openrs_cli.evaluate.select import load_selection

    sel = load_selection(run_dir)
    if sel is None:
        return None
    prices = prices or load_prices()
    warnings: list[str] = []
    records = load_run_records(run_dir, warnings)
    full = summarize_records(records, prices, str(run_dir))
    step = sel["chosen"].get("step")
    ends = [r["end_ts"] for r in records if r.get("record") == "window" and r.get("name") == "train_step"
            and r.get("step") == step]
    if step is not None and ends:
        chosen = summarize_records(clip_records(records, max(ends)), prices, str(run_dir))
    else:  # no step windows (an old ledger) or the final model: the whole run
        chosen = full
        if step is not None:
            warnings.append(f"{run_dir}: no train_step window for step {step} in the ledgers; the chosen "
                            f"checkpoint is billed the whole run")
    evals = []
    for d in sorted(Path(run_dir, "select").glob("*/cost")):
        try:
            evals.append(summarize_run(d.parent, prices))
        except LedgerError as e:
            warnings.append(str(e))

    def add(*parts):
        def one(key):
            vals = [p.get(key) for p in parts]
            return None if any(v is None for v in vals) else sum(vals)
        return {k: one(k) for k in ("gpu_hours", "energy_kwh", "cost_usd", "wall_s")}

    def part(s):
        return {k: s.get(k) for k in ("gpu_hours", "energy_kwh", "cost_usd", "wall_s")}

    past = {k: (None if full.get(k) is None or chosen.get(k) is None else max(0.0, full[k] - chosen[k]))
            for k in ("gpu_hours", "energy_kwh", "cost_usd", "wall_s")}
    return {
        "chosen_checkpoint": sel["chosen"].get("checkpoint"), "chosen_step": step,
        "chosen": part(chosen),  # training up to the chosen checkpoint
        "trained_past_chosen": past,
        "selection_evals": add(*evals) if evals else add(),
        "whole_search": add(full, *evals),
        "selection_evals_count": len(evals),
        "warnings": warnings,
    }
