"""What every generation backend shares: the record types, per-unit seeds, model sources, chat rendering,
device discovery without initialising CUDA, engine placement and the context / generation-budget fit.

Nothing here imports torch, transformers or vLLM at module level, and nothing here touches CUDA: GPUs are
counted through NVML (nvidia-ml-py), so a vLLM engine started later can still fork or spawn cleanly.
"""

from __future__ import annotations

import json
import os
import zlib
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
    """A seed from the run seed and a stable key."""
    return (seed * 1_000_003 + zlib.crc32(key.encode())) % (2**31 - 1)


def check_seeds(ns, seeds) -> None:
    """Every backend's `generate(texts, ns, seeds, ...)` takes one seed per sample: len(seeds[i]) == ns[i]."""
    for n, group in zip(ns, seeds, strict=True):
        if len(group) != n:
            raise ValueError(f"{n} samples need {n} seeds, got {len(group)}")


def sample_seed(seed: int, task: str, problem_id: str, sample: int) -> int:
    """The seed of one eval sample: from (task, problem, sample index, run seed) only, so growing --samples or
    resuming generates the same sample again, whatever batch or engine it lands in."""
    return unit_seed(seed, f"{task}/{problem_id}/{sample}")


def model_source(model: str) -> tuple[str, str | None]:
    """(path or hub id, gguf file name or None); `openrs-tiny` resolves to the cached tiny model."""
    from openrs_cli.models import resolve_model

    model = resolve_model(model)
    if model.lower().endswith(".gguf"):
        p = Path(model)
        if not p.is_file():
            raise OpenrsError(f"--model {model}: no such GGUF file; give an existing .gguf path")
        return str(p.resolve().parent), p.name
    return model, None


def render_chat(tokenizer, messages: list[dict]) -> str:
    """The model's chat template with the generation prompt; plain content when the tokenizer has none."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in messages)


def nvml_gpu_count() -> int:
    """GPUs on this machine according to NVML; 0 without a driver or nvidia-ml-py.

    Not torch.cuda.is_available(): that calls cudaGetDeviceCount, which initialises the CUDA driver in this
    process, and a vLLM engine forked afterwards fails with "Cannot re-initialize CUDA in forked subprocess"
    (vLLM's own guard only looks at torch.cuda.is_initialized(), which stays False after that call).
    """
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    except Exception:
        return 0
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries (all NVML devices when it is unset)."""
    n = nvml_gpu_count()
    if n == 0:
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip()]
    return [str(i) for i in range(n)]


def cuda_count() -> int:
    return len(visible_gpus())


def cpu_cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


@dataclass(frozen=True)
class Placement:
    """Where a backend's engines run: one entry per engine, its GPU (a CUDA_VISIBLE_DEVICES value) on a GPU
    machine, its CPU cores ("0,1") on a CPU one."""

    device: str  # "cuda" or "cpu"
    engines: tuple[str, ...]

    @property
    def gpu_indices(self) -> list[int]:
        """CUDA indices (as this process numbers them) of the GPUs used: what the cost monitor bills."""
        return list(range(len(self.engines))) if self.device == "cuda" else []


def place(backend: str, data_parallel: int | None = None, gpus: list[str] | None = None,
          cores: list[int] | None = None) -> Placement:
    """One engine per GPU for vLLM (default: every visible GPU), one device for transformers; on a CPU
    machine vLLM engines share the cores out evenly (`--data-parallel 2` on 2 cores: one core each)."""
    gpus = visible_gpus() if gpus is None else gpus
    want = (data_parallel or len(gpus) or 1) if backend == "vllm" else 1
    if gpus:
        if want > len(gpus):
            raise OpenrsError(f"--data-parallel {want}: only {len(gpus)} GPU(s) visible; give at most "
                              f"{len(gpus)} or leave it out")
        return Placement("cuda", tuple(gpus[:want]))
    cores = cpu_cores() if cores is None else cores
    if want > len(cores):
        raise OpenrsError(f"--data-parallel {want}: no GPU and only {len(cores)} CPU core(s) for the engines; "
                          f"give at most {len(cores)}")
    per, extra = divmod(len(cores), want)
    shares, start = [], 0
    for i in range(want):
        n = per + (i < extra)
        shares.append(",".join(str(c) for c in cores[start:start + n]))
        start += n
    return Placement("cpu", tuple(shares))


_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def model_context(model: str, revision: str | None = None) -> int | None:
    """The model's context length from its config (config.json of a model dir, else transformers' config
    loader for hub ids and GGUF files); None when it says nothing."""
    src, gguf = model_source(model)
    cfg = None
    p = Path(src) / "config.json"
    if not gguf and p.is_file():
        try:
            cfg = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cfg = None
    if cfg is None:
        try:
            from transformers import AutoConfig

            kw = {"gguf_file": gguf} if gguf else {}
            cfg = AutoConfig.from_pretrained(src, **kw, **({"revision": revision} if revision else {})).to_dict()
        except Exception:  # unknown here: vLLM / transformers will judge at load time
            return None
    for c in (cfg, cfg.get("text_config") or {}):
        for k in _CONTEXT_KEYS:
            if isinstance(c.get(k), int) and c[k] > 0:
                return c[k]
    return None


def fit_context(model_ctx: int | None, requested: int | None, longest_prompt: int,
                max_new_tokens: int) -> tuple[int, str | None]:
    """(context length for the engine, warning or None).

    Default: the smaller of the model's context and the longest prompt + max_new_tokens. When a prompt plus
    the budget does not fit, completions are capped to the context and the warning says so (one line).
    """
    if requested is not None and model_ctx is not None and requested > model_ctx:
        raise OpenrsError(f"--max-model-len {requested} is larger than the model's context {model_ctx} "
                          f"(max_position_embeddings in its config); give at most {model_ctx} or leave it out")
    ctx = requested or (min(model_ctx, longest_prompt + max_new_tokens) if model_ctx
                        else longest_prompt + max_new_tokens)
    if longest_prompt >= ctx:
        raise OpenrsError(f"the longest prompt has {longest_prompt} tokens: it does not fit a context of {ctx}"
                          + (f"; give --max-model-len above {longest_prompt}" if requested and (
                              model_ctx is None or longest_prompt < model_ctx) else
                             "; use a model with a longer context"))
    if longest_prompt + max_new_tokens <= ctx:
        return ctx, None
    return ctx, (f"generation budget capped to the context: the longest prompt ({longest_prompt} tokens) + "
                 f"--max-new-tokens {max_new_tokens} exceeds {ctx}, so completions stop at {ctx} tokens "
                 f"minus their prompt")


def cap_max_tokens(max_new_tokens: int, prompt_len: int, ctx: int | None) -> int:
    """Generation budget that fits the context (prompt + completion <= ctx); at least 1."""
    if not ctx:
        return max_new_tokens
    return max(1, min(max_new_tokens, ctx - prompt_len))
