"""The transformers backend: batched `model.generate` with left padding; CPU float32 or GPU bfloat16.

Samples with temperature/top_p only (nothing from the model's generation_config); each batch is seeded from
its first unit's seed. A batch never runs past the context: its budget is capped to the context minus the
batch's (padded) prompt length, with one warning when the run's settings ask for more.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

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
    render_chat,
)

log = logging.getLogger(__name__)


class TransformersBackend:
    name = "transformers"

    def __init__(self, model: str, revision: str | None = None, device: str | None = None, *,
                 conversations: Sequence[list[dict]] = (), max_new_tokens: int | None = None,
                 max_model_len: int | None = None, placement: Placement | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        src, gguf = model_source(model)
        kw = {"revision": revision} if revision else {}
        if gguf:
            kw["gguf_file"] = gguf
        if device is None:
            device = placement.device if placement is not None else ("cuda" if torch.cuda.is_available() else "cpu")
        self.device = device
        dtype = torch.bfloat16 if self.device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
        self.dtype, self.tensor_parallel = str(dtype).removeprefix("torch."), 1
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
        self.max_model_len = None
        if max_new_tokens is not None:
            longest = max((self.count_tokens(self.render(m)) for m in conversations), default=0)
            self.max_model_len, warning = fit_context(model_context(model, revision), max_model_len, longest,
                                                      max_new_tokens)
            if warning:
                log.warning("warning: %s", warning)

    def render(self, messages: list[dict]) -> str:
        return render_chat(self.tok, messages)

    def count_tokens(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def generate(self, texts: Sequence[str], ns: Sequence[int], seeds: Sequence[Sequence[int]],
                 sampling: Sampling) -> list[list[Completion]]:
        """`ns[i]` completions of `texts[i]`, sample j drawn with its own seed `seeds[i][j]`: a sample depends on its
        seed alone, not on the batch it shares (per-row Gumbel-max sampling, exact for the tempered top-p
        distribution), as vLLM's per-request seeds do."""
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

        check_seeds(ns, seeds)
        flat = [t for t, n in zip(texts, ns, strict=True) for _ in range(n)]
        flat_seeds = [int(x) for group in seeds for x in group]
        enc = self.tok(flat, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        greedy = sampling.temperature <= 0
        # A fresh config: the paper's settings only, nothing inherited from the model's generation_config.
        # Every knob is set explicitly: transformers fills unset (None) fields from the model's config. Sampling is
        # done by the processors below (decoding picks their argmax), so the config itself decodes greedily.
        cfg = GenerationConfig(
            max_new_tokens=cap_max_tokens(sampling.max_new_tokens, enc["input_ids"].shape[1], self.max_model_len),
            min_new_tokens=0, do_sample=False, temperature=1.0, top_p=1.0, top_k=None, typical_p=1.0,
            repetition_penalty=1.0, no_repeat_ngram_size=0, num_beams=1,
            eos_token_id=self.eos_ids, pad_token_id=self.tok.pad_token_id,
        )
        procs = LogitsProcessorList()
        if not greedy:
            procs.append(TemperatureLogitsWarper(sampling.temperature))
            if sampling.top_p < 1.0:
                procs.append(TopPLogitsWarper(sampling.top_p))
            procs.append(PerRowGumbel(flat_seeds))
        with torch.inference_mode():
            out = self.model.generate(**enc, generation_config=cfg, logits_processor=procs)
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


class PerRowGumbel:
    """A logits processor that turns greedy decoding into sampling, each batch row with its own generator.

    argmax(scores + Gumbel noise) is an exact draw from softmax(scores) (the Gumbel-max trick); the noise of row r
    comes from a generator seeded with seeds[r] and advanced once per generated token of that row, so a row's
    completion depends on its seed and its prompt only. Filtered tokens (-inf after top-p) stay impossible."""

    def __init__(self, seeds: Sequence[int]):
        self.seeds, self.gens = list(seeds), None

    def __call__(self, input_ids, scores):
        import torch

        if self.gens is None:
            self.gens = [torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds]
        vocab = scores.shape[-1]
        u = torch.stack([torch.rand(vocab, generator=g, device=scores.device, dtype=torch.float32)
                         for g in self.gens])
        gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))
        return scores.float() + gumbel
