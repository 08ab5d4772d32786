"""Data building: `openrs data build` (sources -> filters -> decontamination -> solvable filter -> mix -> dataset
dir with manifest) and `openrs data inspect`. See docs/data.md.

Public API: `load_spec(name_or_yaml, overrides, sources, columns) -> BuildSpec`, `build(spec, out, ...) -> manifest`,
`inspect_dir(dir) -> dict`, `content_sha256(rows)`, `PRESETS`. Heavy libraries are imported inside functions.
"""

from openrs_cli.data.build import build  # noqa: F401
from openrs_cli.data.output import content_sha256, inspect_dir, read_manifest  # noqa: F401
from openrs_cli.data.spec import PRESETS, BuildSpec, load_spec  # noqa: F401
