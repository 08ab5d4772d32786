"""NVML backends: what the cost sampler reads from the GPUs.

Three implementations of one small interface (`devices`, `energy_mj`, `power_mw`, `util_pct`, `mem_used_mib`):

- `PynvmlBackend`: real NVML through nvidia-ml-py (imported as `pynvml`, lazily).
- `NullBackend`: no library or driver. Knows only which GPU indices were allocated (CUDA_VISIBLE_DEVICES or
  `gpu_indices`), so the ledger still records wall-clock GPU time; energy, power and utilisation are unknown.
- `FakeBackend`: scripted devices, power, utilisation and energy counters on a `FakeClock`, for tests.

`select_backend()` picks one: `OPENRS_NVML_BACKEND=pynvml|null|fake:<json>` forces it, otherwise real NVML if it
initialises, else null with one warning. Per-reading methods return None when a reading is unavailable (not
supported, no permission, GPU lost); they never raise.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field

log = logging.getLogger("openrs.cost")


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    uuid: str
    name: str
    mem_total_mib: int | None = None
    power_limit_w: float | None = None
    has_energy_counter: bool = False

    def to_json(self) -> dict:
        return asdict(self)


class SystemClock:
    """Wall-clock seconds since the epoch (ledgers from several nodes are merged on this time axis)."""

    def time(self) -> float:
        return time.time()


class FakeClock:
    """A clock that moves only when told to (tests never sleep)."""

    def __init__(self, start: float = 1_750_000_000.0):
        self.now = float(start)

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def allocated_indices(gpu_indices=None) -> list | None:
    """Physical GPUs (NVML index, or UUID string) this run may use; None = all.

    `gpu_indices` are CUDA indices as this process sees them: when CUDA_VISIBLE_DEVICES is set they index into it
    (NVML ignores that variable, so they are mapped here). Without `gpu_indices`, CUDA_VISIBLE_DEVICES itself."""
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = None
    if cvd is not None:
        visible = [int(p) if p.strip().isdigit() else p.strip() for p in cvd.split(",") if p.strip()]
    if gpu_indices is None:
        return visible
    idx = [int(i) for i in gpu_indices]
    return idx if visible is None else [visible[i] for i in idx if i < len(visible)]


class NullBackend:
    """No NVML: the allocated GPUs are known by index only; every reading is None."""

    name = "null"

    def __init__(self, gpu_indices=None, host: str = "", reason: str = ""):
        self.reason = reason
        idx = allocated_indices(gpu_indices) or []
        self._devices = [
            DeviceInfo(index=i if isinstance(i, int) else n, uuid=f"nonvml-{host}-{i}", name="unknown")
            for n, i in enumerate(idx)
        ]

    def devices(self) -> list[DeviceInfo]:
        return list(self._devices)

    def energy_mj(self, uuid: str) -> int | None:
        return None

    def power_mw(self, uuid: str) -> float | None:
        return None

    def util_pct(self, uuid: str) -> float | None:
        return None

    def mem_used_mib(self, uuid: str) -> float | None:
        return None

    def shutdown(self) -> None:
        pass


class PynvmlBackend:
    """Real NVML. Construction raises `NvmlUnavailable` when the library or driver is missing."""

    name = "pynvml"

    def __init__(self, gpu_indices=None):
        try:
            import pynvml
        except ImportError as e:  # nvidia-ml-py not installed
            raise NvmlUnavailable(f"nvidia-ml-py is not installed ({e})") from e
        self._nv = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:  # LibraryNotFound, DriverNotLoaded, NoPermission, ...
            raise NvmlUnavailable(f"NVML did not initialise: {e}") from e
        self._handles: dict[str, object] = {}
        self._devices: list[DeviceInfo] = []
        self._dead: set[tuple[str, str]] = set()
        try:
            count = pynvml.nvmlDeviceGetCount()
            wanted = allocated_indices(gpu_indices)
            for i in range(count):
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                uuid = _s(pynvml.nvmlDeviceGetUUID(h))
                if wanted is not None and i not in wanted and uuid not in wanted:
                    continue
                self._handles[uuid] = h
                self._devices.append(self._describe(i, uuid, h))
        except pynvml.NVMLError as e:
            raise NvmlUnavailable(f"NVML could not list devices: {e}") from e

    def _describe(self, i: int, uuid: str, h) -> DeviceInfo:
        nv = self._nv
        name = _s(nv.nvmlDeviceGetName(h))
        mem = self._try(lambda: nv.nvmlDeviceGetMemoryInfo(h).total / 2**20)
        limit = self._try(lambda: nv.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0)
        has_counter = self._try(lambda: nv.nvmlDeviceGetTotalEnergyConsumption(h)) is not None
        return DeviceInfo(i, uuid, name, int(mem) if mem else None, limit, has_counter)

    def _try(self, fn):
        try:
            return fn()
        except self._nv.NVMLError:
            return None

    def _read(self, what: str, uuid: str, fn):
        if (uuid, what) in self._dead:
            return None
        try:
            return fn(self._handles[uuid])
        except self._nv.NVMLError as e:
            # NotSupported / NoPermission do not come back; GpuIsLost neither. Stop asking, warn once.
            self._dead.add((uuid, what))
            log.warning("openrs cost: NVML %s unavailable on %s (%s); continuing without it", what, uuid, e)
            return None

    def devices(self) -> list[DeviceInfo]:
        return list(self._devices)

    def energy_mj(self, uuid: str) -> int | None:
        return self._read("energy", uuid, self._nv.nvmlDeviceGetTotalEnergyConsumption)

    def power_mw(self, uuid: str) -> float | None:
        return self._read("power", uuid, self._nv.nvmlDeviceGetPowerUsage)

    def util_pct(self, uuid: str) -> float | None:
        return self._read("utilization", uuid, lambda h: self._nv.nvmlDeviceGetUtilizationRates(h).gpu)

    def mem_used_mib(self, uuid: str) -> float | None:
        return self._read("memory", uuid, lambda h: self._nv.nvmlDeviceGetMemoryInfo(h).used / 2**20)

    def shutdown(self) -> None:
        try:
            self._nv.nvmlShutdown()
        except self._nv.NVMLError:
            pass


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class NvmlUnavailable(Exception):
    """NVML cannot be used on this machine (the monitor falls back to the null backend)."""


@dataclass
class FakeDevice:
    """A scripted GPU. `power_w` / `util_pct` are constants or functions of elapsed seconds; `counter=False` is a
    pre-Volta part (no energy counter); `reset_at` lists elapsed seconds at which the driver reloads."""

    name: str = "NVIDIA A40"
    uuid: str = ""
    power_w: object = 250.0
    util_pct: object = 100.0
    mem_total_mib: int = 46068
    counter: bool = True
    reset_at: list[float] = field(default_factory=list)


class FakeBackend:
    """Scripted devices on a clock; the energy counter integrates the scripted power exactly (1 s steps)."""

    name = "fake"

    def __init__(self, devices: list[FakeDevice], clock=None, host: str = "fake"):
        self.clock = clock or FakeClock()
        self.t0 = self.clock.time()
        self._dev = {}
        for i, d in enumerate(devices):
            uuid = d.uuid or f"GPU-fake-{host}-{i}"
            self._dev[uuid] = (i, d)

    @classmethod
    def from_spec(cls, spec: str, clock=None) -> FakeBackend:
        """`{"devices": [{"name": "NVIDIA A40", "power_w": 250}, ...]}` or `{"count": 4, "name": ..., ...}`."""
        data = json.loads(spec) if spec else {}
        if "devices" in data:
            devs = [FakeDevice(**d) for d in data["devices"]]
        else:
            n = int(data.pop("count", 1))
            devs = [FakeDevice(**data) for _ in range(n)]
        return cls(devs, clock=clock)

    def _elapsed(self) -> float:
        return self.clock.time() - self.t0

    @staticmethod
    def _val(v, t: float) -> float:
        return float(v(t)) if callable(v) else float(v)

    def devices(self) -> list[DeviceInfo]:
        return [
            DeviceInfo(i, u, d.name, d.mem_total_mib, 300.0, d.counter) for u, (i, d) in self._dev.items()
        ]

    def energy_mj(self, uuid: str) -> int | None:
        _, d = self._dev[uuid]
        if not d.counter:
            return None
        t = self._elapsed()
        since = max([r for r in d.reset_at if r <= t], default=0.0)
        if callable(d.power_w):  # integrate numerically in 1 s steps
            total, s = 0.0, since
            while s < t:
                dt = min(1.0, t - s)
                total += self._val(d.power_w, s) * dt
                s += dt
            return int(total * 1000)
        return int(float(d.power_w) * (t - since) * 1000)

    def power_mw(self, uuid: str) -> float | None:
        return self._val(self._dev[uuid][1].power_w, self._elapsed()) * 1000

    def util_pct(self, uuid: str) -> float | None:
        return self._val(self._dev[uuid][1].util_pct, self._elapsed())

    def mem_used_mib(self, uuid: str) -> float | None:
        return 1000.0

    def shutdown(self) -> None:
        pass


def select_backend(gpu_indices=None, backend=None, host: str = "", clock=None, quiet: bool = False):
    """The backend object to use (see module docstring). Never raises for a missing GPU. `quiet` logs the
    fallback to null at INFO (a training rank: the node sampler has already warned)."""
    if backend is not None and not isinstance(backend, str):
        return backend
    choice = backend or os.environ.get("OPENRS_NVML_BACKEND", "auto")
    if choice.startswith("fake"):
        return FakeBackend.from_spec(choice.partition(":")[2], clock=clock or SystemClock())
    if choice == "null":
        return NullBackend(gpu_indices, host, reason="forced by OPENRS_NVML_BACKEND=null")
    if choice not in ("auto", "pynvml"):
        log.warning("openrs cost: OPENRS_NVML_BACKEND=%s is not one of pynvml, null, fake:<json>; using auto", choice)
    try:
        return PynvmlBackend(gpu_indices)
    except (NvmlUnavailable, OSError) as e:  # OSError: a broken libnvidia-ml on the loader path
        log.log(logging.INFO if quiet else logging.WARNING,
                "openrs cost: no NVML (%s); recording wall-clock GPU time only, energy unknown", e)
        return NullBackend(gpu_indices, host, reason=str(e))
