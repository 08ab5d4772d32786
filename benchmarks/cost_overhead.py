"""CPU cost of the cost sampler: its real thread at 1 Hz against an idle baseline, in the same process and run.

    .venv/bin/python benchmarks/cost_overhead.py [--seconds 30] [--gpus 8] [--backend auto|pynvml|fake|null]

Baseline: the process sleeps for N seconds (its own background CPU use). Measured: the same, with `open_monitor`'s
real sampler thread polling every second (heartbeat every 10 s, so ledger appends + fsync are included). The
difference, as a share of one core, is the sampler's overhead (goal < 1 %). The default backend `auto` polls
real NVML (nvidia-ml-py) where it is present; on a machine without NVML it says so and measures the fake backend
instead (8 scripted GPUs through the same sampler loop, ledger and locking: the cost of openrs's own code, not of
the NVML calls). Also prints the CPU per poll (from a tight loop of polls) and the
latency of one begin/end window pair (2 polls + 1 fsynced ledger line).
Last line: `sampler_cpu_pct_of_core_at_1hz: <number>`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time


def cpu_over(seconds: float) -> float:
    c0 = time.process_time()
    time.sleep(seconds)
    return time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--backend", default="auto",
                    help="auto (real NVML, else the fake backend), pynvml (real NVML only), fake, or null")
    a = ap.parse_args()

    from openrs_cli.cost import open_monitor

    backend = a.backend
    if backend in ("auto", "pynvml"):
        from openrs_cli.cost.backend import NvmlUnavailable, PynvmlBackend

        try:
            PynvmlBackend(None).shutdown()
            backend = "pynvml"
        except (NvmlUnavailable, OSError) as e:
            if a.backend == "pynvml":
                raise SystemExit(f"no NVML here ({e}); run on a GPU machine or pass --backend fake") from None
            print(f"no NVML here ({e}): measuring the fake backend ({a.gpus} scripted GPUs), not real NVML calls")
            backend = "fake"
    if backend == "fake":
        backend = f"fake:{json.dumps({'count': a.gpus})}"
    with tempfile.TemporaryDirectory() as d:
        base = cpu_over(a.seconds)
        mon = open_monitor(d, kind="bench", backend=backend, interval_s=1.0, heartbeat_s=10.0)
        used = cpu_over(a.seconds)
        mon.close()
        print(f"backend {mon.backend.name}, {len(mon.tracks)} GPU(s), {a.seconds:.0f} s per condition")
        print(f"idle baseline CPU: {base * 1000:.1f} ms; with sampler at 1 Hz: {used * 1000:.1f} ms")

        # Per-poll CPU from a tight loop (no thread), and one window's latency.
        mon = open_monitor(d + "/loop", kind="bench", backend=backend, interval_s=1.0, heartbeat_s=1e9, thread=False)
        n = 2000
        c0 = time.process_time()
        for _ in range(n):
            mon.tick()
        per_poll_us = (time.process_time() - c0) / n * 1e6
        w0 = time.perf_counter()
        for i in range(20):
            mon.begin_window(f"w{i}")
            mon.end_window(f"w{i}")
        window_ms = (time.perf_counter() - w0) / 20 * 1000
        mon.close()
    print(f"CPU per poll of all GPUs: {per_poll_us:.1f} us (= {per_poll_us / 1e4:.4f} % of a core at 1 Hz)")
    print(f"begin_window + end_window (2 polls, 1 fsynced ledger line): {window_ms:.2f} ms wall")
    pct = max(0.0, (used - base) / a.seconds * 100)
    print(f"sampler_cpu_pct_of_core_at_1hz: {pct:.4f}")


if __name__ == "__main__":
    main()
