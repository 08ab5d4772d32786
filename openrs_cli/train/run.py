"""Running a launch plan: start its commands through an injectable runner (a function returning a Popen-like
object), the vLLM server first and the training once the server answers its health check; tail metrics.jsonl for
the progress callback; and stop every process started, with everything below it, however the run ends.

The plan itself (what runs where, the exact commands) is openrs_cli.train.launch. The vLLM server runs under a
small guard, `python -m openrs_cli.train.run -- CMD...`, that stops it with everything below it if the launcher
dies, even by SIGKILL: the kernel's SIGTERM alone is not enough (vLLM's server keeps starting through it, and
killed outright it leaves its engine process running).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from openrs_cli import jsonl
from openrs_cli.errors import OpenrsError
from openrs_cli.train.launch import Command, LaunchPlan

Runner = Callable[[Command, Path], "subprocess.Popen"]


def _die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """For the child, before exec: Linux sends `sig` when the launcher dies (no orphaned training)."""

    def arm() -> None:
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG
        except Exception:  # not Linux: the worker's own parent watchdog still applies
            pass

    return arm


def popen_runner(cmd: Command, log_path: Path, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen:
    """Start a command with its output in `log_path`, in its own process group (so it can be stopped whole).

    `pass_fds` keeps the run directory's lock open in the children, so the lock lives as long as they do. The vLLM
    server runs under `guard` (told SIGTERM when the launcher dies, it stops the server's whole tree)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **cmd.env}
    argv = list(cmd.argv)
    if cmd.role == "vllm":
        argv = [sys.executable, "-m", "openrs_cli.train.run", "--", *argv]
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                pass_fds=pass_fds,
                                preexec_fn=_die_with_parent(signal.SIGTERM if cmd.role == "vllm" else signal.SIGKILL))


def guard(argv: list[str], grace_s: float = 20.0) -> int:
    """Run `argv` and return its exit code; stop it with everything below it (`_stop`) when this process gets
    SIGTERM or SIGINT (the launcher's stop, or the kernel's word that the launcher died) or is orphaned."""
    parent, child = os.getppid(), None
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        child = subprocess.Popen(argv)
        while child.poll() is None and os.getppid() == parent:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if child is not None:
            _stop(child, grace_s)  # shorter than the launcher's own grace, so the guard ends first
    if child is None:
        return 143
    return child.returncode if child.returncode >= 0 else 128 - child.returncode


def _processes() -> list[tuple[int, str, int, int, str]]:
    """(pid, state, ppid, process group, start time) of every process, from Linux's /proc; [] elsewhere."""
    out = []
    try:
        entries = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return out
    for name in entries:
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:  # exited meanwhile
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
        out.append((int(name), fields[0], int(fields[1]), int(fields[2]), fields[19]))
    return out


def _tree(pid: int) -> dict[int, str]:
    """{pid: start time} of the live processes in `pid`'s process group or below it (the group a command was
    started in, and anything that left it)."""
    procs = [p for p in _processes() if p[1] != "Z"]
    kids: dict[int, list[int]] = {}
    for p in procs:
        kids.setdefault(p[2], []).append(p[0])
    start = {p[0]: p[4] for p in procs}
    found, todo = set(), [pid] + [p[0] for p in procs if p[3] == pid]
    while todo:
        q = todo.pop()
        if q not in found:
            found.add(q)
            todo.extend(kids.get(q, ()))
    return {q: start[q] for q in found if q in start}


def _stop(proc, grace_s: float = 30.0) -> None:
    """Stop a command and every process it started: SIGTERM to its process group (or, for a process that leads
    none, to each process below it), up to `grace_s` for all of them to exit, then SIGKILL to whatever is left
    (also what left the group or outlived its parent)."""
    if not isinstance(getattr(proc, "pid", None), int) or proc.pid <= 0:  # not a real process (tests' fakes)
        if proc.poll() is None:
            proc.terminate()
            proc.wait()
        return
    tree = _tree(proc.pid)
    if proc.poll() is None or tree:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except OSError:  # not a group leader (the guard's child): each process of its tree
            for q in tree:
                try:
                    os.kill(q, signal.SIGTERM)
                except OSError:
                    pass
    deadline, alive = time.monotonic() + grace_s, list(tree)
    while True:
        proc.poll()  # reap the leader as soon as it exits
        tree.update(_tree(proc.pid))
        now = {p[0]: p[4] for p in _processes() if p[1] != "Z"}
        alive = [q for q, st in tree.items() if now.get(q) == st]  # same start time: not a reused pid
        if (proc.returncode is not None and not alive) or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    for q in alive:
        try:
            os.kill(q, signal.SIGKILL)
        except OSError:
            pass
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def wait_for_server(url: str, timeout_s: float, proc, log_path: Path, poll_s: float = 1.0) -> None:
    """Return once GET `url` answers 200 (vLLM's /health, which TRL's client polls too). One-line OpenrsError,
    naming the server's log, when the server exits first or `timeout_s` passes."""
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # a local server: never via a proxy
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise OpenrsError(f"the vLLM server exited with code {proc.returncode} before it answered {url}; see "
                              f"{log_path}")
        try:
            with opener.open(url, timeout=max(0.1, min(5.0, deadline - time.monotonic()))) as r:
                if r.status == 200:
                    return
        except OSError:  # refused, reset, timed out, or an HTTP error status: not up yet
            pass
        if time.monotonic() >= deadline:
            raise OpenrsError(f"the vLLM server did not answer {url} within {timeout_s:g} s, so training was not "
                              f"started; see {log_path} (a slow start: raise generation.vllm_server_timeout)")
        time.sleep(poll_s)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_plan(plan: LaunchPlan, *, runner: Runner = popen_runner, on_event: Callable[[str, dict], None] | None = None,
             poll_s: float = 0.5) -> int:
    """Start the plan's commands (the vLLM server first, training once the server answers its health check),
    report metrics records, return the training exit code. Whatever happens (training ends or fails, the server
    never comes up, Ctrl-C or SIGTERM), every process started here is stopped before this returns or raises."""
    import threading

    emit = on_event or (lambda kind, data: None)
    run_dir = Path(plan.run_dir)
    logs = run_dir / "logs"
    procs = []
    tail = jsonl.Tail(run_dir / "metrics.jsonl")
    main_thread = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _raise_interrupt) if main_thread else None  # SIGTERM: clean up too
    try:
        vllm_cmd = plan.command("vllm")
        if vllm_cmd:
            vlog = logs / "vllm-serve.log"
            procs.append(runner(vllm_cmd, vlog))
            emit("started", {"role": "vllm", "log": str(vlog)})
            srv = plan.vllm_server or {}
            if srv.get("health_url"):
                wait_for_server(srv["health_url"], srv["timeout_s"], procs[0], vlog, poll_s=min(1.0, poll_s * 2))
                emit("ready", {"role": "vllm", "url": srv["health_url"]})
        train = runner(plan.command("train"), logs / "train.log")
        procs.append(train)
        emit("started", {"role": "train", "log": str(logs / "train.log")})
        while train.poll() is None:
            for rec in tail.read():
                emit("metrics", rec)
            if vllm_cmd and procs[0].poll() is not None:
                emit("error", {"message": f"the vLLM server exited with code {procs[0].returncode}; see "
                                          f"{logs / 'vllm-serve.log'}"})
                _stop(train)
                break
            time.sleep(poll_s)
        for rec in tail.read():
            emit("metrics", rec)
        return train.wait()
    finally:
        if main_thread:  # a second Ctrl-C or SIGTERM must not cut the clean-up short and orphan the rest
            old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for p in reversed(procs):
            _stop(p)
        if main_thread:
            signal.signal(signal.SIGINT, old_int if old_int is not None else signal.default_int_handler)
            signal.signal(signal.SIGTERM, old_term if old_term is not None else signal.SIG_DFL)


if __name__ == "__main__":  # the guard: python -m openrs_cli.train.run -- CMD...
    raise SystemExit(guard(sys.argv[sys.argv.index("--") + 1:]))
