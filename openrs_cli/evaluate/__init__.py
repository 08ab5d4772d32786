"""Evaluation: the paper's five math tasks, generation backends, grading, pass@k / maj@k / bootstrap CIs, resume.

Light at import: backends (torch, transformers, vLLM, lighteval) load only when a run starts.

    from openrs_cli.evaluate import TASKS, generate, run_eval, EvalConfig, score_file, compare_results
"""

from openrs_cli.evaluate.generation import Completion, generate
from openrs_cli.evaluate.runner import EvalConfig, run_eval
from openrs_cli.evaluate.scoring import compare_results, score_file, score_records
from openrs_cli.evaluate.tasks import PROMPT, TASKS, TaskSpec, build_messages, get_task, load_task, parse_tasks

__all__ = [
    "PROMPT", "TASKS", "Completion", "EvalConfig", "TaskSpec", "build_messages", "compare_results", "generate",
    "get_task", "load_task", "parse_tasks", "run_eval", "score_file", "score_records",
]
