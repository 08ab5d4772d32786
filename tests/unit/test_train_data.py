"""Worker-side data and metrics: dataset sources, conversational prompts, prompt shortening, metric records."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from openrs_cli.errors import DataError
from openrs_cli.recipes import load_recipe
from openrs_cli.train.data import build_train_dataset, fit_prompt, load_rows

ROWS = [{"problem": f"What is {i} + {i}?", "solution": f"$\\boxed{{{2 * i}}}$", "answer": str(2 * i),
         "source": "t", "messages": "x"} for i in range(6)]


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _jsonl(path, rows=ROWS):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_sources_jsonl_parquet_saved_dir_bundled(tmp_path):
    import datasets

    spec = load_recipe("tiny").dataset
    f = _jsonl(tmp_path / "d.jsonl")
    assert len(load_rows(spec.model_copy(update={"id": str(f), "limit": None}))) == 6
    datasets.Dataset.from_list(ROWS).to_parquet(str(tmp_path / "d.parquet"))
    assert len(load_rows(spec.model_copy(update={"id": str(tmp_path / "d.parquet"), "limit": 4}))) == 4
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "built"))  # what `openrs data build` writes
    (tmp_path / "built" / "data.parquet").write_bytes(b"not read")
    assert len(load_rows(spec.model_copy(update={"id": str(tmp_path / "built"), "limit": None}))) == 6
    assert len(load_rows(spec)) == 64  # bundled:train-sample with limit 64


def test_source_errors_name_the_fix(tmp_path):
    spec = load_recipe("tiny").dataset
    with pytest.raises(DataError, match="no column 'question'"):
        load_rows(spec.model_copy(update={"id": str(_jsonl(tmp_path / "d.jsonl")), "prompt_column": "question"}))
    with pytest.raises(DataError, match="openrs data build"):
        load_rows(spec.model_copy(update={"id": "no-such-org/no-such-dataset-xyz"}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no saved dataset"):
        load_rows(spec.model_copy(update={"id": str(tmp_path / "empty")}))


def test_prompts_are_conversations_with_declared_gold_only(tmp_path, tok):
    r = load_recipe("tiny", [f"dataset.id={_jsonl(tmp_path / 'd.jsonl')}", "dataset.solution_column=solution",
                             "dataset.answer_column=null", "dataset.limit=null"])
    ds, shortened = build_train_dataset(r, tok)
    row = ds[0]
    assert row["prompt"] == [{"role": "system", "content": r.system_prompt},
                             {"role": "user", "content": "What is 0 + 0?"}]
    assert row["solution"] == "$\\boxed{0}$" and shortened == 0
    assert "answer" not in ds.column_names and "messages" not in ds.column_names  # undeclared gold is not passed
    r2 = r.model_copy(update={"dataset": r.dataset.model_copy(update={"answer_column": "answer"})})
    assert build_train_dataset(r2, tok)[0][3]["answer"] == "6"


def test_long_prompts_are_cut_from_the_left(tok):
    msgs = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": " ".join(f"word{i}" for i in range(200)) + " What is 2+2?"}]
    out, cut = fit_prompt(msgs, tok, 60)
    assert cut and out[0] == msgs[0] and out[1]["content"].endswith("What is 2+2?")
    text = tok.apply_chat_template(out, tokenize=False, add_generation_prompt=True)
    assert len(tok(text, add_special_tokens=False)["input_ids"]) <= 60
    assert fit_prompt(msgs[:1] + [{"role": "user", "content": "hi"}], tok, 60)[1] is False
    with pytest.raises(DataError, match="max_prompt_length"):
        fit_prompt(msgs, tok, 3)


def test_metrics_callback_writes_metrics_records(tmp_path):
    from openrs_cli.train.callbacks import StepClock, make_metrics_callback

    clock = StepClock()
    cb = make_metrics_callback(tmp_path, clock, 32)
    state = SimpleNamespace(global_step=0, max_steps=2, is_world_process_zero=True)
    cb.on_train_begin(None, state, None)
    cb.on_step_begin(None, state, None)
    clock.add_generation(0.0)
    state.global_step = 1
    cb.on_step_end(None, state, None)
    cb.on_log(None, state, None, logs={"reward": 0.5, "reward_std": 0.1, "rewards/format/mean": 0.5, "kl": 0.01,
                                       "completions/mean_length": 20.0, "completions/max_length": 32.0,
                                       "completions/clipped_ratio": 0.25, "learning_rate": 1e-4,
                                       "openrs/non_english_frac": 0.0})
    cb.on_log(None, state, None, logs={"train_runtime": 3.0})  # the end-of-train summary is not a step record
    recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(recs) == 1
    r = recs[0]
    assert r["kind"] == "metrics" and r["step"] == 1 and r["reward_mean"] == 0.5 and r["truncated_frac"] == 0.25
    assert r["rewards/format/mean"] == 0.5 and r["max_completion_length"] == 32 and r["non_english_frac"] == 0.0
    assert r["generation_time_s"] == 0.0 and r["optimisation_time_s"] == pytest.approx(r["step_time_s"])


def test_metrics_split_each_step_into_generation_and_optimisation(tmp_path, monkeypatch):
    """With generation time that is not zero: two steps of 5 s and 9 s, of which 3 s and 4 s generated, logged
    together, give means 7 s = 3.5 s generation + 3.5 s optimisation (a fake clock: no timing in the test)."""
    from openrs_cli.train import callbacks

    now = [100.0]
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: now[0])
    clock = callbacks.StepClock()
    cb = callbacks.make_metrics_callback(tmp_path, clock, 32)
    state = SimpleNamespace(global_step=0, max_steps=4, is_world_process_zero=True)
    cb.on_train_begin(None, state, None)
    for step_s, gen_s in ((5.0, 3.0), (9.0, 4.0)):
        cb.on_step_begin(None, state, None)
        clock.add_generation(gen_s)
        now[0] += step_s
        state.global_step += 1
        cb.on_step_end(None, state, None)
    cb.on_log(None, state, None, logs={"reward": 0.5})
    (r,) = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert r["step_time_s"] == pytest.approx(7.0) and r["generation_time_s"] == pytest.approx(3.5)
    assert r["optimisation_time_s"] == pytest.approx(3.5)
    assert r["elapsed_s"] == pytest.approx(14.0) and r["eta_s"] == pytest.approx(14.0)  # 2 of 4 steps in 14 s


def test_completions_log_reads_a_completion_as_the_rewards_do():
    """completions.jsonl and the non-English share read TRL's completions by the rewards' rule (one rule, not two:
    a message without content, or a non-dict part, was turned into 'None' text there)."""
    from openrs_cli.rewards.funcs import completion_texts
    from openrs_cli.train.callbacks import completion_text

    samples = ["plain", [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": None}],
               [{"role": "assistant", "content": "x"}, "stray"], {"content": "d"}, None]
    assert [completion_text(c) for c in samples] == completion_texts(samples) == ["plain", "a", "x", "d", ""]


def test_the_trl_internals_the_worker_relies_on_still_exist():
    """The worker's trainer overrides three GRPOTrainer methods and reads its `_logs` buffers: a TRL release that
    renames one would silently drop the timing, cost phases or completions log (or crash mid-run)."""
    import inspect

    from trl import GRPOTrainer

    for name, params in {"_generate_and_score_completions": ["self", "inputs"],
                         "_save_checkpoint": ["self", "model", "trial"], "log": ["self", "logs", "start_time"]}.items():
        assert list(inspect.signature(getattr(GRPOTrainer, name)).parameters)[: len(params)] == params, name
    src = inspect.getsource(GRPOTrainer)
    for key in ("prompt", "completion", "rewards", "advantages"):
        assert f'self._logs["{key}"]' in src, key
