"""The cost monitor: a per-node GPU sampler plus Zeus-style measurement windows, written to the run's ledger.

    mon = open_monitor(run_dir, kind="train")          # one per node: covers every allocated GPU by UUID
    with mon.phase("generation"):
        ...
    m = mon.end_window("eval") if ... else None          # begin_window/end_window -> Measurement
    mon.close("ok")

Energy comes from NVML's total-energy counter (mJ since driver load), read at window boundaries and on the
heartbeat; a counter that goes backwards (driver reload) starts a new segment. Power and utilisation are polled
every `interval_s` for statistics, idle time (utilisation < 5 %) and, where no counter exists, a trapezoid
power integral. `attach_monitor` gives a training rank windows on its own GPU without a second sampler.
Nothing here raises into the measured program: NVML and ledger failures become one warning each.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import uuid as _uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from openrs_cli import __version__
from openrs_cli.cost.backend import NullBackend, SystemClock, allocated_entries, select_backend
from openrs_cli.cost.ledger import LedgerWriter, host_name, ledger_dir, ledger_path
from openrs_cli.cost.track import Track

log = logging.getLogger("openrs.cost")

PHASES = ("setup", "generation", "train_step", "reward", "checkpoint", "eval", "other")
HEARTBEAT_S = 30.0


@dataclass
class Measurement:
    """What one window cost. Energy is None when no device could report it."""

    name: str
    start_ts: float
    end_ts: float
    wall_s: float
    gpu_count: int
    gpu_seconds: float
    gpu_energy_j: float | None
    energy_source: str  # counter | power_integral | mixed | none
    gpu_energy_j_by_uuid: dict = field(default_factory=dict)
    power_w_total_mean: float | None = None  # summed over the window's GPUs
    util_gpu_mean: float | None = None
    idle_gpu_s: float | None = None
    approx: bool = False  # shorter than 1 s: energy readings are coarse

    def to_json(self) -> dict:
        return asdict(self)


class Monitor:
    """See the module docstring. Construct with `open_monitor` or `attach_monitor`."""

    def __init__(self, run_dir, *, kind: str, backend, clock=None, interval_s: float = 1.0,
                 heartbeat_s: float = HEARTBEAT_S, sample: bool = True, thread: bool = True, role: str = "sampler"):
        self.run_dir = Path(run_dir)
        self.kind, self.role = kind, role
        self.clock = clock or SystemClock()
        self.interval_s = max(0.1, float(interval_s))
        self.heartbeat_s = max(self.interval_s, float(heartbeat_s))
        self.host = host_name()
        self.id = _uuid.uuid4().hex[:12]
        self.backend = backend
        self.closed = False
        self._warned: set[str] = set()
        self._lock = threading.RLock()
        self._windows: dict[str, tuple[float, dict, bool, dict]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        self.writer = LedgerWriter(ledger_path(self.run_dir, self.host), on_error=self._warn)
        self.sample = sample and self._take_node_lock()
        now = self.clock.time()
        self.start_ts = now
        tracks = [self._safe(Track, None, d, backend, now) for d in self._safe(backend.devices, [])]
        self.tracks = [t for t in tracks if t is not None]
        self._hb_start = now
        self._hb_snaps = {t.dev.uuid: t.snap() for t in self.tracks}
        self.writer.write({
            "record": "run_start", "monitor_id": self.id, "host": self.host, "pid": os.getpid(), "run_kind": kind,
            "role": role if self.sample else ("worker" if role == "worker" else "windows_only"),
            "rank": _env_int("RANK"), "local_rank": _env_int("LOCAL_RANK"), "start_ts": now,
            "backend": getattr(backend, "name", type(backend).__name__),
            "backend_note": getattr(backend, "reason", ""),
            "versions": _versions(), "price_table": _price_table_id(),
            "interval_s": self.interval_s, "heartbeat_s": self.heartbeat_s,
            "devices": [t.dev.to_json() for t in self.tracks],
        })
        if self.sample and thread and self.tracks:
            self._thread = threading.Thread(target=self._loop, name="openrs-cost-sampler", daemon=True)
            self._thread.start()

    # -- internals -------------------------------------------------------------------------------------------
    def _warn(self, msg: str) -> None:
        if msg not in self._warned:
            self._warned.add(msg)
            log.warning("openrs cost: %s", msg)

    def _safe(self, fn, default, *a):
        try:
            return fn(*a)
        except Exception as e:  # noqa: BLE001 - a monitoring bug must not end the measured run
            self._warn(f"monitor error ({type(e).__name__}: {e}); measurement continues")
            return default

    def _take_node_lock(self) -> bool:
        """One sampler per node and run: a second one on the same host records windows only."""
        try:
            ledger_dir(self.run_dir).mkdir(parents=True, exist_ok=True)
            fd = os.open(ledger_dir(self.run_dir) / f".sampler-{self.host}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            self._warn(f"another sampler already covers {self.host} for {self.run_dir}; this one records windows only")
            return False
        self._lock_fd = fd
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.tick()

    def _read_all(self, counter: bool) -> float:
        now = self.clock.time()
        for t in self.tracks:
            self._safe(t.read, None, now, counter)
        return now

    def _flush_interval(self, now: float) -> None:
        if not self.sample or not self.tracks or now <= self._hb_start:
            return
        gpus = []
        for t in self.tracks:
            d = t.delta(self._hb_snaps[t.dev.uuid], t.snap())
            d["power_w_max"], d["mem_used_max_mib"], d["samples_n"], d["segments"] = (
                t.power_max, t.mem_max, t.samples, t.segments)
            pi, e = d["power_integral_j"], d["energy_j"]
            if d["energy_source"] == "counter" and pi and e is not None and d["gpu_seconds"] >= 10 \
                    and abs(pi - e) > 0.1 * max(e, 1e-9):
                self._warn(f"{t.dev.uuid}: energy counter and power polling differ by more than 10% "
                           f"({e:.0f} J vs {pi:.0f} J); the counter is used")
            t.power_max = t.mem_max = None
            t.samples = t.segments = 0
            gpus.append(d)
            self._hb_snaps[t.dev.uuid] = t.snap()
        self.writer.write({"record": "interval", "monitor_id": self.id, "host": self.host,
                           "start_ts": self._hb_start, "end_ts": now, "gpus": gpus})
        self._hb_start = now

    # -- public ----------------------------------------------------------------------------------------------
    def tick(self) -> None:
        """One poll of every GPU (the sampler thread calls this; tests on a fake clock call it by hand)."""
        if self.closed:
            return
        with self._lock:
            due = self.clock.time() - self._hb_start >= self.heartbeat_s
            now = self._read_all(counter=due)
            if due:
                self._safe(self._flush_interval, None, now)

    def begin_window(self, name: str, *, phase: bool = False, **meta) -> None:
        """Start measuring `name`; windows may nest or overlap (a name already open is restarted, with a warning)."""
        with self._lock:
            if name in self._windows:
                self._warn(f"window '{name}' was already open; restarting it")
            now = self._read_all(counter=True)
            self._windows[name] = (now, {t.dev.uuid: t.snap() for t in self.tracks}, phase, meta)

    def end_window(self, name: str) -> Measurement:
        """Stop `name` and return its Measurement (also written to the ledger)."""
        with self._lock:
            now = self._read_all(counter=True)
            if name not in self._windows:
                self._warn(f"end_window('{name}') without begin_window; returning an empty measurement")
                return Measurement(name, now, now, 0.0, len(self.tracks), 0.0, None, "none")
            start, snaps, phase, meta = self._windows.pop(name)
            per = [t.delta(snaps[t.dev.uuid], t.snap()) for t in self.tracks]
        m = _measure(name, start, now, per)
        self.writer.write({"record": "window", "monitor_id": self.id, "host": self.host, "name": name,
                           "phase": phase, "rank": _env_int("RANK"), **meta, **m.to_json()})
        return m

    @contextlib.contextmanager
    def phase(self, name: str, **meta):
        """`with monitor.phase("generation"):` -- a window marked as one of the run's phases (see PHASES)."""
        self.begin_window(name, phase=True, **meta)
        try:
            yield
        finally:
            self.end_window(name)

    def close(self, status: str = "ok") -> None:
        """Stop sampling, write the last interval and run_end. Safe to call twice."""
        if self.closed:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            for name in list(self._windows):
                self.end_window(name)
            now = self._read_all(counter=True)
            self._safe(self._flush_interval, None, now)
            self.closed = True
            self.writer.write({"record": "run_end", "monitor_id": self.id, "host": self.host, "status": status,
                               "end_ts": now, "wall_s": now - self.start_ts})
        self.writer.close()
        self._safe(self.backend.shutdown, None)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close("ok" if exc_type is None else ("interrupted" if exc_type is KeyboardInterrupt else "error"))


def _measure(name: str, start: float, end: float, per: list[dict]) -> Measurement:
    wall = end - start
    energies = [p["energy_j"] for p in per]
    sources = {p["energy_source"] for p in per}
    known = None if (not per or any(e is None for e in energies)) else sum(energies)
    source = "none" if known is None else (sources.pop() if len(sources) == 1 else "mixed")
    pw = [p["power_w_mean"] for p in per if p["power_w_mean"] is not None]
    ut = [p["util_gpu_mean"] for p in per if p["util_gpu_mean"] is not None]
    idle = [p["idle_s"] for p in per]
    return Measurement(
        name, start, end, wall, len(per), wall * len(per), known, source,
        {p["uuid"]: p["energy_j"] for p in per},
        sum(pw) if pw and len(pw) == len(per) else None,
        sum(ut) / len(ut) if ut else None,
        sum(idle) if per and all(i is not None for i in idle) else None,
        wall < 1.0,
    )


def _env_int(name: str) -> int | None:
    v = os.environ.get(name, "")
    return int(v) if v.isdigit() else None


def _price_table_id() -> dict | None:
    try:
        from openrs_cli.cost.prices import load_prices

        t = load_prices()
        return {"id": t.id, "version": t.version, "date": t.date, "overrides": t.overrides}
    except Exception:  # noqa: BLE001 - a bad price override must not stop the run; the summary reports it
        return None


def _versions() -> dict:
    from openrs_cli.versions import versions

    return {"openrs": __version__, **versions(("nvidia-ml-py",))}


def open_monitor(run_dir, *, kind: str, gpu_indices=None, backend=None, interval_s: float = 1.0,
                 heartbeat_s: float = HEARTBEAT_S, clock=None, thread: bool = True) -> Monitor:
    """The node's sampler for a run: covers every allocated GPU (gpu_indices, else CUDA_VISIBLE_DEVICES, else all).

    gpu_indices: CUDA indices as this process numbers them (mapped through CUDA_VISIBLE_DEVICES) or UUID strings;
    exactly those are billed, on every backend ([] bills none: a CPU run). backend: None/"auto" (NVML if it
    initialises, else null with one warning), "pynvml", "null", "fake:<json>", or a backend object (resolved
    against gpu_indices when given). Never raises because of a missing GPU or driver.
    """
    be = select_backend(gpu_indices, backend, host=host_name(), clock=clock)
    return Monitor(run_dir, kind=kind, backend=be, clock=clock, interval_s=interval_s, heartbeat_s=heartbeat_s,
                   thread=thread)


def attach_monitor(run_dir, *, kind: str = "train", gpu_indices=None, backend=None, clock=None) -> Monitor:
    """Windows for one training rank (its own GPU: LOCAL_RANK within the allocation), no sampling thread.

    The launcher-side `open_monitor` sampler covers all GPUs; this one only records phase windows into the same
    ledger, so GPU-hours are never counted twice.
    """
    if gpu_indices is None and _env_int("LOCAL_RANK") is not None:
        gpu_indices = [_env_int("LOCAL_RANK")]  # CUDA index within CUDA_VISIBLE_DEVICES, mapped by the backend
    be = select_backend(gpu_indices, backend, host=host_name(), clock=clock, quiet=True)
    if getattr(be, "name", "") == "null" and allocated_entries(None) is None:
        be = NullBackend([])  # no NVML and no CUDA_VISIBLE_DEVICES: a CPU rank has no GPU to name
    return Monitor(run_dir, kind=kind, backend=be, clock=clock, sample=False, thread=False, role="worker")
