"""Load recipes: shipped name or YAML path, optional `base:` inheritance, `key.sub=value` overrides.

Precedence is schema defaults < YAML (after its base) < command-line overrides. Every failure becomes one
RecipeError line that names the file, the key and the fix (with the nearest valid key for typos).
"""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from openrs_cli.errors import RecipeError
from openrs_cli.recipes.schema import Recipe

SHIPPED_DIR = Path(__file__).parent / "shipped"
ACCELERATE_DIR = SHIPPED_DIR / "accelerate"


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats such as 1e-6 (PyYAML's 1.1 rules read them as strings)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$|^[-+]?(?:\d[\d_]*)?\.\d+$|^[-+]?\d[\d_]*\.$"),
    list("-+0123456789."),
)


def parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RecipeError(f"{where}: YAML syntax error{at}: {problem}; fix the file") from None


def shipped_names() -> list[str]:
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))


def _resolve_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists() or "/" in name_or_path:
        if not p.is_file():
            raise RecipeError(f"recipe file {p} does not exist; give a YAML path or one of: {', '.join(shipped_names())}")
        return p
    shipped = SHIPPED_DIR / f"{name_or_path}.yaml"
    if not shipped.is_file():
        near = difflib.get_close_matches(name_or_path, shipped_names(), n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        raise RecipeError(f"unknown recipe '{name_or_path}'{hint} Shipped recipes: {', '.join(shipped_names())}")
    return shipped


def _read_dict(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RecipeError(f"{where}: not UTF-8 text; save the recipe as UTF-8 YAML") from None
    data = parse_yaml(text, where)
    if data is None:
        raise RecipeError(f"{where}: the recipe is empty; copy a shipped one with `openrs recipes cp exp3 {where}`")
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: a recipe must be a YAML mapping of keys to values, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    base_path = _resolve_path(str(base)) if not (path.parent / str(base)).is_file() else path.parent / str(base)
    if base_path.resolve() in seen:
        raise RecipeError(f"{where}: 'base: {base}' makes a cycle; remove it")
    return deep_merge(_read_dict(base_path, seen + (path.resolve(),)), data)


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `a.b=value` strings (values parsed as YAML) on top of a recipe dict."""
    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"override '{item}' has no '='; write it as key.sub=value, e.g. optim.learning_rate=2e-6")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise RecipeError(f"override '{item}' has an empty key; write it as key.sub=value")
        value = parse_yaml(raw, f"override '{item}'") if raw.strip() else ""
        node = out
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise RecipeError(f"override '{item}': '{'.'.join(parts[: i + 1])}' is a value, not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def _fields_at(loc: tuple) -> list[str]:
    model: type[BaseModel] | None = Recipe
    for part in loc:
        if model is None:
            return []
        field = model.model_fields.get(part)
        ann = field.annotation if field else None
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return list(model.model_fields) if model else []


def validate(data: dict, where: str) -> Recipe:
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        from openrs_cli.validation import explain_all

        raise RecipeError(f"{where}: {explain_all(e.errors(), _fields_at)}") from None


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> Recipe:
    """Resolve a shipped name or YAML path, apply overrides, validate."""
    path = _resolve_path(name_or_path)
    data = _read_dict(path)
    data.setdefault("name", path.stem)
    if overrides:
        data = apply_overrides(data, overrides)
    return validate(data, str(path) if not overrides else f"{path} (with overrides)")


def recipe_to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=120)


def accelerate_config_path(name_or_path: str) -> Path:
    p = ACCELERATE_DIR / f"{name_or_path}.yaml"
    if p.is_file():
        return p
    q = Path(name_or_path)
    if q.is_file():
        return q
    valid = sorted(x.stem for x in ACCELERATE_DIR.glob("*.yaml"))
    raise RecipeError(f"accelerate config '{name_or_path}' not found; use one of {', '.join(valid)} or a YAML path")
