"""Per-GPU running totals for the cost monitor: every reading extends energy (counter and power integral),
utilisation, idle time and peaks to `now`; `snap()`/`delta()` turn two points in time into one GPU's share of a
window or heartbeat interval. A counter that goes backwards (driver reload) starts a new segment.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from openrs_cli.cost.backend import DeviceInfo

log = logging.getLogger("openrs.cost")

IDLE_UTIL_PCT = 5.0


@dataclass
class _Snap:
    t: float
    counter_j: float
    counter_fail: int
    integral_j: float
    power_known_s: float
    idle_s: float
    util_s: float
    util_known_s: float


class Track:
    """Running totals for one GPU; every reading extends them to `now`."""

    def __init__(self, dev: DeviceInfo, backend, now: float):
        self.dev, self.b = dev, backend
        self.t = now
        self.counter_j = self.integral_j = self.power_known_s = 0.0
        self.idle_s = self.util_s = self.util_known_s = 0.0
        self.counter_fail = self.segments = 0
        self.last_counter = backend.energy_mj(dev.uuid) if dev.has_energy_counter else None
        self._counter_mark = (0.0, 0.0, now)  # integral_j, power_known_s, time at the last counter read
        self.last_power = _w(backend.power_mw(dev.uuid))
        self.power_max: float | None = None
        self.mem_max: float | None = None
        self.samples = 0

    def read(self, now: float, counter: bool) -> None:
        dt = max(0.0, now - self.t)
        p = _w(self.b.power_mw(self.dev.uuid))
        known = [x for x in (self.last_power, p) if x is not None]
        if known and dt:
            self.integral_j += sum(known) / len(known) * dt
            self.power_known_s += dt
        u = self.b.util_pct(self.dev.uuid)
        if u is not None and dt:
            self.util_known_s += dt
            self.util_s += dt * u / 100.0
            if u < IDLE_UTIL_PCT:
                self.idle_s += dt
        m = self.b.mem_used_mib(self.dev.uuid)
        if p is not None:
            self.power_max = p if self.power_max is None else max(self.power_max, p)
        if m is not None:
            self.mem_max = m if self.mem_max is None else max(self.mem_max, m)
        if counter and self.dev.has_energy_counter:
            e = self.b.energy_mj(self.dev.uuid)
            if e is None:
                self.counter_fail += 1
            elif self.last_counter is not None and e < self.last_counter:
                # Driver reload: the counter restarted from zero, and the energy between our last read and the
                # reload is in neither reading. New segment; bridge the gap with the power integral when the
                # gap was polled, else count only the energy since the reload (e).
                self.segments += 1
                log.warning("openrs cost: energy counter of %s went backwards; starting a new segment", self.dev.uuid)
                gap_s = self.power_known_s - self._counter_mark[1]
                polled = gap_s >= 0.99 * (now - self._counter_mark[2]) and gap_s > 0
                self.counter_j += (self.integral_j - self._counter_mark[0]) if polled else e / 1000.0
            elif self.last_counter is not None:
                self.counter_j += (e - self.last_counter) / 1000.0
            if e is not None:
                self.last_counter = e
                self._counter_mark = (self.integral_j, self.power_known_s, now)
        self.last_power = p
        self.t = now
        self.samples += 1

    def snap(self) -> _Snap:
        return _Snap(self.t, self.counter_j, self.counter_fail, self.integral_j, self.power_known_s, self.idle_s,
                     self.util_s, self.util_known_s)

    def delta(self, a: _Snap, b: _Snap) -> dict:
        span = b.t - a.t
        counter_ok = self.dev.has_energy_counter and b.counter_fail == a.counter_fail
        integral_ok = span > 0 and (b.power_known_s - a.power_known_s) >= 0.99 * span
        if counter_ok:
            energy, source = b.counter_j - a.counter_j, "counter"
        elif integral_ok:
            energy, source = b.integral_j - a.integral_j, "power_integral"
        elif span == 0 and (counter_ok or self.last_power is not None):
            energy, source = 0.0, "counter" if counter_ok else "power_integral"
        else:
            energy, source = None, "none"
        pk = b.power_known_s - a.power_known_s
        uk = b.util_known_s - a.util_known_s
        return {
            "uuid": self.dev.uuid, "name": self.dev.name, "index": self.dev.index,
            "gpu_seconds": span, "energy_j": energy, "energy_source": source,
            "power_integral_j": (b.integral_j - a.integral_j) if pk else None,
            "power_w_mean": (b.integral_j - a.integral_j) / pk if pk else None,
            "util_gpu_mean": 100.0 * (b.util_s - a.util_s) / uk if uk else None,
            "idle_s": (b.idle_s - a.idle_s) if uk else None,
            "busy_s": (b.util_s - a.util_s) if uk else None,
        }


def _w(mw) -> float | None:
    return None if mw is None else mw / 1000.0
