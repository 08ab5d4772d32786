"""`openrs train` (not landed yet: issue #5)."""

HELP = "(not available yet: issue #5) Train a recipe with GRPO."


def train(recipe: str) -> None:
    from openrs_cli.errors import OpenrsError

    raise OpenrsError("openrs train has not landed yet (issue #5)")
