"""Generation backends: transformers (CPU or GPU, batched) and vLLM (GPU, data parallel), same sampling semantics.

Both render each conversation with the model's own chat template (add_generation_prompt) and feed the token
ids without adding special tokens again; both sample with temperature/top_p only (no top-k, no repetition
penalty, nothing taken from the model's generation_config), and temperature 0 means greedy. Each unit of work
(one prompt, n samples) carries its own seed so reruns are reproducible per problem.

`generate()` is the public entry point (also used by data building); the eval runner drives a backend batch
by batch to append results as they finish. heavy imports happen inside the backends.
"""

from __future__ import annotations

import importlib.util
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from openrs_cli.errors import OpenrsError

BACKENDS = ("auto", "transformers", "vllm")


@dataclass(frozen=True)
class Completion:
    text: str
    n_tokens: int
    finish_reason: str  # "stop" (end of sequence) or "length" (hit max_new_tokens)


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int


def unit_seed(seed: int, key: str) -> int:
    """A per-unit seed from the run seed and a stable key (problem id + first sample index)."""
    return (seed * 1_000_003 + zlib.crc32(key.encode())) % (2**31 - 1)


def model_source(model: str) -> tuple[str, str | None]:
    """(path or hub id, gguf file name or None); `openrs-tiny` resolves to the cached tiny model."""
    from openrs_cli.tiny import resolve_model

    model = resolve_model(model)
    if model.lower().endswith(".gguf"):
        p = Path(model)
        if not p.is_file():
            raise OpenrsError(f"--model {model}: no such GGUF file; give an existing .gguf path")
        return str(p.resolve().parent), p.name
    return model, None


def cuda_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:
        return 0


def pick_backend(backend: str) -> str:
    """'auto' -> vllm when it is installed and a GPU is present, else transformers."""
    if backend not in BACKENDS:
        raise OpenrsError(f"unknown backend '{backend}'; valid: {', '.join(BACKENDS)}")
    if backend == "auto":
        return "vllm" if importlib.util.find_spec("vllm") and cuda_count() > 0 else "transformers"
    if backend == "vllm" and not importlib.util.find_spec("vllm"):
        raise OpenrsError("backend vllm: vLLM is not installed; `pip install 'openrs[gpu]'` on a GPU machine "
                          "or use --backend transformers")
    return backend


class TransformersBackend:
    """Batched `model.generate` with left padding; CPU float32 or GPU bfloat16."""

    name = "transformers"

    def __init__(self, model: str, revision: str | None = None, device: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        src, gguf = model_source(model)
        kw = {"revision": revision} if revision else {}
        if gguf:
            kw["gguf_file"] = gguf
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
        try:
            self.tok = AutoTokenizer.from_pretrained(src, **kw)
            self.model = AutoModelForCausalLM.from_pretrained(src, dtype=dtype, **kw).to(self.device)
        except (OSError, ValueError) as e:
            raise OpenrsError(f"cannot load model '{model}': {str(e).splitlines()[0]}; give a model dir, a hub id "
                              f"available offline, or a .gguf file") from None
        self.model.eval()
        self.tok.padding_side = "left"
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos] if eos is not None else []
        if self.tok.eos_token_id is not None and self.tok.eos_token_id not in eos:
            eos.append(self.tok.eos_token_id)
        self.eos_ids = eos

    def render(self, messages: list[dict]) -> str:
        return render_chat(self.tok, messages)

    def generate(self, texts: Sequence[str], ns: Sequence[int], seeds: Sequence[int],
                 sampling: Sampling) -> list[list[Completion]]:
        import torch
        from transformers import GenerationConfig

        flat = [t for t, n in zip(texts, ns, strict=True) for _ in range(n)]
        enc = self.tok(flat, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        greedy = sampling.temperature <= 0
        # A fresh config: the paper's settings only, nothing inherited from the model's generation_config.
        # Every knob is set explicitly: transformers fills unset (None) fields from the model's config.
        cfg = GenerationConfig(
            max_new_tokens=sampling.max_new_tokens, min_new_tokens=0, do_sample=not greedy,
            temperature=1.0 if greedy else sampling.temperature, top_p=1.0 if greedy else sampling.top_p,
            top_k=None if greedy else 0, typical_p=1.0, repetition_penalty=1.0, no_repeat_ngram_size=0, num_beams=1,
            eos_token_id=self.eos_ids, pad_token_id=self.tok.pad_token_id,
        )
        torch.manual_seed(seeds[0] if seeds else sampling.seed)
        with torch.inference_mode():
            out = self.model.generate(**enc, generation_config=cfg)
        new = out[:, enc["input_ids"].shape[1]:].tolist()
        comps = []
        for ids in new:
            n_tok, reason = len(ids), "length"
            for j, t in enumerate(ids):
                if t in self.eos_ids:
                    n_tok, reason = j + 1, "stop"
                    break
            comps.append(Completion(self.tok.decode(ids[:n_tok], skip_special_tokens=True), n_tok, reason))
        grouped, i = [], 0
        for n in ns:
            grouped.append(comps[i:i + n])
            i += n
        return grouped

    def close(self) -> None:
        pass


def render_chat(tokenizer, messages: list[dict]) -> str:
    """The model's chat template with the generation prompt; plain content when the tokenizer has none."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in messages)


def default_batch_size(backend: str) -> int:
    if backend == "vllm":
        return 512  # sequences handed to vLLM at a time; it batches internally
    return 32 if cuda_count() else 8


def make_backend(backend: str, model: str, revision: str | None = None, sampling: Sampling | None = None,
                 **vllm_opts):
    """An initialised backend for `model` ('auto' resolved)."""
    name = pick_backend(backend)
    if name == "vllm":
        from openrs_cli.evaluate.vllm_backend import VLLMBackend

        return VLLMBackend(model, revision, sampling, **vllm_opts)
    return TransformersBackend(model, revision)


def generate(model: str, prompts: list[list[dict]], *, samples: int = 1, max_new_tokens: int,
             temperature: float, top_p: float, seed: int, backend: str = "auto", batch_size: int | None = None,
             on_progress: Callable[[int, int], None] | None = None) -> list[list[Completion]]:
    """`samples` completions for each conversation in `prompts` (one inner list per prompt, in order).

    on_progress(done_sequences, total_sequences) is called after each batch.
    """
    if samples < 1:
        raise OpenrsError(f"samples must be >= 1 (got {samples})")
    sampling = Sampling(max_new_tokens, temperature, top_p, seed)
    be = make_backend(backend, model, sampling=sampling)
    try:
        bs = batch_size or default_batch_size(be.name)
        per_chunk = max(1, bs // samples)
        texts = [be.render(m) for m in prompts]
        out: list[list[Completion]] = []
        for start in range(0, len(texts), per_chunk):
            chunk = texts[start:start + per_chunk]
            seeds = [unit_seed(seed, f"{start + i}/0") for i in range(len(chunk))]
            out.extend(be.generate(chunk, [samples] * len(chunk), seeds, sampling))
            if on_progress:
                on_progress(len(out) * samples, len(texts) * samples)
        return out
    finally:
        be.close()


def visible_gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip()]
    return [str(i) for i in range(cuda_count())]
