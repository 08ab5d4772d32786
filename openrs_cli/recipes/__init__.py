"""Recipes: the schema (`schema.Recipe`), shipped YAML files (`shipped/`), loading and `key.sub=value` overrides."""

from openrs_cli.recipes.loader import (  # noqa: F401
    SHIPPED_DIR,
    accelerate_config_path,
    apply_overrides,
    load_recipe,
    recipe_to_yaml,
    shipped_names,
)
