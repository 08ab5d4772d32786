"""Training data for the worker: load the recipe's dataset and turn rows into conversational GRPO prompts.

Sources: `bundled:<name>` (a bundled set, e.g. `bundled:train-sample`), a directory written by `openrs data build`
or `datasets.save_to_disk`, a directory of / path to JSONL or Parquet files, or a Hugging Face Hub id.
Each row becomes `prompt = [system (if any), user problem]`; the recipe's solution column is passed to reward
functions as `solution` (and its answer column, when set, as `answer`). TRL 1.x has no `max_prompt_length`, so
prompts whose rendered chat template is longer than `generation.max_prompt_length` tokens are shortened here:
the problem text is cut from the left (its end, where the question is, is kept), as the paper's TRL
left-truncated prompts.
"""

from __future__ import annotations

from pathlib import Path

from openrs_cli.errors import DataError
from openrs_cli.recipes.schema import DatasetSpec, Recipe


def _from_files(files: list[Path]):
    from datasets import load_dataset

    kinds = {"parquet" if f.suffix == ".parquet" else "json" for f in files}
    if len(kinds) != 1:
        raise DataError(f"{files[0].parent}: mixes JSONL and Parquet files; keep one format per dataset")
    return load_dataset(kinds.pop(), data_files=[str(f) for f in files], split="train")


def load_rows(spec: DatasetSpec):
    """The dataset as a `datasets.Dataset`, limited to `spec.limit` rows."""
    import datasets

    ident = spec.id
    if ident.startswith("bundled:"):
        from openrs_cli import evalsets

        name = ident.split(":", 1)[1]
        held_out = evalsets.validation_ids() if name == "train-sample" else set()  # `openrs eval select`'s split
        rows = [{k: v for k, v in r.items() if k != "meta"} for r in evalsets.load(name) if r["id"] not in held_out]
        ds = datasets.Dataset.from_list(rows)
    elif Path(ident).exists():
        p = Path(ident)
        if p.is_dir() and (p / "dataset_dict.json").is_file():
            dd = datasets.load_from_disk(str(p))
            if spec.split not in dd:
                raise DataError(f"{p} has no split '{spec.split}'; valid: {', '.join(dd)}; set dataset.split")
            ds = dd[spec.split]
        elif p.is_dir() and (p / "state.json").is_file():
            ds = datasets.load_from_disk(str(p))
        elif p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix in (".jsonl", ".json", ".parquet"))
            if not files:
                raise DataError(f"{p} holds no saved dataset and no .jsonl/.parquet files; point dataset.id at "
                                f"a directory from `openrs data build` or at a data file")
            ds = _from_files(files)
        else:
            if p.suffix not in (".jsonl", ".json", ".parquet"):
                raise DataError(f"{p}: unknown data file type '{p.suffix}'; use .jsonl or .parquet")
            ds = _from_files([p])
    else:
        try:
            ds = datasets.load_dataset(ident, name=spec.config, split=spec.split)
        except Exception as e:  # offline, missing, private: one line with the reason
            raise DataError(f"cannot load dataset '{ident}' (split {spec.split}): {str(e).splitlines()[0][:200]}; "
                            f"check the id, or build a local copy with `openrs data build`") from None
    if spec.limit:
        ds = ds.select(range(min(spec.limit, len(ds))))
    for role, col in (("prompt_column", spec.prompt_column), ("solution_column", spec.solution_column),
                      ("answer_column", spec.answer_column)):
        if col is not None and col not in ds.column_names:
            raise DataError(f"dataset '{ident}' has no column '{col}' (dataset.{role}); columns: "
                            f"{', '.join(ds.column_names)}")
    if len(ds) == 0:
        raise DataError(f"dataset '{ident}' is empty; check dataset.split / dataset.limit")
    return ds


def fit_prompt(messages: list[dict], tokenizer, max_tokens: int) -> tuple[list[dict], bool]:
    """Shorten the last (user) message from the left until the rendered prompt has <= max_tokens tokens."""

    def length(msgs):
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    over = length(messages) - max_tokens
    if over <= 0:
        return messages, False
    ids = tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"]
    cut = over
    while cut < len(ids):
        trial = messages[:-1] + [{**messages[-1], "content": tokenizer.decode(ids[cut:])}]
        over = length(trial) - max_tokens
        if over <= 0:
            return trial, True
        cut += max(over, 1)
    raise DataError(f"the system prompt and chat template alone exceed generation.max_prompt_length "
                    f"({max_tokens} tokens); raise it or shorten system_prompt")


def build_train_dataset(recipe: Recipe, tokenizer):
    """Rows -> columns `prompt` (conversation), `solution`, optionally `answer`, plus the other data columns.

    Returns (dataset, number of prompts shortened to fit max_prompt_length).
    """
    spec = recipe.dataset
    ds = load_rows(spec)
    system = recipe.system_prompt
    max_len = recipe.generation.max_prompt_length
    shortened = 0

    def convert(row):
        nonlocal shortened
        msgs = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": str(row[spec.prompt_column])}]
        msgs, cut = fit_prompt(msgs, tokenizer, max_len)
        shortened += cut
        out = {"prompt": msgs, "solution": str(row[spec.solution_column])}
        if spec.answer_column:
            out["answer"] = str(row[spec.answer_column])
        return out

    # Undeclared gold-like columns are dropped so reward functions only see the gold the recipe names.
    drop = [c for c in ds.column_names if c in ("messages", "prompt", "solution", "answer")]
    rows = [dict(convert(r), **{k: v for k, v in r.items() if k not in drop}) for r in ds]
    import datasets

    return datasets.Dataset.from_list(rows), shortened
