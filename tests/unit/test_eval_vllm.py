"""vLLM eval backend without an engine: placement (GPU / CPU data parallel), the engines' environment, the
context fit, no CUDA initialisation in the parent, and engine worker processes that leave nothing behind
(real processes, a stand-in target instead of vLLM)."""

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import types

import psutil
import pytest

from openrs_cli.errors import OpenrsError
from openrs_cli.evaluate import backend_base as B
from openrs_cli.evaluate import generation as G
from openrs_cli.evaluate import vllm_backend as V
from openrs_cli.evaluate import workers as W


def test_placement_gpu_and_cpu():
    p = B.place("vllm", None, gpus=["2", "3"])
    assert p == B.Placement("cuda", ("2", "3")) and p.gpu_indices == [0, 1]  # CUDA indices in this process
    assert B.place("vllm", 1, gpus=["2", "3"]).gpu_indices == [0]  # the cost monitor bills one GPU
    assert B.place("transformers", 2, gpus=["0", "1"]).engines == ("0",)
    with pytest.raises(OpenrsError, match="only 2 GPU"):
        B.place("vllm", 3, gpus=["0", "1"])
    cpu = B.place("vllm", 2, gpus=[], cores=[0, 1])
    assert cpu == B.Placement("cpu", ("0", "1")) and cpu.gpu_indices == []  # two engines, one core each
    assert B.place("vllm", None, gpus=[], cores=[0, 1]).engines == ("0,1",)
    assert B.place("vllm", 2, gpus=[], cores=[0, 1, 2, 4, 5]).engines == ("0,1,2", "4,5")
    with pytest.raises(OpenrsError, match="only 2 CPU core"):
        B.place("vllm", 3, gpus=[], cores=[0, 1])


def test_engine_env_pins_gpu_or_cores_and_spawns():
    gpu = B.Placement("cuda", ("2", "3"))
    assert V.engine_env(gpu, 1, {}) == {"VLLM_WORKER_MULTIPROC_METHOD": "spawn", "CUDA_VISIBLE_DEVICES": "3"}
    cpu = B.Placement("cpu", ("0", "1"))
    assert V.engine_env(cpu, 1, {"VLLM_CPU_KVCACHE_SPACE": "1"}) == {"VLLM_WORKER_MULTIPROC_METHOD": "spawn",
                                                                   "VLLM_CPU_OMP_THREADS_BIND": "1"}
    assert "VLLM_CPU_OMP_THREADS_BIND" not in V.engine_env(cpu, 1, {"VLLM_CPU_OMP_THREADS_BIND": "0|1"})
    assert V.engine_env(B.Placement("cpu", ("0,1",)), 0, {}) == {"VLLM_WORKER_MULTIPROC_METHOD": "spawn",
                                                                 "VLLM_CPU_KVCACHE_SPACE": "4"}


def test_context_fit():
    assert B.fit_context(2048, None, 100, 32768)[0] == 2048  # the model's context bounds the default
    assert B.fit_context(32768, None, 100, 512) == (612, None)  # prompt + budget, no warning
    assert B.fit_context(None, None, 100, 512) == (612, None)
    ctx, warning = B.fit_context(2048, None, 100, 32768)
    assert "capped" in warning and "--max-new-tokens 32768" in warning and "\n" not in warning
    assert B.fit_context(2048, 1024, 100, 512) == (1024, None)
    with pytest.raises(OpenrsError, match="--max-model-len 4096 is larger than the model's context 2048"):
        B.fit_context(2048, 4096, 100, 512)
    with pytest.raises(OpenrsError, match="longest prompt has 100 tokens.*above 100"):
        B.fit_context(2048, 64, 100, 512)
    assert B.cap_max_tokens(32768, 100, 2048) == 1948 and B.cap_max_tokens(10, 100, 2048) == 10


def test_model_context_from_config(tiny_model_dir):
    assert B.model_context(str(tiny_model_dir)) == 2048


def test_transformers_backend_caps_to_the_context_with_one_warning(tiny_model_dir, caplog):
    conv = [[{"role": "user", "content": "1+1?"}]]
    with caplog.at_level("WARNING"):
        be = G.make_backend("transformers", str(tiny_model_dir), sampling=G.Sampling(4096, 0.6, 0.95, 0),
                            conversations=conv)
    assert be.max_model_len == 2048  # was: no context, generation ran past max_position_embeddings
    assert len([r for r in caplog.records if "capped" in r.getMessage()]) == 1
    be = G.make_backend("transformers", str(tiny_model_dir), sampling=G.Sampling(4096, 0.6, 0.95, 0),
                        conversations=conv, max_model_len=40)
    be.eos_ids = []  # no early stop: the whole budget is used
    text = be.render(conv[0])
    out = be.generate([text], [1], [[0]], G.Sampling(4096, 0.6, 0.95, 0))
    assert out[0][0].n_tokens == 40 - be.count_tokens(text)


CUDA_ENTRY_POINTS = ("is_available", "init", "_lazy_init", "is_bf16_supported", "current_device", "set_device",
                     "get_device_properties", "mem_get_info", "synchronize")


def test_parent_never_initialises_cuda_before_the_engine_starts(tiny_model_dir, monkeypatch):
    """Up to the engine's start, the parent counts GPUs through NVML only (a stand-in pynvml with 2 GPUs) and
    never calls into torch.cuda (any call would initialise CUDA on a GPU machine); each engine gets spawn."""
    import torch

    calls = []
    for name in CUDA_ENTRY_POINTS:
        monkeypatch.setattr(torch.cuda, name, lambda *a, _n=name, **k: calls.append(_n), raising=False)
    fake_nvml = types.SimpleNamespace(nvmlInit=lambda: None, nvmlShutdown=lambda: None,
                                      nvmlDeviceGetCount=lambda: 2)
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    started = []

    class Stop(Exception):
        pass

    def start(kwargs, env):
        started.append((dict(env), list(calls)))
        raise Stop  # the engine would start here

    monkeypatch.setattr(V, "_start_worker", start)
    n = G.cuda_count()
    assert calls == []  # was: ['is_available'] (cudaGetDeviceCount initialises CUDA)
    assert n == 2 and G.pick_backend("auto") == "vllm" and G.default_batch_size("transformers") == 32
    with pytest.raises(Stop):
        G.make_backend("auto", str(tiny_model_dir), sampling=G.Sampling(64, 0.6, 0.95, 0),
                       conversations=[[{"role": "user", "content": "1+1?"}]])
    assert calls == []
    env, calls_then = started[0]
    assert calls_then == [] and env == {"VLLM_WORKER_MULTIPROC_METHOD": "spawn", "CUDA_VISIBLE_DEVICES": "0"}


# --- worker processes (real processes; a stand-in target instead of vLLM) ---

def _sleeper() -> None:
    time.sleep(600)


def _engine_like(mode: str, inbox, outbox, parent) -> None:
    """Starts a child process as vLLM's engine does (impossible in a daemonic process), then behaves per mode."""
    child = mp.get_context("spawn").Process(target=_sleeper)
    child.start()
    outbox.put(("ready", child.pid))
    if mode == "stuck":  # ignores the request to exit
        time.sleep(600)
    while inbox.get() is not None:
        outbox.put(("ok", None))


def _tree() -> set[int]:
    """Live descendants of this test process, multiprocessing's resource tracker aside."""
    out = set()
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())  # empty: already exiting
            if p.status() != psutil.STATUS_ZOMBIE and cmd and "resource_tracker" not in cmd:
                out.add(p.pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("mode", ["cooperative", "stuck"])
def test_worker_can_have_children_and_close_kills_the_tree(mode):
    before = _tree()
    w = W.Worker(_engine_like, (mode,), {"OPENRS_TEST": "1"})
    status, child = w.reply(poll_s=0.2)
    assert status == "ready"  # a daemonic worker fails here: daemonic processes are not allowed to have children
    assert os.getpgid(child) == w.proc.pid  # the engine's processes are in the worker's own group
    w.close(grace_s=1.0)
    assert _gone(child) and _gone(w.proc.pid) and _tree() == before


def test_ctrl_c_while_engines_start_leaves_nothing(tiny_model_dir, monkeypatch):
    """Ctrl-C (KeyboardInterrupt in the parent) while the backend waits for its engines: all are killed."""
    before = _tree()
    started = []

    def start(kwargs, env):
        w = W.Worker(_engine_like, ("stuck",), env)
        started.append((w, w.outbox.get(timeout=120)[1]))  # its engine child runs; the backend waits on
        if len(started) == 2:
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()  # a "ready" that never comes
        return w

    monkeypatch.setattr(V, "_start_worker", start)
    with pytest.raises(KeyboardInterrupt):
        V.VLLMBackend(str(tiny_model_dir), None, G.Sampling(64, 0.6, 0.95, 0),
                      placement=B.Placement("cpu", ("0", "1")))
    assert all(_gone(w.proc.pid) and _gone(child) for w, child in started) and _tree() == before


def test_eval_modules_import_no_cycle():
    """Backends and their shared types are apart: no evaluate module imports one that imports it back
    (function-level imports included), and no backend imports the other or generation."""
    import ast
    from pathlib import Path

    pkg = Path(B.__file__).parent
    deps = {}
    for f in pkg.glob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        deps[f.stem] = {n.rsplit(".", 1)[-1] for n in names if n.startswith("openrs_cli.evaluate.")} - {f.stem}

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for d in deps.get(todo.pop(), ()):
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return seen

    assert [m for m in deps if m in reach(m)] == []
    assert not deps["backend_base"] & {"generation", "hf_backend", "vllm_backend"}
    assert not deps["vllm_backend"] & {"generation", "hf_backend"}
    assert not deps["hf_backend"] & {"generation", "vllm_backend"}


@pytest.mark.parametrize("backend,dp,billed", [("transformers", None, [0]), ("vllm", 2, [0, 1])])
def test_eval_cost_monitor_bills_only_the_gpus_used(monkeypatch, tmp_path, backend, dp, billed):
    import openrs_cli.cost as cost
    from openrs_cli.evaluate import runner
    from openrs_cli.evaluate.tasks import get_task, load_task
    from tests.unit.test_eval_runner import ScriptedBackend

    answers = {p.problem: p.gold for p in load_task(get_task("amc23")).problems}
    monkeypatch.setattr(runner, "make_backend", lambda *a, **k: ScriptedBackend(answers))
    monkeypatch.setattr(runner, "pick_backend", lambda b: backend)
    monkeypatch.setattr(B, "visible_gpus", lambda: ["0", "1", "2", "3"])  # a 4-GPU node
    opened = []

    class Monitor:
        def phase(self, name):
            import contextlib

            return contextlib.nullcontext()

        def close(self, status):
            pass

    monkeypatch.setattr(cost, "open_monitor", lambda out, **kw: opened.append(kw) or Monitor())
    runner.run_eval(runner.EvalConfig(model="scripted", tasks="amc23", limit=2, max_new_tokens=8,
                                      out_dir=str(tmp_path), data_parallel=dp))
    assert opened == [{"kind": "eval", "gpu_indices": billed}]  # was: every visible GPU
