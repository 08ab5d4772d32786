"""The five evaluation tasks as plain data, the paper's prompt, and loading a task's problems.

A task names where its problems come from (the bundled copy by default, the paper's hub dataset with
`data="hub"`, or a local JSONL file), which field is the question, which field is the gold, and how the gold
is parsed (plain expression for aime24/amc23, LaTeX for the others), exactly as Open-RS's lighteval tasks did.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from openrs_cli.errors import DataError, TaskError

# Verbatim from Open-RS's evaluate.py (note the two spaces after "clearly.").
PROMPT = (
    "Solve the following math problem efficiently and clearly.  The last line of your response should be of the "
    "following format: 'Therefore, the final answer is: $\\boxed{{ANSWER}}$. I hope it is correct' (without quotes) "
    "where ANSWER is just the final number or expression that solves the problem. Think step by step before "
    "answering.\n\n{problem}"
)


@dataclass(frozen=True)
class TaskSpec:
    """One benchmark: where its rows come from and how its gold is read."""

    name: str
    version: int
    bundled: str  # name in openrs_cli.evalsets
    gold_field: str  # field of a bundled row holding the gold ("answer" or the full "solution")
    gold_kind: str  # "expr" (aime24, amc23) or "latex"
    hub_id: str
    hub_split: str
    hub_prompt_field: str
    hub_gold_field: str
    n_problems: int
    prompt_field: str = "problem"
    wrap_gold: bool = False  # bare LaTeX answers get $...$ so the LaTeX gold parser can read them

    def grader_config(self):
        """The grading preset the paper's lighteval metric used for this task."""
        from openrs_cli import grading

        return grading.EVAL_EXPR_GOLD if self.gold_kind == "expr" else grading.EVAL_LATEX_GOLD


TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec("aime24", 1, "aime24", "answer", "expr", "HuggingFaceH4/aime_2024", "train", "problem", "answer", 30),
        TaskSpec("amc23", 1, "amc23", "answer", "expr", "knoveleng/AMC-23", "train", "problem", "answer", 40),
        TaskSpec("math_500", 1, "math500", "solution", "latex", "HuggingFaceH4/MATH-500", "test", "problem",
                 "solution", 500),
        TaskSpec("minerva", 1, "minerva", "solution", "latex", "knoveleng/Minerva-Math", "train", "problem",
                 "solution", 272),
        TaskSpec("olympiadbench", 1, "olympiadbench", "answer", "latex", "knoveleng/OlympiadBench", "train",
                 "question", "answer", 675, wrap_gold=True),
    ]
}
ALIASES = {"math500": "math_500", "math-500": "math_500", "olympiad_bench": "olympiadbench"}
# Not a benchmark: the held-out split `openrs eval select` picks checkpoints on (evalsets/data/SOURCES.md). Never
# part of `--tasks all`, of an average, or of the report's tables.
VALIDATION = TaskSpec("validation", 1, "validation", "answer", "latex", "", "", "problem", "answer", 100,
                      wrap_gold=True)


def get_task(name: str) -> TaskSpec:
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key == VALIDATION.name:
        return VALIDATION
    if key not in TASKS:
        raise TaskError(f"unknown task '{name}'; valid tasks: {', '.join(TASKS)}")
    return TASKS[key]


def parse_tasks(spec: str) -> list[TaskSpec]:
    """'aime24,amc23' (or 'all') -> task specs, in the given order, without duplicates."""
    names = list(TASKS) if spec.strip().lower() == "all" else [s for s in spec.split(",") if s.strip()]
    if not names:
        raise TaskError(f"no task given; valid tasks: {', '.join(TASKS)} (or 'all')")
    out: list[TaskSpec] = []
    for n in names:
        t = get_task(n)
        if t not in out:
            out.append(t)
    return out


def task_for_id(problem_id: str) -> TaskSpec | None:
    """Infer the task from a bundled problem id (`aime24-67`, `test/algebra/2584.json`, ...)."""
    if problem_id.startswith("test/"):
        return TASKS["math_500"]
    for t in TASKS.values():
        if problem_id.startswith(t.bundled + "-"):
            return t
    return None


def build_messages(problem: str) -> list[dict]:
    """The paper's query as a single user turn (no system prompt); the model's chat template renders it."""
    return [{"role": "user", "content": PROMPT.format(problem=problem)}]


@dataclass(frozen=True)
class Problem:
    id: str
    problem: str
    gold: str


@dataclass(frozen=True)
class TaskData:
    task: TaskSpec
    problems: list[Problem]
    source: str  # "bundled", "hub:<id>@<split>" or a file path
    sha256: str | None  # of the bundled/local file (None for hub data)
    rows: int | None = None  # problems in the data before --limit

    def coverage(self) -> dict:
        """Whether these problems are the whole benchmark: results.json's `complete` and `coverage` for the task.

        Complete: every problem of the bundled copy (or of the paper's hub dataset), no --limit cutting it. A
        --limit cut, or a --data file other than the bundled copy, is partial: marked ("5/30 problems") and never
        averaged beside full benchmarks."""
        from openrs_cli import evalsets

        n, full = len(self.problems), self.task.n_problems
        same_data = self.source == "bundled" or self.source.startswith("hub:") or (
            self.sha256 is not None and self.sha256 == evalsets.sha256_file(evalsets.path(self.task.bundled)))
        complete = same_data and n == (self.rows if self.rows is not None else n) and n >= full
        if same_data:
            text = f"{n}/{full} problems"
        else:
            text = f"{n} problems from {self.source}, not the {full}-problem benchmark"
        return {"benchmark_problems": full, "complete": complete, "coverage": text}


def _rows_from_jsonl(path: Path) -> list[dict]:
    from openrs_cli.jsonl import read_objects

    return read_objects(path, "give a JSONL file of problems with their answers")


def latex_delimited(gold: str) -> str:
    """A bare LaTeX answer (`2n-2`, `\\frac{1}{2 n+2}`) wrapped in `$...$`; delimited text passes unchanged.

    math-verify's LaTeX extraction only finds math inside delimiters ($...$, \\[...\\], \\boxed{}); a bare
    gold would not parse and fall back to string equality, marking `2(n-1)` wrong against `2n-2`. The
    source's own final answers carry the dollars (kept in the bundled rows' `meta.final_answer_raw`).
    """
    g = gold.strip()
    if "$" in g or "\\boxed" in g or "\\[" in g or "\\(" in g:
        return g
    return f"${g}$"


def _to_problems(rows: list[dict], prompt_field: str, gold_field: str, where: str, id_prefix: str,
                 wrap_latex: bool = False) -> list[Problem]:
    out = []
    for i, r in enumerate(rows):
        q = r.get(prompt_field, r.get("problem"))
        g = r.get(gold_field, r.get("answer"))
        if not q or g is None or g == "":
            raise DataError(f"{where}: row {i} lacks '{prompt_field}' or '{gold_field}'; every row needs both")
        pid = str(r.get("id", r.get("unique_id", f"{id_prefix}-{i}")))
        out.append(Problem(pid, str(q), latex_delimited(str(g)) if wrap_latex else str(g)))
    return out


def load_task(task: TaskSpec, data: str = "bundled", limit: int | None = None) -> TaskData:
    """Rows of a task from the bundled copy (sha256-checked), the paper's hub dataset, or a local JSONL path."""
    from openrs_cli import evalsets

    if data == "bundled":
        p = evalsets.path(task.bundled)
        probs = _to_problems(_rows_from_jsonl(p), task.prompt_field, task.gold_field, str(p), task.bundled,
                             task.wrap_gold)
        td = TaskData(task, probs, "bundled", evalsets.sha256_file(p), len(probs))
    elif data == "hub":
        try:
            import datasets

            ds = datasets.load_dataset(task.hub_id, split=task.hub_split)
        except Exception as e:  # offline, missing dataset, auth ...
            raise DataError(
                f"cannot load {task.hub_id} ({task.hub_split}) from the hub: {type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}; use the bundled copy (--data bundled)"
            ) from None
        probs = _to_problems(list(ds), task.hub_prompt_field, task.hub_gold_field, task.hub_id, task.bundled,
                             task.wrap_gold)
        td = TaskData(task, probs, f"hub:{task.hub_id}@{task.hub_split}", None, len(probs))
    else:
        p = Path(data)
        if p.is_dir():
            p = p / f"{task.name}.jsonl"
        if not p.is_file():
            raise DataError(f"--data {data}: no such file (give 'bundled', 'hub', a JSONL file or a dir of <task>.jsonl)")
        probs = _to_problems(_rows_from_jsonl(p), task.prompt_field, task.gold_field, str(p), task.bundled,
                             task.wrap_gold)
        td = TaskData(task, probs, str(p), evalsets.sha256_file(p), len(probs))
    ids = [pr.id for pr in td.problems]
    if len(set(ids)) != len(ids):
        raise DataError(f"{td.source}: duplicate problem ids in task {task.name}; ids must be unique")
    if limit is not None:
        td = TaskData(td.task, td.problems[:limit], td.source, td.sha256, td.rows)
    return td
