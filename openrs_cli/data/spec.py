"""Build specs: what `openrs data build NAME` does, as one strict pydantic model plus the named presets.

Named specs: `open-s1`, `open-deepscaler`, `open-rs` (3,000 + 3,000 + 1,000 easy) and `custom` (one source given
with --source). A YAML file can describe any other build with the same keys (`base: open-rs` to start from a
preset). Precedence: preset < YAML < --source/--column < `key.sub=value` overrides.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from openrs_cli.errors import DataError
from openrs_cli.evaluate.tasks import PROMPT as _EVAL_PROMPT

EVAL_SETS = ("aime24", "amc23", "math500", "minerva", "olympiadbench")
EASY = "easy"

# The paper's evaluation query template (eval's PROMPT) with a literal {problem} slot: what the solver is asked.
PAPER_QUERY = _EVAL_PROMPT.format(problem="{problem}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SolvableSpec(_Strict):
    """Solvable-by-model filter: k samples per problem, graded; solve rate >= threshold -> the easy pool."""

    model: str | None = Field(None, description="Hub id, local dir or openrs-tiny; null = filter off")
    samples: int = Field(4, ge=1)
    threshold: float = Field(0.5, ge=0, le=1, description="Drop problems whose solve rate is >= this")
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)
    max_new_tokens: int = Field(4096, gt=0)
    backend: str = Field("auto", description="auto | vllm | transformers (eval's generation backends)")
    batch_size: int | None = Field(None, gt=0)
    prompt: str = Field(PAPER_QUERY, description="User message; {problem} is replaced by the problem")
    keep_easy: bool = Field(True, description="Offer the solved problems to the mix as the 'easy' pool")

    @field_validator("prompt")
    @classmethod
    def _has_slot(cls, v: str) -> str:
        if "{problem}" not in v:
            raise ValueError("the prompt must contain {problem}")
        return v


class SourceSpec(_Strict):
    """One input: a hub dataset id (default) or a local JSONL / Parquet file or saved HF dataset dir."""

    path: str | None = Field(None, description="Hub id, .jsonl/.json/.parquet file, or saved HF dataset dir")
    config: str | None = None
    split: str = "train"
    problem_column: str = "problem"
    solution_column: str | None = "solution"
    answer_column: str | None = "answer"
    source_column: str | None = Field(None, description="Column copied into `source`; null = the source's name")
    limit: int | None = Field(None, gt=0, description="Use only the first N rows")
    require_boxed: bool = Field(False, description="Keep only rows whose solution has a \\boxed{} answer")
    drop_multipart: bool = True
    solvable: SolvableSpec = Field(default_factory=SolvableSpec)


class DedupSpec(_Strict):
    near: bool = True
    shingle_words: int = Field(5, ge=1, description="Word n-gram size of the near-duplicate shingles")
    threshold: float = Field(
        0.8, gt=0, le=1, description="Jaccard similarity at or above which rows are near-duplicates"
    )


class DecontamSpec(_Strict):
    benchmarks: list[str] = Field(default_factory=lambda: list(EVAL_SETS))
    ngram: int = Field(13, ge=1, description="Word n-gram length that counts as overlap")
    ignore_shared: bool = Field(True, description="Ignore n-grams that occur in 2+ evaluation problems (boilerplate)")

    @field_validator("benchmarks")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [b for b in v if b not in EVAL_SETS]
        if bad:
            raise ValueError(f"unknown benchmark {bad[0]!r}; valid: {', '.join(EVAL_SETS)}")
        return v


class BuildSpec(_Strict):
    name: str
    description: str = ""
    seed: int = 42
    sources: dict[str, SourceSpec]
    dedup: DedupSpec = Field(default_factory=DedupSpec)
    decontam: DecontamSpec = Field(default_factory=DecontamSpec)
    mix: dict[str, int | None] = Field(
        default_factory=dict,
        description="Pool -> rows to sample (null = all). Pools: source names and 'easy'; "
        "empty = every source, all rows",
    )
    shuffle: bool = True

    @model_validator(mode="after")
    def _check(self) -> BuildSpec:
        if not self.sources:
            raise ValueError("a build needs at least one source")
        for name in self.sources:
            if name == EASY or "." in name:
                raise ValueError(f"source name {name!r} is reserved or contains '.'; rename it")
        for pool, size in self.mix.items():
            if pool != EASY and pool not in self.sources:
                raise ValueError(f"mix pool {pool!r} is neither a source ({', '.join(self.sources)}) nor 'easy'")
            if size is not None and size < 0:
                raise ValueError(f"mix.{pool} must be >= 0 or null (all rows)")
        return self

    def pools(self) -> dict[str, int | None]:
        return dict(self.mix) if self.mix else {name: None for name in self.sources}


_S1 = {
    "path": "simplescaling/data_ablation_full59K",
    "problem_column": "question",
    "solution_column": "solution",
    "answer_column": None,
    "require_boxed": True,
    "drop_multipart": False,
    "solvable": {"model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"},
}
_DEEPSCALER = {
    "path": "agentica-org/DeepScaleR-Preview-Dataset",
    "problem_column": "problem",
    "solution_column": "solution",
    "answer_column": "answer",
    "drop_multipart": True,
    "solvable": {"model": "Qwen/Qwen2.5-Math-7B-Instruct", "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 4096},
}

PRESETS: dict[str, dict[str, Any]] = {
    "open-s1": {
        "description": "s1 question pool: boxed solutions only, minus problems DeepSeek-R1-Distill-Qwen-1.5B solves",
        "sources": {"open-s1": _S1},
    },
    "open-deepscaler": {
        "description": "DeepScaleR-Preview: single-part problems, minus those Qwen2.5-Math-7B-Instruct solves",
        "sources": {"open-deepscaler": _DEEPSCALER},
    },
    "open-rs": {
        "description": "3,000 open-s1 + 3,000 open-deepscaler + 1,000 easy (solved by the DeepScaleR filter model)",
        "sources": {
            "open-s1": {**_S1, "solvable": {**_S1["solvable"], "keep_easy": False}},
            "open-deepscaler": _DEEPSCALER,
        },
        "mix": {"open-s1": 3000, "open-deepscaler": 3000, EASY: 1000},
    },
    "custom": {
        "description": "Generic stages on any file with problem and solution/answer columns (no solver filter)",
        "sources": {"custom": {"path": None}},
    },
}


def _fields_for(loc: tuple) -> list[str]:
    model: Any = BuildSpec
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        if model is BuildSpec and part == "sources" and parts:
            parts.pop(0)
            model = SourceSpec
            continue
        field = model.model_fields.get(str(part)) if isinstance(model, type) else None
        ann = field.annotation if field else None
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if model is None:
            return []
    return list(model.model_fields) if isinstance(model, type) else []


def load_spec(
    name_or_path: str,
    overrides: list[str] | None = None,
    sources: list[str] | None = None,
    columns: list[str] | None = None,
) -> BuildSpec:
    """Resolve a preset name or YAML path, then --source (`PATH` or `NAME=PATH`), --column (`problem=question`)
    and `key.sub=value` overrides; validate. Every failure is one DataError line."""
    from openrs_cli.recipes.loader import apply_overrides, deep_merge, parse_yaml

    data: dict[str, Any]
    if name_or_path in PRESETS:
        data = deep_merge({"name": name_or_path}, PRESETS[name_or_path])
    else:
        p = Path(name_or_path)
        if p.suffix not in (".yaml", ".yml") or not p.is_file():
            near = difflib.get_close_matches(name_or_path, list(PRESETS), n=1)
            hint = f"did you mean '{near[0]}'? " if near else ""
            raise DataError(
                f"unknown data spec '{name_or_path}'; {hint}use one of {', '.join(PRESETS)} or a YAML file"
            )
        try:
            data = parse_yaml(p.read_text(encoding="utf-8"), str(p)) or {}
        except UnicodeDecodeError:
            raise DataError(f"{p}: not UTF-8 text; save the spec as UTF-8 YAML") from None
        if not isinstance(data, dict):
            raise DataError(f"{p}: a data spec must be a YAML mapping, got {type(data).__name__}")
        base = data.pop("base", None)
        if base is not None:
            if base not in PRESETS:
                raise DataError(f"{p}: base '{base}' is not a preset; use one of {', '.join(PRESETS)}")
            data = deep_merge(PRESETS[base], data)
        data.setdefault("name", p.stem)
    srcs = data.setdefault("sources", {})
    for item in sources or []:
        name, _, path = item.partition("=") if "=" in item and not Path(item).exists() else ("", "", item)
        if not name:
            if len(srcs) != 1:
                raise DataError(f"--source {item}: this spec has sources {', '.join(srcs)}; write --source NAME=PATH")
            name = next(iter(srcs))
        if name not in srcs:
            raise DataError(f"--source {item}: no source '{name}' in this spec; sources: {', '.join(srcs)}")
        srcs[name] = {**(srcs[name] or {}), "path": path}
    for item in columns or []:
        role, sep, col = item.partition("=")
        if not sep or role not in ("problem", "solution", "answer", "source"):
            raise DataError(f"--column {item}: write ROLE=COLUMN with ROLE one of problem, solution, answer, source")
        for s in srcs.values():
            s[f"{role}_column"] = col or None
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        try:
            data = apply_overrides(data, [item])
        except Exception as e:  # RecipeError wording names recipes; re-raise as a data error
            raise DataError(str(e)) from None
        if sep and key.strip().endswith(".prompt"):  # text, not YAML: "{problem}" must stay a string
            node = data
            for part in key.strip().split(".")[:-1]:
                node = node[part]
            node["prompt"] = raw
    try:
        spec = BuildSpec.model_validate(data)
    except ValidationError as e:
        from openrs_cli.validation import explain_all

        raise DataError(f"data spec '{name_or_path}': {explain_all(e.errors(), _fields_for)}") from None
    for name, s in spec.sources.items():
        if not s.path:
            raise DataError(
                f"source '{name}' has no path; pass --source FILE (JSONL, Parquet or a saved HF dataset dir)"
            )
    return spec
