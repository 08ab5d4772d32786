"""`openrs recipes`: list, show, validate and copy training recipes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from openrs_cli.commands._console import console, escape

app = typer.Typer(help="List, show (with overrides), validate and copy training recipes.", no_args_is_help=True)


@app.command("ls")
def ls() -> None:
    """List the shipped recipes with their descriptions."""
    from rich.table import Table

    from openrs_cli.recipes import load_recipe, shipped_names

    table = Table("recipe", "model", "dataset", "description", box=None)
    for name in shipped_names():
        r = load_recipe(name)
        table.add_row(name, r.model.id, r.dataset.id, escape(r.description))
    console.print(table)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Shipped recipe name (exp3, tiny, ...) or a YAML path")],
    overrides: Annotated[list[str] | None, typer.Argument(help="key.sub=value overrides, e.g. optim.learning_rate=2e-6")] = None,
) -> None:
    """Print the fully resolved recipe (defaults < YAML < overrides) as YAML."""
    from openrs_cli.recipes import load_recipe, recipe_to_yaml

    typer.echo(recipe_to_yaml(load_recipe(name, overrides or [])), nl=False)


@app.command("validate")
def validate(
    items: Annotated[list[str] | None, typer.Argument(
        help="Recipe names or YAML paths (default: every shipped recipe), and key.sub=value overrides applied to "
             "each")] = None,
) -> None:
    """Run every check `openrs train` runs before it plans (schema, values TRL would ignore, model reference,
    accelerate config, GRPOConfig fields of the installed TRL); exit code 2 on the first invalid recipe."""
    from openrs_cli.recipes import load_recipe, shipped_names
    from openrs_cli.train.config import check_recipe

    overrides = [x for x in items or [] if "=" in x and not Path(x).exists()]
    for item in [x for x in items or [] if x not in overrides] or shipped_names():
        check_recipe(load_recipe(item, overrides), item, overrides)
        console.print(f"[green]ok[/] {escape(item)}{escape(' ' + ' '.join(overrides)) if overrides else ''}",
                      highlight=False)


@app.command("cp")
def cp(
    name: Annotated[str, typer.Argument(help="Shipped recipe to copy")],
    dest: Annotated[Path, typer.Argument(help="Destination file (must not exist) or directory")],
) -> None:
    """Copy a shipped recipe to edit it; never overwrites an existing file."""
    from openrs_cli.errors import RecipeError
    from openrs_cli.recipes import SHIPPED_DIR, shipped_names

    src = SHIPPED_DIR / f"{name}.yaml"
    if not src.is_file():
        raise RecipeError(f"unknown recipe '{name}'; shipped recipes: {', '.join(shipped_names())}")
    target = dest / src.name if dest.is_dir() else dest
    if target.exists():
        raise RecipeError(f"{target} already exists; choose another destination (openrs never overwrites it)")
    if not target.parent.is_dir():
        raise RecipeError(f"directory {target.parent} does not exist; create it first")
    shutil.copyfile(src, target)
    console.print(f"copied {name} -> {escape(str(target))}", highlight=False)
