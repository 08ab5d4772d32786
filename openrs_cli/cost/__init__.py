"""Cost accounting: GPU time, energy and dollars for every openrs run.

Public API (imports nothing heavy; pynvml is loaded only when a real NVML backend is opened):
- `open_monitor(run_dir, kind=..., gpu_indices=None, backend=None, interval_s=1.0) -> Monitor` -- the node sampler.
- `attach_monitor(run_dir, ...) -> Monitor` -- phase windows for a training rank, no second sampler.
- `Monitor.begin_window(name)`, `Monitor.end_window(name) -> Measurement`, `Monitor.phase(name)`,
  `Monitor.close(status)`.
- `summarize_run(run_dir) -> dict` (see `openrs_cli.cost.summary`).
Ledger: `<run_dir>/cost/ledger-<host>.jsonl` (see `openrs_cli.cost.ledger`).
"""

from openrs_cli.cost.backend import DeviceInfo, FakeBackend, FakeClock, FakeDevice, NullBackend, PynvmlBackend
from openrs_cli.cost.monitor import PHASES, Measurement, Monitor, attach_monitor, open_monitor


def summarize_run(run_dir, **kwargs) -> dict:
    """Summary of one run's ledgers (lazy import keeps this package light)."""
    from openrs_cli.cost.summary import summarize_run as _summarize

    return _summarize(run_dir, **kwargs)


__all__ = [
    "PHASES", "DeviceInfo", "FakeBackend", "FakeClock", "FakeDevice", "Measurement", "Monitor", "NullBackend",
    "PynvmlBackend", "attach_monitor", "open_monitor", "summarize_run",
]
