"""Solvable-by-model filter: sample k answers per problem with the eval generation backend (vLLM on GPU,
transformers on CPU), grade them with the shared grader, and split the rows into hard (solve rate below the
threshold) and easy (at or above it). The generator is injectable so tests can swap in a fake behind the same
signature as `openrs_cli.evaluate.generate`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from openrs_cli.data.spec import SolvableSpec

Progress = Callable[[str, int, int | None], None]


def gold_text(answer: str) -> str:
    """The gold string handed to the grader: the bare answer inside \\boxed{} in math mode."""
    return f"$\\boxed{{{answer}}}$"


def split_solvable(
    rows: list[dict],
    spec: SolvableSpec,
    seed: int,
    generate: Callable | None = None,
    on_progress: Progress | None = None,
    label: str = "solvable",
) -> tuple[list[dict], list[dict], dict]:
    """Return (hard rows, easy rows, stats). stats holds the histogram of correct samples per problem."""
    from openrs_cli.grading import EVAL_LATEX_GOLD, grade_many

    if generate is None:
        from openrs_cli.evaluate import generate
    if not rows:
        return [], [], {"correct_histogram": {}, "samples": spec.samples}
    prompts = [[{"role": "user", "content": spec.prompt.replace("{problem}", r["problem"])}] for r in rows]
    total = len(prompts)

    def gen_progress(done: int, total_: int) -> None:  # counts sequences: prompts x samples
        if on_progress:
            on_progress(f"{label}: generate", done, total_)

    if on_progress:
        on_progress(f"{label}: generate", 0, total * spec.samples)
    completions = generate(
        spec.model,
        prompts,
        samples=spec.samples,
        max_new_tokens=spec.max_new_tokens,
        temperature=spec.temperature,
        top_p=spec.top_p,
        seed=seed,
        backend=spec.backend,
        batch_size=spec.batch_size,
        on_progress=gen_progress,
    )
    if on_progress:
        on_progress(f"{label}: generate", total * spec.samples, total * spec.samples)
        on_progress(f"{label}: grade", 0, total * spec.samples)
    pairs = [(c.text, gold_text(r["answer"])) for r, cs in zip(rows, completions, strict=True) for c in cs]
    results = grade_many(pairs, EVAL_LATEX_GOLD)
    if on_progress:
        on_progress(f"{label}: grade", len(pairs), len(pairs))
    hard, easy, hist = [], [], Counter()
    pos = 0
    for r, cs in zip(rows, completions, strict=True):
        n = len(cs)
        correct = sum(1 for res in results[pos : pos + n] if res.correct)
        pos += n
        hist[correct] += 1
        rate = correct / n if n else 0.0
        (easy if rate >= spec.threshold else hard).append(r)
    return hard, easy, {"samples": spec.samples, "correct_histogram": {str(k): hist[k] for k in sorted(hist)}}
