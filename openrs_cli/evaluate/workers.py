"""Engine worker processes that leave nothing behind.

Each worker is a spawned, non-daemonic process (vLLM starts its own EngineCore and worker processes, which a
daemonic process may not have) that makes itself a session leader first, so the worker and everything it
starts share one process group. However a worker ends, it kills its own group last. `close()` asks the
worker to exit, waits briefly, then kills that group and any descendant seen earlier (a second Ctrl-C
during the wait does not skip the kill); a parent that dies without closing is noticed by the worker, which
then ends (and so kills its group). A worker in its own session does not receive the terminal's Ctrl-C:
the parent gets the KeyboardInterrupt and closes its workers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal


def _main(target, env: dict, args: tuple, inbox, outbox, parent: int) -> None:
    os.setsid()
    os.environ.update(env)
    try:
        target(*args, inbox, outbox, parent)
    finally:  # however the worker ends, its engine processes end with it
        outbox.close()
        outbox.join_thread()  # the last reply is delivered before the kill
        kill_own_group()


def parent_gone(parent: int | None) -> bool:
    return parent is not None and os.getppid() != parent


def kill_own_group() -> None:
    """From inside a worker: kill its whole process group (itself included)."""
    os.killpg(os.getpgid(0), signal.SIGKILL)


def _descendants(pid: int) -> list:
    try:
        import psutil

        return psutil.Process(pid).children(recursive=True)
    except Exception:  # psutil missing or the process already gone
        return []


class Worker:
    """One worker process running `target(*args, inbox, outbox, parent_pid)` with `env` applied first."""

    def __init__(self, target, args: tuple, env: dict):
        ctx = mp.get_context("spawn")
        self.inbox, self.outbox = ctx.Queue(), ctx.Queue()
        self.proc = ctx.Process(target=_main, args=(target, env, args, self.inbox, self.outbox, os.getpid()),
                                daemon=False)
        self._seen = None
        self.proc.start()

    def send(self, job) -> None:
        self.inbox.put(job)

    def reply(self, poll_s: float = 1.0):
        return reply(self.proc, self.outbox, poll_s)

    def request_exit(self) -> None:
        """Ask the worker to exit (remembering its descendants first, to kill any that outlive it)."""
        if self._seen is None:
            self._seen = _descendants(self.proc.pid) if self.proc.is_alive() else []
            try:
                self.inbox.put(None)
            except (OSError, ValueError):
                pass

    def close(self, grace_s: float = 5.0) -> None:
        """Ask the worker to exit, wait up to grace_s, then kill its process tree; returns once it is gone."""
        doomed = []
        try:
            self.request_exit()
            self.proc.join(grace_s)
        finally:
            if self.proc.exitcode is None:  # not reaped yet, so its pid still names its process group
                doomed = _descendants(self.proc.pid) + _group(self.proc.pid)  # processes started meanwhile too
                kill_tree(self.proc.pid)
            doomed += self._seen or []
            for p in doomed:  # psutil refuses to signal a reused pid
                try:
                    p.kill()
                except Exception:
                    pass
        self.proc.join(5)
        _wait_gone(doomed, timeout_s=5.0)
        for q in (self.inbox, self.outbox):
            q.cancel_join_thread()
            q.close()


def _group(pgid: int) -> list:
    """Live members of process group `pgid` (psutil processes)."""
    try:
        import psutil
    except ImportError:
        return []
    out = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid:
                out.append(p)
        except (OSError, psutil.Error):
            pass
    return out


def _wait_gone(procs: list, timeout_s: float) -> None:
    """Until every process in `procs` has exited (a zombie counts as exited) or timeout_s passed."""
    if not procs:
        return
    import time

    import psutil

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = []
        for p in procs:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.Error:
                pass
        if not alive:
            return
        procs = alive
        time.sleep(0.05)


def reply(proc, outbox, poll_s: float = 1.0):
    """A worker's next message; ("error", ...) if the process died without answering."""
    while True:
        try:
            return outbox.get(timeout=poll_s)
        except queue.Empty:
            if not proc.is_alive():
                return ("error", f"worker process exited with code {proc.exitcode} without answering")


def kill_tree(pid: int) -> None:
    """SIGKILL the process group led by `pid`, and `pid` itself (it may not have made its group yet)."""
    for fn in (os.killpg, os.kill):
        try:
            fn(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
