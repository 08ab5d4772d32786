"""Reward scoring speed: the straightforward Open-RS-style scorer against openrs's rewards, in the same run.

Builds a synthetic GRPO stream from the bundled benchmarks (default 300 prompts x 6 completions, 500-12,000
characters of reasoning ending in a boxed answer that is right, wrong, equal but written differently,
missing, or pathological), scores it in batches of 72 (12 prompts x 6, the paper's optimizer step) with
  - serial: math-verify parse of gold and answer for every completion, one at a time, in this process
    (`benchmarks/lib/reference_rewards.py`, math-verify's signal timeouts as Open-RS ran them), and
  - ours: `build_reward_funcs` (worker processes, gold parsed once per prompt, string shortcut, hard limit),
checks that the rewards are identical, and prints completions/s of both, the speedup, and the p99 / max time
per batch of 72 against the time limit + 1 s. The headline is parallel efficiency: the speedup divided by the
number of grading workers (goal >= 0.8). Last line: `parallel_efficiency: <ratio>`.

The default stream repeats no pathological answer verbatim (each is a fresh variant); `--no-pathological` is the
clean stream. `--load N` grades the stream a second time with N CPU-bound processes running beside it and
compares every reward with the quiet run and with the serial scorer (the time limit counts CPU time, so they
must be identical).

    .venv/bin/python benchmarks/rewards.py [--prompts 300] [--group 6] [--reward accuracy|cosine]
                                           [--no-pathological] [--load 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import statistics
import subprocess
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo: benchmarks.lib

from benchmarks.lib.reference_rewards import reference_rewards, synthetic_stream  # noqa: E402
from openrs_cli.grading import PAPER_REWARD, _pool, default_workers, warm_up
from openrs_cli.recipes.schema import RewardsSpec
from openrs_cli.rewards import build_reward_funcs, funcs

BATCH = 72


def p99(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=300)
    ap.add_argument("--group", type=int, default=6)
    ap.add_argument("--reward", choices=["accuracy", "cosine"], default="accuracy")
    ap.add_argument("--no-pathological", action="store_true", help="drop the pathological completions")
    ap.add_argument("--load", type=int, default=0, metavar="N",
                    help="also grade beside N CPU-bound processes and compare every reward with the quiet run")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.disable(logging.CRITICAL)  # math-verify logs every timeout with the whole input
    warnings.filterwarnings("ignore")

    weights = (0.35, 0.3, 0.12, 0.18, 0.0 if args.no_pathological else 0.05)
    rows = synthetic_stream(args.prompts, args.group, args.seed, weights, distinct_pathological=True)
    contents = [c for r in rows for c in r["completions"]]
    sols = [r["solution"] for r in rows for _ in r["completions"]]
    kinds = [k for r in rows for k in r["kinds"]]
    n = len(contents)
    chars = [len(c) for c in contents]
    print(f"stream: {len(rows)} prompts x {args.group} = {n} completions, {min(chars)}-{max(chars)} chars "
          f"(median {int(statistics.median(chars))}); kinds {dict(collections.Counter(kinds))}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
          f"grading workers {default_workers()}, time limit {PAPER_REWARD.timeout_s:.0f} s per completion")

    for c, g in ((r"so \boxed{\frac{1}{2}}", "$0.5$"), (r"so \boxed{x^2+1}", "$(x+1)^2$")):
        reference_rewards(args.reward, [c], [g])  # warm sympy's lazy imports, as warm_up() does for ours
    batches = [(i, min(i + BATCH, n)) for i in range(0, n, BATCH)]
    serial_s, serial_batches, kind_s = [], [], collections.defaultdict(float)
    t_all = time.perf_counter()
    for a, b in batches:
        t0 = time.perf_counter()
        for i in range(a, b):
            t = time.perf_counter()
            serial_s.append(reference_rewards(args.reward, [contents[i]], [sols[i]])[0])
            kind_s[kinds[i]] += time.perf_counter() - t
        serial_batches.append(time.perf_counter() - t0)
    serial_total = time.perf_counter() - t_all

    spec = RewardsSpec(variant="paper", funcs=[args.reward], cosine_max_len=3584)
    fn = build_reward_funcs(spec)[0][0]
    t0 = time.perf_counter()
    warm_up()  # start the worker processes: once per training run, not per step
    startup = time.perf_counter() - t0
    def run_ours() -> tuple[list, list[float], float]:
        funcs._CACHE.clear()  # every run grades (the rewards' per-step cache would answer a repeat)
        out, times = [], []
        t_start = time.perf_counter()
        for a, b in batches:
            t0 = time.perf_counter()
            out += fn(completions=[[{"role": "assistant", "content": c}] for c in contents[a:b]], solution=sols[a:b])
            times.append(time.perf_counter() - t0)
        return out, times, time.perf_counter() - t_start

    ours, our_batches, ours_total = run_ours()
    workers = default_workers()
    diffs = [(kinds[i], serial_s[i], ours[i]) for i in range(n) if serial_s[i] != ours[i]]
    limit = PAPER_REWARD.timeout_s + 1.0
    print(f"serial: {serial_total:7.1f} s  {n / serial_total:7.1f} completions/s  batch p99 {p99(serial_batches):.2f} s"
          f"  max {max(serial_batches):.2f} s;  time by kind: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(kind_s.items())))
    print(f"ours:   {ours_total:7.1f} s  {n / ours_total:7.1f} completions/s  batch p99 {p99(our_batches):.2f} s"
          f"  max {max(our_batches):.2f} s  (worker start-up {startup:.1f} s, not counted; "
          f"{_pool().total} workers now)")
    print(f"identical rewards: {not diffs} ({len(diffs)} of {n} differ{': ' + str(diffs[:5]) if diffs else ''})")
    print(f"batches of {BATCH} over the limit + 1 s ({limit:.0f} s): {sum(t > limit for t in our_batches)} "
          f"of {len(our_batches)}; load average {os.getloadavg()[0]:.1f} at end")
    if args.load:
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
        try:
            loaded, loaded_batches, loaded_total = run_ours()
            load_avg = os.getloadavg()[0]
        finally:
            for h in hogs:
                h.kill()
                h.wait()
        vs_quiet = sum(a != b for a, b in zip(loaded, ours, strict=True))
        vs_serial = sum(a != b for a, b in zip(loaded, serial_s, strict=True))
        print(f"loaded: {loaded_total:7.1f} s beside {args.load} CPU-bound processes (load average {load_avg:.1f}); "
              f"batch p99 {p99(loaded_batches):.2f} s; rewards identical to the quiet run: {vs_quiet == 0} "
              f"({vs_quiet} of {n} differ), to the serial scorer: {vs_serial == 0} ({vs_serial} of {n} differ)")
    speedup = serial_total / ours_total
    print(f"speedup: {speedup:.2f} with {workers} grading workers")
    print(f"parallel_efficiency: {speedup / workers:.2f}")


if __name__ == "__main__":
    main()
