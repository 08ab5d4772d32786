"""`openrs cost track`: bill the GPUs of a command openrs does not start itself, such as the vLLM server node of a
multi-node Slurm job (`trl vllm-serve` on its own node, which no `openrs train` samples).

    openrs cost track --run-dir runs/exp3 --kind vllm-server -- trl vllm-serve --model ...

One cost monitor (`open_monitor`) covers the GPUs this process may use (CUDA_VISIBLE_DEVICES, as the rest of openrs
resolves it; with no NVML the null backend records wall-clock GPU time) and writes `<run>/cost/ledger-<host>.jsonl`,
which `openrs cost summary RUN` merges with the training nodes' ledgers by GPU UUID. The command runs as a child
(stdout and stderr inherited); SIGTERM and SIGINT (srun and scancel stop a step with SIGTERM) are forwarded to it; the
monitor closes with "ok" when it exits 0, "interrupted" when a signal stopped it, else "error"; the exit code is the
child's (128 + N when signal N ended it). Cost accounting never stops the command: a monitor that cannot open is one
warning and the command runs anyway. A command that cannot be started is an OpenrsError (one line, exit 2).

The run directory is made by the run's machine 0. By default, when it does not exist yet, the command starts at once
and the ledger opens as soon as the directory appears (so the ledger never creates a directory that a first
`openrs train` would then refuse as not empty); `wait=False` (`--no-wait`) creates it and opens the ledger at once.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
from pathlib import Path

from openrs_cli.errors import OpenrsError

log = logging.getLogger("openrs.cost")

FORWARDED = (signal.SIGTERM, signal.SIGINT)


def resolve_command(argv: list[str]) -> str:
    """The executable `argv[0]` names (a path, or a name on PATH); OpenrsError when there is none to run."""
    if not argv:
        raise OpenrsError("openrs cost track: no command given; put it after --, e.g. "
                          "openrs cost track --run-dir runs/exp3 -- trl vllm-serve --model ...")
    name = argv[0]
    if os.sep in name:
        ok = os.path.isfile(name) and os.access(name, os.X_OK)
        found = name if ok else None
    else:
        found = shutil.which(name)
    if found is None:
        raise OpenrsError(f"cannot run '{name}': no such executable file (not found on PATH, or not executable); "
                          f"check the command after --")
    return found


class _Ledger:
    """The monitor, opened now or, while the run directory does not exist yet, by a thread once it appears."""

    def __init__(self, run_dir: Path, kind: str, poll_s: float):
        self.run_dir, self.kind, self.poll_s = run_dir, kind, poll_s
        self.monitor = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self, wait: bool) -> None:
        if not wait or self.run_dir.is_dir():
            self._open()
            return
        log.warning("openrs cost: %s does not exist yet; its cost ledger opens when the run creates it (pass "
                    "--no-wait to create it now)", self.run_dir)
        self._thread = threading.Thread(target=self._wait_and_open, name="openrs-cost-track-wait", daemon=True)
        self._thread.start()

    def _wait_and_open(self) -> None:
        while not self._stop.wait(self.poll_s):
            if self.run_dir.is_dir():
                self._open()
                return

    def _open(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            try:
                from openrs_cli.cost.monitor import open_monitor

                self.monitor = open_monitor(self.run_dir, kind=self.kind)  # the GPUs of CUDA_VISIBLE_DEVICES
            except Exception as e:  # noqa: BLE001 - cost accounting must never stop the wrapped command
                log.warning("openrs cost: cost monitor disabled (%s: %s); the command runs without it",
                            type(e).__name__, e)

    def close(self, status: str) -> None:
        self._stop.set()
        with self._lock:  # an open in progress finishes first
            monitor, self.monitor = self.monitor, None
        if monitor is None:
            if self._thread is not None:
                log.warning("openrs cost: %s never appeared while the command ran; nothing was billed", self.run_dir)
            return
        try:
            monitor.close(status)
        except Exception as e:  # noqa: BLE001 - the command's exit code stands whatever the ledger does
            log.warning("openrs cost: closing the cost monitor failed (%s: %s)", type(e).__name__, e)


def exit_code(returncode: int) -> int:
    """The child's exit code as a shell reports it: 128 + N when signal N ended it."""
    return 128 - returncode if returncode < 0 else returncode


def track(run_dir, argv: list[str], *, kind: str = "vllm-server", wait: bool = True, poll_s: float = 1.0) -> int:
    """Run `argv` under a cost monitor on `run_dir` (see the module docstring); returns the exit code to exit with."""
    import subprocess

    from openrs_cli.cost.backend import pin_device_order

    argv = list(argv)
    resolve_command(argv)
    pin_device_order()  # the child's CUDA numbers GPUs as NVML does, so the ledger names the GPUs it uses
    ledger = _Ledger(Path(run_dir), kind, poll_s)
    ledger.start(wait)

    child: subprocess.Popen | None = None
    received: list[int] = []

    def forward(signum, frame) -> None:
        received.append(signum)
        if child is not None:
            try:
                child.send_signal(signum)
            except ProcessLookupError:  # already gone
                pass

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    status = "error"
    try:
        try:
            child = subprocess.Popen(argv)
        except OSError as e:
            raise OpenrsError(f"cannot run '{argv[0]}': {e.strerror or e}; check the command after --") from None
        if received:  # a signal came before the child existed: it gets it now
            forward(received.pop(), None)
        returncode = child.wait()
        status = "ok" if returncode == 0 else ("interrupted" if received else "error")
        return exit_code(returncode)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        ledger.close(status)
