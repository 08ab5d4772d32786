"""`openrs cost`: summarize run ledgers (beside the paper's Tables 3-4), estimate a recipe, show the price table,
and bill a command openrs does not launch (`track`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from openrs_cli.commands._console import JsonOpt, console, err_console, escape, print_json

app = typer.Typer(help="GPU-hours, energy and dollars: summarize run ledgers, estimate a recipe, show prices.",
                  no_args_is_help=True)

PricesOpt = Annotated[Path | None, typer.Option("--prices", help="Price file (JSON or TOML) over the shipped table")]
PriceOpt = Annotated[list[str] | None, typer.Option("--price", help="Override one price: KEY=USD per GPU-hour, "
                                                     "e.g. --price A40=0.5 (repeatable)")]
ElecOpt = Annotated[float | None, typer.Option("--electricity-usd-kwh", help="Electricity price for owned hardware")]
PueOpt = Annotated[float | None, typer.Option("--pue", help="Power usage effectiveness applied to energy (>= 1)")]


def _prices(prices_file, price, elec=None, pue=None):
    from openrs_cli.cost.prices import load_prices

    return load_prices(prices_file, price or [], elec, pue)


def _money(v) -> str:
    return "n/a" if v is None else (f"${v:,.2f}" if v >= 1 or v == 0 else f"${v:.4f}")


def _rate(v) -> str:
    return "no price" if v is None else f"${v:.2f}/GPU-h"


def _q(v: float) -> str:
    """A quantity with sensible digits: 96.00, 1,920.0, 0.00123."""
    return f"{v:,.1f}" if v >= 100 else (f"{v:.2f}" if v >= 1 or v == 0 else f"{v:.3g}")


def _num(v, fmt="{:,.2f}", none="n/a") -> str:
    return none if v is None else fmt.format(v)


def _dur(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"


def _print_run(r: dict) -> None:
    console.print(f"[bold]{escape(r['run_dir'])}[/]  status {escape(r['status'])}, "
                  f"host {escape(', '.join(r['hosts']))}", highlight=False)
    rows = [("wall time", f"{_dur(r['wall_s'])} ({r['wall_s']:,.1f} s)")]
    if r["gpu_count"] == 0:
        rows.append(("GPUs", "0: no GPU was allocated, so no GPU-hours and no dollar figure"))
    else:
        rows.append(("GPUs", f"{r['gpu_count']} x {escape(r['gpu_name'] or 'unknown')}"))
        busy = "" if r["busy_gpu_hours"] is None else (
            f"; busy {_q(r['busy_gpu_hours'])} (mean utilisation {r['util_gpu_mean']:.0f}%)")
        rows.append(("GPU-hours", f"{_q(r['gpu_hours'])} allocated{busy}"))
        rows.append(("idle share", "unknown (no utilisation readings)" if r["idle_share"] is None
                     else f"{r['idle_share']:.1%} of GPU time below 5% utilisation"))
        rows.append(("energy", "unknown" if r["energy_kwh"] is None else f"{_q(r['energy_kwh'])} kWh"))
        rates = ", ".join(f"{escape(k)} {_rate(v.get('usd_per_gpu_hour'))}"
                          for k, v in r["by_gpu_type"].items())
        rows.append(("cost", f"{_money(r['cost_usd'])} ({rates})" if r["cost_usd"] is not None
                     else f"no dollar figure ({rates})"))
        if r.get("energy_cost_usd") is not None:
            rows.append(("electricity", _money(r["energy_cost_usd"])))
    wall = r["wall_s"] or 1.0
    rows.append(("phases", ", ".join(f"{escape(n)} {_dur(s)} ({s / wall:.0%})" for n, s in r["phases"].items())))
    for k, v in rows:
        console.print(f"  {k:<11} {v}", highlight=False)


def _print_search(s: dict) -> None:
    """The chosen checkpoint's cost beside the whole search's (`openrs eval select`)."""
    from rich.table import Table

    t = Table(title=f"the search behind {escape(str(s['chosen_checkpoint']))} (chosen on validation)")
    for col in ("part", "GPU-hours", "energy", "cost"):
        t.add_column(col, justify="left" if col == "part" else "right")
    rows = [(f"training to step {s['chosen_step']} (chosen)", s["chosen"]),
            ("training past it", s["trained_past_chosen"]),
            (f"validation evals ({s['selection_evals_count']} checkpoints)", s["selection_evals"]),
            ("whole search", s["whole_search"])]
    for name, v in rows:
        t.add_row(name, _num(v.get("gpu_hours"), "{:,.2f}", "-"), _num(v.get("energy_kwh"), "{:,.3f} kWh", "-"),
                  _money(v.get("cost_usd")))
    console.print(t)


def _print_paper(rows: list[dict], label: str, total: dict | None) -> None:
    from rich.table import Table

    t = Table(title=f"Paper Tables 3-4, re-priced with {escape(label)}", box=None, title_justify="left")
    for col in ("model", "hardware", "hours", "GPU-h", "paper $", "paper $/GPU-h", "re-priced $"):
        t.add_column(col, justify="left" if col in ("model", "hardware") else "right")
    for p in rows:
        t.add_row(escape(p["model"]), escape(p["hardware"]), _num(p["hours"], "{:,.0f}", "-"),
                  _num(p["gpu_hours"], "{:,.0f}", "-"), _num(p["paper_cost_usd"], "${:,.0f}", "-"),
                  _num(p["paper_usd_per_gpu_hour"], "{:.3f}", "-"), _num(p["repriced_usd"], "${:,.2f}", "-"))
    if total is not None:
        t.add_row("[bold]these runs[/]", "measured", _num(total["wall_s"] / 3600 if total["wall_s"] is not None
                  else None, "{:,.2f}"), _num(total["gpu_hours"]), "", "", _money(total["cost_usd"]))
    console.print(t)


@app.command("summary")
def summary(
    run_dirs: Annotated[list[Path] | None, typer.Argument(help="Run or eval directories; default: runs/* with a ledger")] = None,
    as_json: JsonOpt = False,
    prices_file: PricesOpt = None,
    price: PriceOpt = None,
    electricity_usd_kwh: ElecOpt = None,
    pue: PueOpt = None,
) -> None:
    """Wall time, GPU-hours, kWh, dollars, utilisation and phases per run and in total, beside the paper's table."""
    from openrs_cli.cost.summary import paper_table, summarize_runs

    table = _prices(prices_file, price, electricity_usd_kwh, pue)
    dirs = run_dirs or sorted(p.parent.parent for p in Path("runs").glob("*/cost/ledger-*.jsonl"))
    dirs = list(dict.fromkeys(dirs))
    if not dirs:
        result = {"runs": [], "total": None, "price_table": table.to_json(), "price_table_label": table.label,
                  "paper": paper_table(table), "warnings": []}
    else:
        result = summarize_runs(dirs, table)
        from openrs_cli.cost.summary import search_cost

        result["search"] = {str(d): s for d in dirs if (s := search_cost(d, table)) is not None}
        result["warnings"] += [w for s in result["search"].values() for w in s["warnings"]]
    if as_json:
        print_json(result)
        return
    for w in result["warnings"]:
        err_console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
    if not dirs:
        console.print("No run directories given and none with a cost ledger under runs/; showing the paper's table.")
    for r in result["runs"]:
        _print_run(r)
        if (s := result.get("search", {}).get(r["run_dir"])) is not None:
            _print_search(s)
    if len(result["runs"]) > 1:
        t = result["total"]
        console.print(f"[bold]total[/] ({t['runs']} runs): wall {_dur(t['wall_s'])}, GPU-hours "
                      f"{t['gpu_hours']:,.2f}, energy {_num(t['energy_kwh'], '{:,.3f} kWh', 'unknown')}, "
                      f"cost {_money(t['cost_usd'])}", highlight=False)
    _print_paper(result["paper"], result["price_table_label"], result["total"])


@app.command("estimate")
def estimate(
    recipe: Annotated[str, typer.Argument(help="Shipped recipe name (exp3, ...) or a YAML path")],
    overrides: Annotated[list[str] | None, typer.Argument(help="key.sub=value recipe overrides")] = None,
    gpu: Annotated[str, typer.Option("--gpu", help="GPU type: A40, A100-80GB, A100-40GB, H100, H200, L40S, "
                                     "RTX-4090, L4")] = "A40",
    gpus: Annotated[int | None, typer.Option("--gpus", min=1, help="GPUs in total (default: the recipe's "
                                             "ranks + vLLM GPUs)")] = None,
    as_json: JsonOpt = False,
    prices_file: PricesOpt = None,
    price: PriceOpt = None,
) -> None:
    """Predict a recipe's wall time, GPU-hours and dollars before running it (model calibrated on exp3)."""
    from openrs_cli.cost.estimate import estimate as _estimate
    from openrs_cli.recipes import load_recipe

    e = _estimate(load_recipe(recipe, overrides or []), gpu, gpus, _prices(prices_file, price))
    if as_json:
        print_json(e)
        return
    if e["gpu"] is None:
        console.print(f"{escape(e['recipe'])}: {escape(e['notes'][0])}", highlight=False)
        return
    console.print(f"[bold]{escape(e['recipe'])}[/] on {e['gpus']} x {e['gpu']} ({e['train_gpus']} training, "
                  f"{e['generation_gpus']} generating), {e['steps']} steps of {e['completions_per_step']} "
                  f"completions", highlight=False)
    console.print(f"  step time   {e['step_s']:,.1f} s (generation {e['generation_s_per_step']:,.1f} s, "
                  f"training {e['train_s_per_step']:,.1f} s)", highlight=False)
    console.print(f"  wall time   {e['hours']:,.1f} h", highlight=False)
    console.print(f"  GPU-hours   {e['gpu_hours']:,.1f}", highlight=False)
    cost = (f"{_money(e['cost_usd'])} at {_rate(e['usd_per_gpu_hour'])} ({escape(e['price_table'])})"
            if e["cost_usd"] is not None else f"no dollar figure: {e['gpu']} has no price (pass --price)")
    console.print(f"  cost        {cost}", highlight=False)
    console.print("  constants:")
    for c in e["constants"]:
        console.print(f"    {escape(c['name'])}: {escape(c['value'])}  [dim]source: {escape(c['source'])}[/]",
                      highlight=False)
    for n in e["notes"]:
        console.print(f"  [yellow]note:[/] {escape(n)}", highlight=False)


@app.command("prices")
def prices(as_json: JsonOpt = False, prices_file: PricesOpt = None, price: PriceOpt = None,
           electricity_usd_kwh: ElecOpt = None, pue: PueOpt = None) -> None:
    """Print the active price table (shipped, plus overrides from --prices, OPENRS_PRICE_<KEY>, --price)."""
    from rich.table import Table

    table = _prices(prices_file, price, electricity_usd_kwh, pue)
    if as_json:
        print_json(table.to_json())
        return
    t = Table(title=f"price table {escape(table.label)}", box=None, title_justify="left")
    for col in ("GPU", "USD/GPU-h", "observed", "source"):
        t.add_column(col)
    for r in table.rows.values():
        t.add_row(escape(r.gpu), f"{r.usd_per_gpu_hour:.2f}", escape(r.observed), escape(r.source))
    console.print(t)
    for o in table.overrides:
        console.print(f"override: {escape(o)}", highlight=False)
    if table.electricity_usd_kwh is not None:
        console.print(f"electricity: ${table.electricity_usd_kwh}/kWh, PUE {table.pue}", highlight=False)


@app.command("track", context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True})
def track(
    command: Annotated[list[str], typer.Argument(metavar="CMD",
                                                 help="The command to run and bill, after --")],
    run_dir: Annotated[Path, typer.Option("--run-dir", help="The run whose cost ledger records this node")],
    kind: Annotated[str, typer.Option("--kind", help="What the command is, as the ledger records it")] = "vllm-server",
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="While RUN does not exist, start the command and "
                                       "open the ledger once the run creates it (default); --no-wait creates "
                                       "RUN now")] = True,
) -> None:
    """Run a command under a cost monitor: bills this node's GPUs (CUDA_VISIBLE_DEVICES) into RUN's ledger, e.g.
    the vLLM server node of a Slurm job. Forwards SIGTERM/SIGINT; exits with the command's exit code."""
    from openrs_cli.cost.wrap import track as _track

    raise typer.Exit(_track(run_dir, command, kind=kind, wait=wait))
