"""Which GPUs a run bills: CUDA_VISIBLE_DEVICES in every form CUDA accepts (indices, GPU-/MIG- UUIDs, unique
prefixes, MIG-GPU-<uuid>/<gi>/<ci>), CUDA's device order against NVML's, MIG power routed to the parent GPU, and an
explicit allocation (`gpu_indices`) billed exactly. NVML is nvidia-ml-py with its functions patched (no GPU here)."""

from __future__ import annotations

import logging
import types

import pytest

from openrs_cli.cost import FakeBackend, FakeClock, FakeDevice, open_monitor
from openrs_cli.cost.backend import PynvmlBackend, parse_visible
from openrs_cli.cost.summary import summarize_run
from openrs_cli.recipes import load_recipe
from openrs_cli.train.launch import detect_gpus, plan_launch
from tests.conftest import FinishedProcess as _Done

A40 = "GPU-11111111-2222-3333-4444-555555555555"
H100 = "GPU-8f2c0d1e-aaaa-bbbb-cccc-dddddddddddd"
MIG1 = "MIG-0a1b2c3d-1111-2222-3333-444444444444"
MIG2 = "MIG-9e8d7c6b-5555-6666-7777-888888888888"
# NVML (PCI bus) order: an A40 at index 0, an H100 in MIG mode at index 1 with two instances
GPUS = [
    {"uuid": A40, "name": "NVIDIA A40", "power_mw": 250_000, "migs": []},
    {"uuid": H100, "name": "NVIDIA H100 80GB HBM3", "power_mw": 600_000,
     "migs": [{"uuid": MIG1, "gi": 1, "ci": 0, "name": "NVIDIA H100 80GB HBM3 MIG 1g.10gb"},
              {"uuid": MIG2, "gi": 2, "ci": 0, "name": "NVIDIA H100 80GB HBM3 MIG 3g.40gb"}]},
]


def fake_pynvml(monkeypatch, gpus=GPUS):
    """nvidia-ml-py with NVML answered from `gpus`: handles are ("gpu", i) and ("mig", i, j); a MIG handle has no
    power or energy (NotSupported), as on real parts; the energy counter is 1 J per call."""
    import pynvml

    calls = {"energy": 0}

    def err(code):
        raise pynvml.NVMLError(code)

    def info(h):
        return gpus[h[1]] if h[0] == "gpu" else gpus[h[1]]["migs"][h[2]]

    def energy(h):
        if h[0] == "mig":
            err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        calls["energy"] += 1
        return 1000 * calls["energy"]

    def power(h):
        return err(pynvml.NVML_ERROR_NOT_SUPPORTED) if h[0] == "mig" else gpus[h[1]]["power_mw"]

    def mig_handle(h, j):
        return ("mig", h[1], j) if j < len(gpus[h[1]]["migs"]) else err(pynvml.NVML_ERROR_NOT_FOUND)

    fns = dict(
        nvmlInit=lambda: None, nvmlShutdown=lambda: None, nvmlDeviceGetCount=lambda: len(gpus),
        nvmlDeviceGetHandleByIndex=lambda i: ("gpu", i), nvmlDeviceGetUUID=lambda h: info(h)["uuid"],
        nvmlDeviceGetName=lambda h: info(h)["name"],
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(total=(80 if h[0] == "gpu" else 10) * 2**30,
                                                                used=2**30),
        nvmlDeviceGetEnforcedPowerLimit=lambda h: 300_000 if h[0] == "gpu" else err(pynvml.NVML_ERROR_NOT_SUPPORTED),
        nvmlDeviceGetTotalEnergyConsumption=energy, nvmlDeviceGetPowerUsage=power,
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=50),
        nvmlDeviceGetMigMode=lambda h: [int(bool(gpus[h[1]]["migs"])), 0],
        nvmlDeviceGetMaxMigDeviceCount=lambda h: 7, nvmlDeviceGetMigDeviceHandleByIndex=mig_handle,
        nvmlDeviceGetGpuInstanceId=lambda h: info(h)["gi"], nvmlDeviceGetComputeInstanceId=lambda h: info(h)["ci"],
    )
    for k, v in fns.items():
        monkeypatch.setattr(pynvml, k, v)


@pytest.fixture
def nvml(monkeypatch):
    fake_pynvml(monkeypatch)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    return monkeypatch


def uuids(backend):
    return [d.uuid for d in backend.devices()]


@pytest.mark.parametrize("cvd, expect", [
    (H100, [H100]),                                  # a full GPU UUID
    ("GPU-8f2c", [H100]),                            # a unique prefix, as CUDA accepts
    (f"{MIG2},{MIG1}", [MIG2, MIG1]),                # MIG UUIDs (R470+), in the order given
    ("MIG-0a1b", [MIG1]),
    (f"MIG-{H100}/2/0", [MIG2]),                     # the R450 form MIG-GPU-<uuid>/<gi>/<ci>
    ("1,0", [H100, A40]),
    (f"0,{A40}", [A40]),                             # the same GPU twice is billed once
    ("0,-1,1", [A40]),                               # CUDA stops at the first entry it cannot use
    ("GPU-", []),                                    # a prefix of both GPUs names neither: nothing after it either
    ("", []),
])
def test_visible_devices_in_every_cuda_form_resolve_to_nvml_devices(nvml, cvd, expect):
    nvml.setenv("CUDA_VISIBLE_DEVICES", cvd)
    assert uuids(PynvmlBackend()) == expect


def test_unresolvable_entry_warns_naming_it(nvml, caplog):
    nvml.setenv("CUDA_VISIBLE_DEVICES", "GPU-ffff,0")
    with caplog.at_level(logging.WARNING, logger="openrs.cost"):
        assert uuids(PynvmlBackend()) == []
    assert "'GPU-ffff' names no device" in caplog.text


def test_detect_gpus_sees_uuid_and_mig_entries(nvml):
    nvml.setenv("CUDA_VISIBLE_DEVICES", "GPU-8f2c")
    assert detect_gpus() == [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": H100, "nvml_index": 1}]
    nvml.setenv("CUDA_VISIBLE_DEVICES", f"{MIG1},{A40}")
    assert [(g["index"], g["uuid"], g["nvml_index"]) for g in detect_gpus()] == [(0, MIG1, 1), (1, A40, 0)]
    nvml.delenv("CUDA_VISIBLE_DEVICES")
    assert [g["uuid"] for g in detect_gpus()] == [A40, H100]  # whole GPUs, not their MIG instances


def test_mig_instances_read_power_and_energy_of_their_parent_split_among_the_run(nvml):
    nvml.setenv("CUDA_VISIBLE_DEVICES", f"{MIG1},{MIG2}")
    be = PynvmlBackend()
    d1, d2 = be.devices()
    assert (d1.parent_uuid, d1.mig, d1.index, d1.name) == (H100, "1/0", 1, "NVIDIA H100 80GB HBM3 MIG 1g.10gb")
    assert d1.has_energy_counter and d1.power_limit_w == 300.0 and d1.mem_total_mib == 10240
    assert be.power_mw(MIG1) == be.power_mw(MIG2) == 300_000  # the H100's 600 W, half to each instance
    nvml.setenv("CUDA_VISIBLE_DEVICES", MIG1)
    assert PynvmlBackend().power_mw(MIG1) == 600_000  # the run's only instance on that GPU takes all of it


def test_mig_slices_bill_once_per_parent_and_are_never_priced_as_the_whole_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{MIG1},{MIG2}")
    clock = FakeClock()
    gpu = FakeDevice(name="NVIDIA H100 80GB HBM3", uuid=H100, power_w=600.0,
                     migs=[{"uuid": MIG1, "gi": 1, "ci": 0}, {"uuid": MIG2, "gi": 2, "ci": 0}])
    mon = open_monitor(tmp_path, kind="eval", backend=FakeBackend([gpu], clock=clock), gpu_indices=[0, 1],
                       clock=clock, interval_s=60, heartbeat_s=600, thread=False)
    for _ in range(60):
        clock.advance(60)
        mon.tick()
    mon.close()
    s = summarize_run(tmp_path)
    assert s["gpu_count"] == 2 and s["gpu_hours"] == pytest.approx(2.0)  # two slices for an hour
    assert s["energy_kwh"] == pytest.approx(0.6)  # the parent's 600 W for an hour, counted once
    assert s["cost_usd"] is None and any("H100-MIG-1G.10GB" in w for w in s["warnings"])


def test_explicit_allocation_bills_exactly_those_gpus(tmp_path, monkeypatch):
    """An eval with one engine on CUDA index 1 of CUDA_VISIBLE_DEVICES=3,1,2 bills physical GPU 1 alone."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1,2")
    clock = FakeClock()
    be = FakeBackend([FakeDevice(uuid=f"GPU-{i}") for i in range(4)], clock=clock)
    mon = open_monitor(tmp_path, kind="eval", backend=be, gpu_indices=[1], clock=clock, interval_s=60,
                       heartbeat_s=600, thread=False)
    assert [d.uuid for d in mon.backend.devices()] == ["GPU-1"]
    for _ in range(60):
        clock.advance(60)
        mon.tick()
    mon.close()
    s = summarize_run(tmp_path)
    assert s["gpu_count"] == 1 and s["gpu_hours"] == pytest.approx(1.0) and s["energy_kwh"] == pytest.approx(0.25)


def test_explicit_allocation_through_the_backend_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENRS_NVML_BACKEND", 'fake:{"count": 4}')
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    mon = open_monitor(tmp_path, kind="eval", gpu_indices=[1], thread=False)
    assert [d.index for d in mon.backend.devices()] == [3]
    mon.close()
    mon = open_monitor(tmp_path / "all", kind="eval", thread=False)  # no allocation: CUDA_VISIBLE_DEVICES
    assert [d.index for d in mon.backend.devices()] == [2, 3]
    mon.close()


def test_indices_under_a_non_pci_order_on_mixed_gpus_warn(nvml, caplog):
    nvml.setenv("CUDA_VISIBLE_DEVICES", "0")
    nvml.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
    with caplog.at_level(logging.WARNING, logger="openrs.cost"):
        PynvmlBackend()
    assert "CUDA_DEVICE_ORDER=FASTEST_FIRST numbers GPUs differently" in caplog.text
    caplog.clear()
    for order, cvd in (("PCI_BUS_ID", "0"), ("FASTEST_FIRST", H100)):  # PCI order, or named by UUID: no doubt
        nvml.setenv("CUDA_DEVICE_ORDER", order)
        nvml.setenv("CUDA_VISIBLE_DEVICES", cvd)
        with caplog.at_level(logging.WARNING, logger="openrs.cost"):
            PynvmlBackend()
    assert "numbers GPUs differently" not in caplog.text


def test_launched_gpu_processes_get_pci_bus_order_unless_the_user_set_one(tmp_path):
    plan = plan_launch(load_recipe("exp3"), tmp_path / "run", gpus=4)
    assert {c.role: c.env.get("CUDA_DEVICE_ORDER") for c in plan.commands} == {"train": "PCI_BUS_ID",
                                                                                "vllm": "PCI_BUS_ID"}
    plan = plan_launch(load_recipe("exp3"), tmp_path / "run", gpus=4, device_order="FASTEST_FIRST")
    assert all("CUDA_DEVICE_ORDER" not in c.env for c in plan.commands)  # the user's order is inherited
    assert "CUDA_DEVICE_ORDER" not in plan_launch(load_recipe("tiny"), tmp_path / "cpu", gpus=0).command("train").env


def test_parse_visible_follows_cuda():
    assert parse_visible(None) is None
    assert parse_visible(" 1, GPU-ab ,x,2") == ["1", "GPU-ab"]




def test_a_cpu_training_on_a_gpu_machine_bills_none_of_its_gpus(tmp_path, monkeypatch):
    from openrs_cli.train.api import train

    monkeypatch.setenv("OPENRS_NVML_BACKEND", 'fake:{"count": 2}')  # the node has two GPUs; the tiny recipe is CPU
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    train("tiny", run_dir=tmp_path / "run", runner=lambda cmd, log: _Done())
    s = summarize_run(tmp_path / "run")
    assert s["gpu_count"] == 0 and s["gpu_hours"] == 0
