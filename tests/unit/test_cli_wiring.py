"""Every command and group answers --help; version and doctor work."""

import json

import pytest

from tests.conftest import run_openrs

COMMANDS = [[], ["data"], ["train"], ["eval"], ["cost"], ["report"], ["recipes"], ["doctor"], ["version"],
            ["recipes", "ls"], ["recipes", "show"], ["recipes", "validate"], ["recipes", "cp"],
            ["data", "build"], ["data", "inspect"], ["eval", "score"], ["eval", "compare"],
            ["cost", "summary"], ["cost", "estimate"], ["cost", "prices"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "openrs")
def test_help(cli, cmd):
    code, out, _ = cli(*cmd, "--help")
    assert code == 0
    assert "Usage" in out


def test_version(cli):
    from openrs_cli import __version__

    code, out, _ = cli("version")
    assert code == 0 and __version__ in out


def test_doctor_json(cli):
    code, out, _ = cli("doctor", "--json")
    assert code == 0
    info = json.loads(out)
    names = {p["name"]: p for p in info["packages"]}
    for pkg in ("torch", "transformers", "trl", "accelerate", "deepspeed", "vllm", "flash-attn", "lighteval",
                "math-verify"):
        assert pkg in names
    assert names["trl"]["status"] in ("ok", "untested")
    assert names["vllm"]["status"] == "missing" or names["vllm"]["version"]
    assert "cpu smoke runs (train tiny, eval transformers)" in info["capabilities"]
    assert info["gpus"] == [] or all("name" in g for g in info["gpus"])


def test_doctor_warns_outside_tested_set(monkeypatch):
    from openrs_cli import doctor

    monkeypatch.setattr(doctor, "tested_versions", lambda: {"trl": "0.0.1"})
    info = doctor.collect()
    assert {p["name"]: p["status"] for p in info["packages"]}["trl"] == "untested"


def test_bad_input_exit_code_and_one_line():
    r = run_openrs("recipes", "show", "no-such-recipe")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "unknown recipe 'no-such-recipe'" in lines[0]


def test_json_flag_and_progress_are_declared_once():
    """`--json` was declared seven times with five help texts, and progress was drawn four ways: one of each now."""
    from pathlib import Path

    import openrs_cli.commands as commands

    srcs = {p.name: p.read_text() for p in Path(commands.__file__).parent.glob("*.py")}
    assert [n for n, s in srcs.items() if '"--json"' in s] == ["_console.py"]
    assert [n for n, s in srcs.items() if "rich.progress import" in s] == ["_progress.py"]
