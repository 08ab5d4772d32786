"""Throughput of the transformers eval backend: batched generation vs one sequence at a time, same process.

Generates the same sequences (the paper's prompt on the first MATH-500 problems, fixed length: EOS is not
allowed to stop early, so both sides do identical work) with batch size 1 and with `--batch-size`, and
prints samples/s for both; the last line is the speed-up of batching.

    .venv/bin/python benchmarks/eval_batching.py [--model openrs-tiny|PATH.gguf] [--n 16] [--tokens 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="openrs-tiny")
    ap.add_argument("--n", type=int, default=16, help="sequences per side")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()

    from openrs_cli.evaluate.generation import Sampling, TransformersBackend
    from openrs_cli.evaluate.tasks import TASKS, build_messages, load_task

    be = TransformersBackend(args.model)
    be.eos_ids = []  # fixed-length generations: identical work on both sides
    probs = load_task(TASKS["math_500"], limit=args.n).problems
    texts = [be.render(build_messages(p.problem)) for p in probs]
    s = Sampling(args.tokens, 0.6, 0.95, 0)
    be.generate(texts[:1], [1], [0], s)  # warm-up

    def run(bs: int) -> float:
        t = time.perf_counter()
        for i in range(0, len(texts), bs):
            chunk = texts[i:i + bs]
            be.generate(chunk, [1] * len(chunk), [i], s)
        return len(texts) / (time.perf_counter() - t)

    one = run(1)
    many = run(args.batch_size)
    print(f"model {args.model}: {args.n} sequences x {args.tokens} tokens")
    print(f"batch 1: {one:.2f} samples/s; batch {args.batch_size}: {many:.2f} samples/s")
    print(f"batched_speedup: {many / one:.2f}")


if __name__ == "__main__":
    main()
