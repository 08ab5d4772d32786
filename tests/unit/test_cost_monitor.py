"""Cost monitor on a fake clock (no sleeping): energy paths, windows, phases, backends and failure handling."""

from __future__ import annotations

import logging
import sys
import types

import pytest

from openrs_cli.cost import FakeBackend, FakeClock, FakeDevice, attach_monitor, open_monitor
from openrs_cli.cost.backend import NullBackend, PynvmlBackend, select_backend
from openrs_cli.cost.ledger import ledger_files, read_ledger
from openrs_cli.cost.summary import summarize_run


def drive(mon, clock, seconds: float, step: float) -> None:
    t = 0.0
    while t < seconds - 1e-9:
        dt = min(step, seconds - t)
        clock.advance(dt)
        mon.tick()
        t += dt


def fake_monitor(run_dir, devices, *, interval=60.0, heartbeat=3600.0, clock=None):
    clock = clock or FakeClock()
    be = FakeBackend(devices, clock=clock)
    return open_monitor(run_dir, kind="train", backend=be, clock=clock, interval_s=interval, heartbeat_s=heartbeat,
                        thread=False), clock


def records(run_dir):
    return [r for f in ledger_files(run_dir) for r in read_ledger(f)]


def test_four_a40_at_250w_for_24h_is_96_gpu_hours_24_kwh_42_dollars(tmp_path):
    mon, clock = fake_monitor(tmp_path, [FakeDevice(name="NVIDIA A40", power_w=250.0) for _ in range(4)])
    mon.begin_window("run")
    drive(mon, clock, 24 * 3600, 60)
    m = mon.end_window("run")
    mon.close()
    assert m.gpu_seconds == pytest.approx(4 * 24 * 3600)
    assert m.gpu_energy_j == pytest.approx(24 * 3.6e6)
    assert m.energy_source == "counter"
    s = summarize_run(tmp_path)
    assert s["gpu_count"] == 4 and s["gpu_name"] == "NVIDIA A40"
    assert s["gpu_hours"] == pytest.approx(96.0)
    assert s["energy_kwh"] == pytest.approx(24.0)
    assert s["cost_usd"] == pytest.approx(42.24)
    assert s["wall_s"] == pytest.approx(86400)
    assert s["idle_share"] == 0.0 and s["busy_gpu_hours"] == pytest.approx(96.0)


def test_gpu_without_energy_counter_uses_the_power_integral(tmp_path):
    # Power ramps 100 W -> 300 W linearly over an hour: trapezoids on 10 s polls integrate it exactly (200 W mean).
    ramp = FakeDevice(name="Tesla V100-SXM2-16GB", power_w=lambda t: 100 + 200 * min(t, 3600) / 3600, counter=False)
    mon, clock = fake_monitor(tmp_path, [ramp], interval=10, heartbeat=600)
    mon.begin_window("w")
    drive(mon, clock, 3600, 10)
    m = mon.end_window("w")
    mon.close()
    assert m.energy_source == "power_integral"
    assert m.gpu_energy_j == pytest.approx(200 * 3600, rel=1e-6)
    s = summarize_run(tmp_path)
    assert s["energy_kwh"] == pytest.approx(0.2, rel=1e-6)
    assert s["cost_usd"] is None  # V100 is not in the price table: no guessed dollars
    assert any("no price" in w for w in s["warnings"])


def test_counter_reset_mid_run_starts_a_new_segment(tmp_path, caplog):
    dev = FakeDevice(power_w=250.0, reset_at=[3600.0])
    mon, clock = fake_monitor(tmp_path, [dev], interval=60, heartbeat=1800)
    with caplog.at_level(logging.WARNING, logger="openrs.cost"):
        mon.begin_window("w")
        drive(mon, clock, 7200, 60)
        m = mon.end_window("w")
    mon.close()
    assert m.gpu_energy_j == pytest.approx(250 * 7200)  # not negative, not lost
    assert "went backwards" in caplog.text
    ivals = [g for r in records(tmp_path) if r["record"] == "interval" for g in r["gpus"]]
    assert sum(g["segments"] for g in ivals) == 1
    assert all(g["energy_j"] >= 0 for g in ivals)


def test_windows_nest_and_overlap_and_phases_split_wall_time(tmp_path):
    mon, clock = fake_monitor(tmp_path, [FakeDevice(util_pct=lambda t: 0.0 if t <= 600 else 100.0)], interval=10,
                              heartbeat=300)
    with mon.phase("setup"):
        drive(mon, clock, 600, 10)
    mon.begin_window("outer")
    with mon.phase("generation"):
        drive(mon, clock, 1200, 10)
    mon.begin_window("overlap")
    with mon.phase("train_step"):
        drive(mon, clock, 300, 10)
    outer = mon.end_window("outer")
    drive(mon, clock, 100, 10)
    ov = mon.end_window("overlap")
    mon.close()
    assert outer.wall_s == pytest.approx(1500) and ov.wall_s == pytest.approx(400)
    assert outer.gpu_energy_j == pytest.approx(250 * 1500)
    s = summarize_run(tmp_path)
    assert s["phases"]["setup"] == pytest.approx(600)
    assert s["phases"]["generation"] == pytest.approx(1200)
    assert s["phases"]["train_step"] == pytest.approx(300)
    assert s["phases"]["other"] == pytest.approx(100)
    assert s["idle_share"] == pytest.approx(600 / 2200)


def test_null_backend_when_library_missing(monkeypatch, tmp_path, caplog):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    monkeypatch.delenv("OPENRS_NVML_BACKEND", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with caplog.at_level(logging.WARNING, logger="openrs.cost"):
        be = select_backend()
    assert isinstance(be, NullBackend) and "not installed" in be.reason
    assert "no NVML" in caplog.text and len(be.devices()) == 2
    clock = FakeClock()
    mon = open_monitor(tmp_path, kind="train", backend=be, clock=clock, interval_s=60, heartbeat_s=600, thread=False)
    drive(mon, clock, 3600, 60)
    mon.close()
    s = summarize_run(tmp_path)
    assert s["gpu_count"] == 2 and s["gpu_hours"] == pytest.approx(2.0)
    assert s["energy_kwh"] is None and s["cost_usd"] is None and s["idle_share"] is None


def _pynvml_raising(code_name: str):
    import pynvml

    def init():
        raise pynvml.NVMLError(getattr(pynvml, code_name))

    return init


@pytest.mark.parametrize("code", ["NVML_ERROR_DRIVER_NOT_LOADED", "NVML_ERROR_LIBRARY_NOT_FOUND",
                                  "NVML_ERROR_NO_PERMISSION"])
def test_null_backend_when_driver_not_loaded(monkeypatch, code):
    import pynvml

    monkeypatch.setattr(pynvml, "nvmlInit", _pynvml_raising(code))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    be = select_backend(backend="auto")
    assert isinstance(be, NullBackend) and be.devices() == []


def _fake_pynvml(monkeypatch):
    """Patch pynvml: two GPUs, the second pre-Volta (no energy counter); GPU 0 is lost on its 2nd power read."""
    import pynvml

    reads = {"n": 0}

    def power(h):
        reads["n"] += 1
        if h == 0 and reads["n"] >= 2:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return 250_000

    def energy(h):
        if h == 1:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return 1_000_000

    fns = dict(
        nvmlInit=lambda: None, nvmlShutdown=lambda: None, nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i, nvmlDeviceGetUUID=lambda h: f"GPU-{h}",
        nvmlDeviceGetName=lambda h: ["NVIDIA A100-SXM4-80GB", "Tesla P100-PCIE-16GB"][h],
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(total=80 * 2**30, used=2**30),
        nvmlDeviceGetEnforcedPowerLimit=lambda h: 400_000, nvmlDeviceGetTotalEnergyConsumption=energy,
        nvmlDeviceGetPowerUsage=power, nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=50),
        nvmlDeviceGetMigMode=lambda h: [0, 0],
    )
    for k, v in fns.items():
        monkeypatch.setattr(pynvml, k, v)


def test_pynvml_backend_maps_devices_and_errors(monkeypatch, caplog):
    _fake_pynvml(monkeypatch)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    be = PynvmlBackend(gpu_indices=None)
    d0, d1 = be.devices()
    assert (d0.uuid, d0.has_energy_counter, d0.mem_total_mib, d0.power_limit_w) == ("GPU-0", True, 81920, 400.0)
    assert d1.has_energy_counter is False
    with caplog.at_level(logging.WARNING, logger="openrs.cost"):
        assert be.power_mw("GPU-0") == 250_000
        assert be.power_mw("GPU-0") is None  # lost: None from now on, one warning
        assert be.power_mw("GPU-0") is None
    assert caplog.text.count("unavailable on GPU-0") == 1
    assert [d.uuid for d in PynvmlBackend(gpu_indices=[1]).devices()] == ["GPU-1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # CUDA index 0 of this process is physical GPU 1
    assert [d.uuid for d in PynvmlBackend(gpu_indices=[0]).devices()] == ["GPU-1"]
    assert [d.uuid for d in PynvmlBackend().devices()] == ["GPU-1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-0")
    assert [d.uuid for d in PynvmlBackend().devices()] == ["GPU-0"]


def test_real_nvml_on_this_machine_never_raises(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENRS_NVML_BACKEND", raising=False)
    mon = open_monitor(tmp_path, kind="eval", interval_s=0.1)  # real backend selection, real sampler thread
    with mon.phase("eval"):
        pass
    mon.close()
    kinds = [r["record"] for r in records(tmp_path)]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end" and "window" in kinds


def test_a_failing_backend_never_crashes_the_run(tmp_path, caplog):
    class Broken(FakeBackend):
        def util_pct(self, uuid):
            raise RuntimeError("driver hiccup")

    clock = FakeClock()
    mon = open_monitor(tmp_path, kind="train", backend=Broken([FakeDevice()], clock=clock), clock=clock,
                       interval_s=60, heartbeat_s=600, thread=False)
    with caplog.at_level(logging.WARNING, logger="openrs.cost"):
        with mon.phase("train_step"):
            drive(mon, clock, 1200, 60)
        m = mon.end_window("never-begun")
    mon.close()
    mon.close()  # twice is fine
    assert m.wall_s == 0 and "monitor error" in caplog.text and "without begin_window" in caplog.text


def test_unwritable_ledger_warns_and_the_run_continues(tmp_path, caplog):
    blocker = tmp_path / "run"
    blocker.write_text("a file where the run dir should be")
    with caplog.at_level(logging.WARNING, logger="openrs.cost"):
        mon = open_monitor(blocker, kind="train", backend="null", thread=False)
        mon.begin_window("x")
        mon.end_window("x")
        mon.close()
    assert "cannot write the cost ledger" in caplog.text


def test_second_sampler_on_a_node_records_windows_only(tmp_path, caplog):
    clock = FakeClock()
    devs = [FakeDevice(uuid=f"GPU-{i}") for i in range(4)]
    a = open_monitor(tmp_path, kind="train", backend=FakeBackend(devs, clock=clock), clock=clock, interval_s=60,
                     heartbeat_s=600, thread=False)
    with caplog.at_level(logging.WARNING, logger="openrs.cost"):
        b = open_monitor(tmp_path, kind="train", backend=FakeBackend(devs, clock=clock), clock=clock,
                         interval_s=60, heartbeat_s=600, thread=False)
    assert a.sample and not b.sample and "already covers" in caplog.text
    for _ in range(60):
        clock.advance(60)
        a.tick()
        b.tick()
    a.close()
    b.close()
    assert summarize_run(tmp_path)["gpu_hours"] == pytest.approx(4.0)


def test_attach_monitor_records_rank_windows_without_gpu_hours(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    clock = FakeClock()
    node = open_monitor(tmp_path, kind="train", backend=FakeBackend([FakeDevice() for _ in range(4)], clock=clock),
                        clock=clock, interval_s=60, heartbeat_s=600, thread=False)
    rank = attach_monitor(tmp_path, backend="null", clock=clock)
    assert [d.index for d in rank.backend.devices()] == [5] and rank.backend.devices()[0].uuid.endswith("-5")
    with rank.phase("train_step", step=3):
        drive(node, clock, 600, 60)
    rank.close()
    node.close()
    win = [r for r in records(tmp_path) if r["record"] == "window"][0]
    assert win["rank"] == 1 and win["step"] == 3 and win["phase"] is True
    s = summarize_run(tmp_path)
    assert s["gpu_hours"] == pytest.approx(4 * 600 / 3600) and s["phases"]["train_step"] == pytest.approx(600)


def test_run_start_names_the_price_table_and_counter_vs_polling_disagreement_warns(tmp_path, caplog):
    class DoubleCounter(FakeBackend):
        def energy_mj(self, uuid):
            return 2 * super().energy_mj(uuid)

    clock = FakeClock()
    mon = open_monitor(tmp_path, kind="train", backend=DoubleCounter([FakeDevice()], clock=clock), clock=clock,
                       interval_s=1, heartbeat_s=30, thread=False)
    with caplog.at_level(logging.WARNING, logger="openrs.cost"):
        drive(mon, clock, 60, 1)
    mon.close()
    assert caplog.text.count("differ by more than 10%") == 1
    start = records(tmp_path)[0]
    assert start["price_table"]["id"] == "rental-2026" and start["devices"][0]["name"] == "NVIDIA A40"
    assert start["versions"]["openrs"]
