"""`openrs data`: build the open-s1 / open-deepscaler / open-rs / custom datasets, and inspect a built one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from openrs_cli.commands._console import JsonOpt, console, escape, print_json

app = typer.Typer(
    help="Build training datasets (open-s1, open-deepscaler, open-rs, custom) and inspect them.", no_args_is_help=True
)


@app.command("build")
def build(
    name: Annotated[str, typer.Argument(help="open-s1 | open-deepscaler | open-rs | custom | a spec YAML file")],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(
            help="key.sub=value overrides, e.g. seed=7 mix.easy=500 sources.open-deepscaler.solvable.model=openrs-tiny"
        ),
    ] = None,
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            help="Input for a source: PATH (one-source specs) or NAME=PATH; JSONL, Parquet, saved HF dir or Hub id",
        ),
    ] = None,
    column: Annotated[
        list[str] | None,
        typer.Option(
            "--column", help="Column mapping ROLE=COLUMN for every source, ROLE in problem/solution/answer/source"
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output directory (default: data/NAME)")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing dataset directory")] = False,
    show_spec: Annotated[bool, typer.Option("--show-spec", help="Print the resolved spec as JSON and stop")] = False,
) -> None:
    """Run the stages (normalise, gold, multi-part, dedup, decontamination, solvable filter, mix) and write
    a saved HF dataset + Parquet copy + manifest.json; same inputs and seed give byte-identical files."""
    from openrs_cli.data import build as run_build
    from openrs_cli.data import load_spec

    spec = load_spec(name, overrides or [], source or [], column or [])
    if show_spec:
        print_json(spec.model_dump(mode="json"))
        return
    target = out or Path("data") / spec.name
    from openrs_cli.commands._progress import Progress

    progress = Progress("data build", unit="items")
    with progress:
        manifest = run_build(spec, target, overwrite=overwrite, on_progress=progress.stage)
    _print_stages(manifest["stages"])
    hits = manifest["decontamination"]["hits"]
    console.print(
        f"[green]built[/] {escape(str(target))}: {manifest['rows']} rows, "
        f"{len({(h['train_pool'], h['train_row']) for h in hits})} contaminated rows removed, "
        f"content_sha256 {manifest['content_sha256'][:16]}",
        highlight=False,
    )


@app.command("inspect")
def inspect(
    directory: Annotated[Path, typer.Argument(help="A directory written by `openrs data build`")],
    as_json: JsonOpt = False,
    hits: Annotated[bool, typer.Option("--hits", help="Also list every decontamination hit")] = False,
) -> None:
    """Print the manifest summary, stage counts, column length stats and sources of a built dataset."""
    from openrs_cli.data import inspect_dir, read_manifest

    info = inspect_dir(directory)
    hit_list = read_manifest(directory).get("decontamination", {}).get("hits", []) if hits else []
    if hits:
        info["hits"] = hit_list
    if as_json:
        print_json(info)
        return
    from rich.table import Table

    ok = "[green]ok[/]" if info["content_ok"] else "[bold red]MISMATCH (files changed since the build)[/]"
    console.print(
        f"[bold]{escape(str(info['name']))}[/] {escape(info['dir'])}: {info['rows']} rows, seed {info['seed']}, "
        f"built {info['built_utc']} by openrs {info['openrs_version']}",
        highlight=False,
    )
    console.print(f"content_sha256 {info['content_sha256']} {ok}", highlight=False)
    for inp in info["inputs"]:
        digest = inp.get("sha256") or inp.get("rows_sha256") or ""
        console.print(
            f"input {escape(inp['name'])}: {escape(inp['path'])} ({inp.get('format')}, {inp.get('rows')} rows, "
            f"sha256 {digest[:16]})",
            highlight=False,
        )
    _print_stages(info["stages"])
    table = Table("column", "min", "p10", "p50", "p90", "max", "mean", title="lengths (characters)", box=None)
    for col, s in info["columns"].items():
        table.add_row(col, *(str(s[k]) for k in ("min", "p10", "p50", "p90", "max", "mean")))
    console.print(table)
    src = Table("source", "rows", "share", box=None, title="sources")
    for name, n in info["sources"].items():
        src.add_row(escape(name), str(n), f"{n / max(info['rows'], 1):.1%}")
    console.print(src)
    console.print(f"decontamination hits: {info['decontamination_hits']}", highlight=False)
    if hit_list:
        table = Table("benchmark", "id", "shared n-gram", "training problem", box=None, title="decontamination hits")
        for h in hit_list:
            table.add_row(h["benchmark"], escape(h["problem_id"]), escape(h["ngram"]), escape(h["train_problem"][:100]))
        console.print(table)


def _print_stages(stages: list[dict]) -> None:
    from rich.table import Table

    table = Table("stage", "pool", "in", "out", "dropped", title="stages", box=None)
    for s in stages:
        dropped = ", ".join(f"{k} {v}" for k, v in s["dropped"].items())
        table.add_row(s["stage"], escape(s["pool"]), "" if s["in"] is None else str(s["in"]), str(s["out"]), dropped)
    console.print(table)

