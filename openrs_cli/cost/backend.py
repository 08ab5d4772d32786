"""NVML backends: what the cost sampler reads from the GPUs.

Three implementations of one small interface (`devices`, `energy_mj`, `power_mw`, `util_pct`, `mem_used_mib`):

- `PynvmlBackend`: real NVML through nvidia-ml-py (imported as `pynvml`, lazily).
- `NullBackend`: no library or driver. Knows only which GPU indices were allocated (CUDA_VISIBLE_DEVICES or
  `gpu_indices`), so the ledger still records wall-clock GPU time; energy, power and utilisation are unknown.
- `FakeBackend`: scripted devices, power, utilisation and energy counters on a `FakeClock`, for tests.

Which GPUs a run bills: `select(gpu_indices)` resolves the allocation against the node's inventory (every GPU and
every MIG instance) the way CUDA reads CUDA_VISIBLE_DEVICES: NVML indices, `GPU-<uuid>` (a unique prefix will do),
`MIG-<uuid>` and `MIG-GPU-<gpu uuid>/<gi>/<ci>`; the first entry CUDA cannot use ends the list. Indices are NVML's
(PCI bus) order, which is CUDA's only under CUDA_DEVICE_ORDER=PCI_BUS_ID: openrs sets it for the processes it
launches (`device_order_env`), and a warning says when another order on a machine of mixed models may swap GPUs.
A MIG instance is billed as its own device (its name, e.g. "... MIG 1g.10gb", has its own price key); it has no
power or energy readings of its own, so it gets its parent GPU's, split equally among the run's instances on that
parent (an upper bound when other tenants use the rest of the GPU).

`select_backend()` picks one: `OPENRS_NVML_BACKEND=pynvml|null|fake:<json>` forces it, otherwise real NVML if it
initialises, else null with one warning. Per-reading methods return None when a reading is unavailable (not
supported, no permission, GPU lost); they never raise.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace

log = logging.getLogger("openrs.cost")


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    uuid: str
    name: str
    mem_total_mib: int | None = None
    power_limit_w: float | None = None
    has_energy_counter: bool = False
    parent_uuid: str | None = None  # a MIG instance: its GPU's UUID (power and energy are read there)
    mig: str | None = None  # a MIG instance: "<gpu instance id>/<compute instance id>"

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


def parse_visible(cvd: str | None) -> list[str] | None:
    """CUDA_VISIBLE_DEVICES as CUDA reads it: None when unset, else its entries up to the first one that is not an
    index or a GPU-/MIG- UUID (CUDA ignores that entry and all after it: "0,-1,1" is GPU 0 alone, "" is none)."""
    if cvd is None:
        return None
    out = []
    for p in cvd.split(","):
        p = p.strip()
        if not (p.isdigit() or p.startswith(("GPU-", "MIG-"))):
            break
        out.append(p)
    return out


def allocated_entries(gpu_indices=None) -> list[str] | None:
    """What this run may use, as CUDA_VISIBLE_DEVICES-style entries (NVML index digits or UUIDs); None = all GPUs.

    `gpu_indices` are CUDA indices as this process sees them: when CUDA_VISIBLE_DEVICES is set they index into it
    (NVML ignores that variable, so they are mapped here); a string that is not digits (a UUID) is taken as is.
    Without `gpu_indices`, CUDA_VISIBLE_DEVICES itself."""
    visible = parse_visible(os.environ.get("CUDA_VISIBLE_DEVICES"))
    if gpu_indices is None:
        return visible
    out = []
    for g in gpu_indices:
        if isinstance(g, str) and not g.strip().isdigit():
            out.append(g.strip())
        elif visible is None:
            out.append(str(int(g)))
        elif int(g) < len(visible):
            out.append(visible[int(g)])
    return out


def resolve_devices(inventory: list[DeviceInfo], entries: list[str] | None) -> tuple[list[DeviceInfo], list[str]]:
    """The inventory devices that `entries` name, in entry order and without repeats, and a note for an entry that
    names none (or more than one): like CUDA, that entry and every one after it are dropped. None = every GPU."""
    gpus = [d for d in inventory if d.parent_uuid is None]
    if entries is None:
        return gpus, []
    migs = [d for d in inventory if d.parent_uuid is not None]
    out: list[DeviceInfo] = []
    for e in entries:
        if e.isdigit():
            found = [d for d in gpus if d.index == int(e)]
        elif e.startswith("MIG-GPU-"):  # the R450/R460 form: MIG-GPU-<gpu uuid>/<gi>/<ci>
            parent, _, ids = e[len("MIG-"):].partition("/")
            found = [d for d in migs if d.parent_uuid.startswith(parent) and d.mig == ids]
        else:  # GPU-<uuid> or MIG-<uuid>; CUDA accepts any unique prefix
            found = [d for d in (migs if e.startswith("MIG-") else gpus) if d.uuid.startswith(e)]
        if len(found) != 1:
            what = "no device" if not found else f"{len(found)} devices"
            return out, [f"CUDA_VISIBLE_DEVICES entry '{e}' names {what} on this machine; like CUDA, it and the "
                         f"entries after it are ignored (use an index or a full UUID from nvidia-smi -L)"]
        if found[0] not in out:
            out.append(found[0])
    return out, []


def order_notes(inventory: list[DeviceInfo], entries: list[str] | None, order: str | None) -> list[str]:
    """A warning when GPUs named by index may be the wrong ones: CUDA numbers them in CUDA_DEVICE_ORDER (default
    FASTEST_FIRST), NVML by PCI bus, and the two differ on a machine with mixed GPU models."""
    if order in (None, "", "PCI_BUS_ID") or not entries or not any(e.isdigit() for e in entries):
        return []
    if len({d.name for d in inventory if d.parent_uuid is None}) < 2:
        return []
    return [f"CUDA_DEVICE_ORDER={order} numbers GPUs differently from NVML (PCI bus order) on this machine of mixed "
            f"GPU models, so GPUs given by index may be billed as the wrong ones; name them by UUID in "
            f"CUDA_VISIBLE_DEVICES, or set CUDA_DEVICE_ORDER=PCI_BUS_ID"]


def device_order_env(environ=None) -> dict[str, str]:
    """The environment openrs adds to the GPU processes it launches: CUDA_DEVICE_ORDER=PCI_BUS_ID, so CUDA indices
    are NVML's and the ledger names the GPUs that did the work; nothing when the user has set an order."""
    env = os.environ if environ is None else environ
    return {} if env.get("CUDA_DEVICE_ORDER") else {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def pin_device_order() -> None:
    """`device_order_env` for this process and what it starts (an in-process eval): call it before CUDA starts."""
    os.environ.update(device_order_env())


class _Allocation:
    """What PynvmlBackend and FakeBackend share: the inventory (`self._inventory`, every GPU and MIG instance), the
    selected devices, and the routing of a MIG instance's power and energy to its parent GPU (split equally)."""

    _inventory: list[DeviceInfo]

    def select(self, gpu_indices=None):
        """Bill the devices `gpu_indices` name (see `allocated_entries`); returns self."""
        entries = allocated_entries(gpu_indices)
        devices, notes = resolve_devices(self._inventory, entries)
        for note in notes + order_notes(self._inventory, entries, os.environ.get("CUDA_DEVICE_ORDER")):
            log.warning("openrs cost: %s", note)
        self._use(devices)
        return self

    def _use(self, devices: list[DeviceInfo]) -> None:
        self._devices = list(devices)
        shares = Counter(d.parent_uuid for d in devices if d.parent_uuid)
        self._source = {d.uuid: (d.parent_uuid, shares[d.parent_uuid]) if d.parent_uuid else (d.uuid, 1)
                        for d in devices}

    def devices(self) -> list[DeviceInfo]:
        return list(self._devices)

    def energy_mj(self, uuid: str) -> float | None:
        src, k = self._source[uuid]
        e = self._energy_mj(src)
        return None if e is None else e / k

    def power_mw(self, uuid: str) -> float | None:
        src, k = self._source[uuid]
        p = self._power_mw(src)
        return None if p is None else p / k


class NullBackend:
    """No NVML: the allocated GPUs are known by index only; every reading is None."""

    name = "null"

    def __init__(self, gpu_indices=None, host: str = "", reason: str = ""):
        self.reason, self.host = reason, host
        self.select(gpu_indices)

    def select(self, gpu_indices=None) -> NullBackend:
        entries = allocated_entries(gpu_indices) or []
        self._devices = [
            DeviceInfo(index=int(e) if e.isdigit() else n, uuid=f"nonvml-{self.host}-{e}", name="unknown")
            for n, e in enumerate(entries)
        ]
        return self

    def devices(self) -> list[DeviceInfo]:
        return list(self._devices)

    def driver_version(self) -> str | None:
        return None

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


class PynvmlBackend(_Allocation):
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
        self._dead: set[tuple[str, str]] = set()
        try:
            self._inventory = self._list()
        except pynvml.NVMLError as e:
            raise NvmlUnavailable(f"NVML could not list devices: {e}") from e
        self.select(gpu_indices)

    def _list(self) -> list[DeviceInfo]:
        """Every GPU in NVML (PCI bus) order, each followed by its MIG instances when MIG mode is on."""
        nv = self._nv
        out = []
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            gpu = self._describe(i, h, h)
            out.append(gpu)
            if self._try(lambda h=h: nv.nvmlDeviceGetMigMode(h)[0]) != nv.NVML_DEVICE_MIG_ENABLE:
                continue
            for j in range(self._try(lambda h=h: nv.nvmlDeviceGetMaxMigDeviceCount(h)) or 0):
                m = self._try(lambda h=h, j=j: nv.nvmlDeviceGetMigDeviceHandleByIndex(h, j))
                if m is None:  # NotFound: no instance in this slot
                    continue
                ids = f"{nv.nvmlDeviceGetGpuInstanceId(m)}/{nv.nvmlDeviceGetComputeInstanceId(m)}"
                out.append(replace(self._describe(i, m, h), parent_uuid=gpu.uuid, mig=ids))
        return out

    def _describe(self, i: int, h, parent) -> DeviceInfo:
        """Name and memory from the device itself (a MIG instance has its own); power limit and energy counter
        from `parent`, the physical GPU (the same handle for a whole GPU)."""
        nv = self._nv
        uuid = _s(nv.nvmlDeviceGetUUID(h))
        self._handles[uuid] = h
        name = _s(nv.nvmlDeviceGetName(h))
        mem = self._try(lambda: nv.nvmlDeviceGetMemoryInfo(h).total / 2**20)
        limit = self._try(lambda: nv.nvmlDeviceGetEnforcedPowerLimit(parent) / 1000.0)
        has_counter = self._try(lambda: nv.nvmlDeviceGetTotalEnergyConsumption(parent)) is not None
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

    def _energy_mj(self, uuid: str) -> int | None:
        return self._read("energy", uuid, self._nv.nvmlDeviceGetTotalEnergyConsumption)

    def _power_mw(self, uuid: str) -> float | None:
        return self._read("power", uuid, self._nv.nvmlDeviceGetPowerUsage)

    def util_pct(self, uuid: str) -> float | None:
        return self._read("utilization", uuid, lambda h: self._nv.nvmlDeviceGetUtilizationRates(h).gpu)

    def mem_used_mib(self, uuid: str) -> float | None:
        return self._read("memory", uuid, lambda h: self._nv.nvmlDeviceGetMemoryInfo(h).used / 2**20)

    def driver_version(self) -> str | None:
        try:
            v = self._nv.nvmlSystemGetDriverVersion()
        except self._nv.NVMLError:
            return None
        return v.decode() if isinstance(v, bytes) else str(v)

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
    migs: list[dict] = field(default_factory=list)  # MIG instances: [{"uuid": "MIG-...", "gi": 1, "ci": 0}, ...]


class FakeBackend(_Allocation):
    """Scripted devices on a clock; the energy counter integrates the scripted power exactly (1 s steps).

    Constructed directly it bills every scripted GPU (tests say which GPUs exist); `select(gpu_indices)` (which
    `open_monitor(gpu_indices=...)` and `from_spec` call) resolves an allocation exactly as the real backend does."""

    name = "fake"

    def __init__(self, devices: list[FakeDevice], clock=None, host: str = "fake"):
        self.clock = clock or FakeClock()
        self.t0 = self.clock.time()
        self._dev = {}
        self._inventory = []
        for i, d in enumerate(devices):
            uuid = d.uuid or f"GPU-fake-{host}-{i}"
            self._dev[uuid] = d
            self._inventory.append(DeviceInfo(i, uuid, d.name, d.mem_total_mib, 300.0, d.counter))
            for m in d.migs:
                mig = f"{m['gi']}/{m['ci']}"
                self._dev[m["uuid"]] = d
                self._inventory.append(DeviceInfo(i, m["uuid"], m.get("name", f"{d.name} MIG 1g.10gb"),
                                                  m.get("mem_total_mib", 9984), 300.0, d.counter, uuid, mig))
        self._use([g for g in self._inventory if g.parent_uuid is None])

    @classmethod
    def from_spec(cls, spec: str, clock=None, gpu_indices=None) -> FakeBackend:
        """`{"devices": [{"name": "NVIDIA A40", "power_w": 250}, ...]}` or `{"count": 4, "name": ..., ...}`; the
        allocation (gpu_indices, else CUDA_VISIBLE_DEVICES) is resolved as for real NVML."""
        data = json.loads(spec) if spec else {}
        if "devices" in data:
            devs = [FakeDevice(**d) for d in data["devices"]]
        else:
            n = int(data.pop("count", 1))
            devs = [FakeDevice(**data) for _ in range(n)]
        return cls(devs, clock=clock).select(gpu_indices)

    def driver_version(self) -> str:
        return "fake"

    def _elapsed(self) -> float:
        return self.clock.time() - self.t0

    @staticmethod
    def _val(v, t: float) -> float:
        return float(v(t)) if callable(v) else float(v)

    def _energy_mj(self, uuid: str) -> int | None:
        d = self._dev[uuid]
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

    def _power_mw(self, uuid: str) -> float | None:
        return self._val(self._dev[uuid].power_w, self._elapsed()) * 1000

    def util_pct(self, uuid: str) -> float | None:
        return self._val(self._dev[uuid].util_pct, self._elapsed())

    def mem_used_mib(self, uuid: str) -> float | None:
        return 1000.0

    def shutdown(self) -> None:
        pass


def select_backend(gpu_indices=None, backend=None, host: str = "", clock=None, quiet: bool = False):
    """The backend object to use (see module docstring). Never raises for a missing GPU. `quiet` logs the
    fallback to null at INFO (a training rank: the node sampler has already warned)."""
    if backend is not None and not isinstance(backend, str):
        # an object: it bills what it was built with, unless an allocation is given (then resolved against it)
        return backend.select(gpu_indices) if gpu_indices is not None and hasattr(backend, "select") else backend
    choice = backend or os.environ.get("OPENRS_NVML_BACKEND", "auto")
    if choice.startswith("fake"):
        return FakeBackend.from_spec(choice.partition(":")[2], clock=clock or SystemClock(), gpu_indices=gpu_indices)
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
