"""vLLM backend (GPU machines only; vLLM is imported when this backend is built, never at CLI start).

Follows vLLM's documented offline API: `LLM(model=..., seed=..., max_model_len=..., gpu_memory_utilization=...)`
and `LLM.generate(prompts, SamplingParams(n=k, temperature, top_p, max_tokens, seed))`, with prompts given as
token ids (`{"prompt_token_ids": [...]}`) rendered by the model's chat template, so no second BOS is added.
Data parallel: one engine process per visible GPU (CUDA_VISIBLE_DEVICES pinned per process), prompts dealt
round-robin, results put back in input order. The argument builders are pure functions, tested without vLLM.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Sequence
from dataclasses import replace

from openrs_cli.evaluate.generation import Completion, Sampling, model_source, visible_gpus

# The paper's engine settings (lighteval vllm: max_model_length 32768, gpu_memory_utilization 0.8, bf16).
DEFAULT_MAX_MODEL_LEN = 32768
DEFAULT_GPU_MEMORY_UTILIZATION = 0.8


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


def sampling_kwargs(n: int, sampling: Sampling, seed: int) -> dict:
    """Keyword arguments for `vllm.SamplingParams`: n samples, the paper's temperature/top_p, a per-prompt seed.

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


def cap_max_tokens(max_new_tokens: int, prompt_len: int, max_model_len: int | None) -> int:
    """Generation budget that fits the engine's context (prompt + completion <= max_model_len), as lighteval
    did for the paper's 32768/32768 setting; at least 1."""
    if not max_model_len:
        return max_new_tokens
    return max(1, min(max_new_tokens, max_model_len - prompt_len))


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


def _reply(proc, outbox, poll_s: float = 5.0):
    """The next message of a data-parallel worker; an error if the process died without answering."""
    import queue

    while True:
        try:
            return outbox.get(timeout=poll_s)
        except queue.Empty:
            if not proc.is_alive():
                return ("error", f"vLLM worker process exited with code {proc.exitcode} without answering")


def _worker(gpu: str, kwargs: dict, inbox, outbox) -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    try:
        llm = _engine(kwargs)
    except Exception as e:  # e.g. out of GPU memory: the parent must hear it, not wait for "ready" forever
        outbox.put(("error", f"{type(e).__name__}: {e}"))
        return
    outbox.put(("ready", None))
    while True:
        job = inbox.get()
        if job is None:
            return
        try:
            outbox.put(("ok", _run(llm, *job)))
        except Exception as e:  # surfaced in the parent
            outbox.put(("error", f"{type(e).__name__}: {e}"))


class VLLMBackend:
    name = "vllm"

    def __init__(self, model: str, revision: str | None = None, sampling: Sampling | None = None,
                 data_parallel: int | None = None, max_model_len: int | None = DEFAULT_MAX_MODEL_LEN,
                 gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION):
        from transformers import AutoTokenizer

        seed = sampling.seed if sampling else 1234
        self.kwargs = llm_kwargs(model, revision, seed, max_model_len=max_model_len,
                                 gpu_memory_utilization=gpu_memory_utilization)
        src, gguf = model_source(model)
        self.tok = AutoTokenizer.from_pretrained(src, **({"gguf_file": gguf} if gguf else {}),
                                                 **({"revision": revision} if revision else {}))
        gpus = visible_gpus()
        self.dp = max(1, min(data_parallel or len(gpus) or 1, len(gpus) or 1))
        self.workers = []
        if self.dp == 1:
            self.llm = _engine(self.kwargs)
        else:
            ctx = mp.get_context("spawn")
            for g in gpus[: self.dp]:
                inbox, outbox = ctx.Queue(), ctx.Queue()
                p = ctx.Process(target=_worker, args=(g, self.kwargs, inbox, outbox), daemon=True)
                p.start()
                self.workers.append((p, inbox, outbox))
            for p, _, outbox in self.workers:
                status, msg = _reply(p, outbox)
                if status != "ready":
                    self.close()
                    raise RuntimeError(f"vLLM engine failed to start: {msg}")

    def render(self, messages: list[dict]) -> str:
        from openrs_cli.evaluate.generation import render_chat

        return render_chat(self.tok, messages)

    def generate(self, texts: Sequence[str], ns: Sequence[int], seeds: Sequence[int],
                 sampling: Sampling) -> list[list[Completion]]:
        ids = [self.tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        mml = self.kwargs.get("max_model_len")
        params = [sampling_kwargs(n, replace(sampling, max_new_tokens=cap_max_tokens(sampling.max_new_tokens,
                                                                                    len(i), mml)), s)
                  for n, s, i in zip(ns, seeds, ids, strict=True)]
        if not self.workers:
            raw = _run(self.llm, ids, params)
        else:
            shards = deal(len(ids), len(self.workers))
            for (_, inbox, _), idx in zip(self.workers, shards, strict=True):
                inbox.put(([ids[i] for i in idx], [params[i] for i in idx]))
            raw = [None] * len(ids)
            for (p, _, outbox), idx in zip(self.workers, shards, strict=True):
                status, res = _reply(p, outbox)
                if status != "ok":
                    raise RuntimeError(f"vLLM worker failed: {res}")
                for i, r in zip(idx, res, strict=True):
                    raw[i] = r
        return [[Completion(*c) for c in group] for group in raw]

    def close(self) -> None:
        for p, inbox, _ in self.workers:
            if p.is_alive():
                inbox.put(None)
                p.join(timeout=30)
            if p.is_alive():
                p.kill()
        self.workers = []
