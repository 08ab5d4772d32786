"""lighteval custom tasks: the paper's five math tasks, for people who run lighteval themselves.

    lighteval accelerate "model_name=MODEL,dtype=bfloat16,generation_parameters={max_new_tokens:32768,\
temperature:0.6,top_p:0.95}" "aime24|0,math_500|0" --custom-tasks openrs_cli/evaluate/lighteval_tasks.py

Install lighteval in its own environment (`pip install 'openrs[lighteval]'`: lighteval 0.13 pins
math-verify 0.5.2); offline, lighteval's registry must be patched to skip its built-in tasks
(`openrs_cli.evaluate.lighteval_engine.patch_registry`). Data: the bundled openrs copies, written once as
lighteval-readable folders under `$OPENRS_CACHE/lighteval-data/`; `OPENRS_LIGHTEVAL_DATA=hub` uses the paper's
hub datasets instead. Metric: extractive match as the paper ran it — predictions as expressions and LaTeX
(boxed first), gold as an expression (aime24, amc23) or LaTeX (others), precision 5, any match, 5 s limit.
This module imports lighteval at the top: only lighteval should import it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from lighteval.metrics.dynamic_metrics import MultilingualExtractiveMatchMetric
from lighteval.metrics.utils.extractive_match_utils import ExprExtractionConfig, LatexExtractionConfig
from lighteval.metrics.utils.metric_utils import SampleLevelMetric
from lighteval.tasks.lighteval_task import LightevalTaskConfig
from lighteval.tasks.requests import Doc, SamplingMethod
from lighteval.utils.language import Language

from openrs_cli.evaluate.tasks import PROMPT, TASKS, load_task
from openrs_cli.tiny import cache_root


def extractive_match(gold_kind: str) -> MultilingualExtractiveMatchMetric:
    """The paper's extractive match: pred as expr + LaTeX (boxed first), gold as expr or LaTeX, precision 5."""
    gold = (ExprExtractionConfig(),) if gold_kind == "expr" else (LatexExtractionConfig(),)
    return MultilingualExtractiveMatchMetric(
        language=Language.ENGLISH,
        gold_extraction_target=gold,
        pred_extraction_target=(ExprExtractionConfig(), LatexExtractionConfig(boxed_match_priority=0)),
        aggregation_function=max,
        fallback_mode="first_match",
        extraction_mode="any_match",
        precision=5,
        timeout_seconds=5,
    )


def _metric(gold_kind: str) -> SampleLevelMetric:
    return SampleLevelMetric(
        metric_name="extractive_match",
        sample_level_fn=extractive_match(gold_kind),
        category=SamplingMethod.GENERATIVE,
        corpus_level_fn=np.mean,
        higher_is_better=True,
    )


def _data_dir(name: str) -> str:
    """A folder lighteval can `load_dataset` from (test.jsonl with problem/gold/id), built from the bundled copy."""
    d = Path(os.environ.get("OPENRS_LIGHTEVAL_DATA_DIR", cache_root() / "lighteval-data")) / name
    f = d / "test.jsonl"
    if not f.is_file():
        from openrs_cli import jsonl

        jsonl.write_all(f, ({"id": p.id, "problem": p.problem, "gold": p.gold} for p in load_task(TASKS[name]).problems))
    return str(d)


def _prompt_fn(problem_field: str, gold_field: str):
    def prompt(line: dict, task_name: str | None = None) -> Doc:
        return Doc(task_name=task_name, query=PROMPT.format(problem=line[problem_field]),
                   choices=[str(line[gold_field])], gold_index=0)

    return prompt


def _config(name: str) -> LightevalTaskConfig:
    t = TASKS[name]
    hub = os.environ.get("OPENRS_LIGHTEVAL_DATA") == "hub"
    return LightevalTaskConfig(
        name=name,
        prompt_function=_prompt_fn(t.hub_prompt_field, t.hub_gold_field) if hub else _prompt_fn("problem", "gold"),
        hf_repo=t.hub_id if hub else _data_dir(name),
        hf_subset="default",
        hf_avail_splits=[t.hub_split] if hub else ["test"],
        evaluation_splits=[t.hub_split] if hub else ["test"],
        few_shots_split=None,
        few_shots_select=None,
        generation_size=32768,
        metrics=[_metric(t.gold_kind)],
        stop_sequence=[],
        version=t.version,
    )


TASKS_TABLE = [_config(n) for n in TASKS]
