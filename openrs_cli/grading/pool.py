"""Persistent grading worker processes shared by all threads of a process, with a hard per-item time limit.

Workers are fresh interpreters started with `subprocess` (so they can be started from threads, forked children
and daemonic pool workers). Items are sent one at a time, preferring a worker that already parsed the item's
gold. An item whose worker has burned `timeout_s` (+ `timeout_s` for a gold not yet parsed there) + 1 s of CPU
time on it (read from /proc, so a busy machine does not count) gets its worker killed and replaced and is reported
TIMEOUT (ANSWER_UNPARSEABLE if the worker died). A wall-clock safety net, `_WALL_FACTOR` times that budget, stops a
worker that is blocked (stopped, swapping) rather than computing; that expiry is TIMEOUT too, never cached.
"""

from __future__ import annotations

import atexit
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from collections import deque

from openrs_cli.grading.config import GraderConfig, GradeResult, Verdict
from openrs_cli.grading.worker import send

_KILL_GRACE_S = 1.0
_START_S = 120.0  # a worker that has not imported math-verify by then is replaced
_STUCK_S = 0.3  # an item running longer than this no longer counts its worker as available
_SPARES = 2  # idle workers kept started beyond those in use
_MAX_WORKERS = 32
_PIPELINE = 3  # items queued per worker
_CAP = 500
_WALL_FACTOR = 10.0  # wall-clock safety net: a worker gets 10x its CPU budget in wall time (load 10 on every core)
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14 and 15)
    except (OSError, IndexError, ValueError):
        return None


class _Worker:
    def __init__(self) -> None:
        c_r, p_w = os.pipe()
        p_r, c_w = os.pipe()
        code = "import sys; from openrs_cli.grading.worker import main; main(int(sys.argv[1]), int(sys.argv[2]))"
        # Own session: a Ctrl-C in the terminal interrupts the parent only (which stops the workers), instead of
        # printing a KeyboardInterrupt traceback from every worker. The worker exits when its pipe closes, and
        # asks the kernel to kill it if this process dies (worker.main).
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(c_r), str(c_w), str(os.getpid())],
                                     pass_fds=(c_r, c_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     start_new_session=True)
        os.close(c_r)
        os.close(c_w)
        self.wfd, self.rfd = p_w, p_r
        self.buf = bytearray()
        self.ready = False
        self.queue: deque[int] = deque()  # items sent and not answered yet, in the order the worker takes them
        self.golds: set[str] = set()  # golds this worker has parsed (cached)
        self.since = 0.0  # when the head of the queue started (wall clock)
        self.cpu_since = 0.0  # the worker's CPU seconds then
        self.dead = False
        self.born = time.monotonic()

    def start_head(self, now: float) -> None:
        """The item at the head of the queue starts now: its budgets count from here."""
        self.since = now
        cpu = _cpu_seconds(self.proc.pid)
        self.cpu_since = cpu if cpu is not None else -1.0

    def overran(self, now: float, budget_s: float) -> bool:
        """The head item has used up its CPU budget, or the wall-clock safety net (wall time alone where /proc
        cannot be read)."""
        if now - self.since > budget_s * _WALL_FACTOR:
            return True
        cpu = _cpu_seconds(self.proc.pid) if self.cpu_since >= 0 else None
        if cpu is None:
            return now - self.since > budget_s
        return cpu - self.cpu_since > budget_s

    def messages(self) -> list | None:
        """Read what is available; None when the worker died."""
        try:
            chunk = os.read(self.rfd, 1 << 20)
        except OSError:
            chunk = b""
        if not chunk:
            return None
        self.buf += chunk
        out = []
        while len(self.buf) >= 4:
            n = struct.unpack("!I", self.buf[:4])[0]
            if len(self.buf) < 4 + n:
                break
            out.append(pickle.loads(bytes(self.buf[4:4 + n])))
            del self.buf[:4 + n]
        return out

    def kill(self) -> None:
        for fd in (self.wfd, self.rfd):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - already gone
            pass


class _Pool:
    """Persistent grading workers shared by all threads of one process."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.idle: list[_Worker] = []
        self.total = 0

    def _take(self, force: bool = False) -> _Worker | None:
        with self.lock:
            while self.idle:
                w = self.idle.pop()
                if w.proc.poll() is None and not w.dead:
                    w.start_head(time.monotonic())  # fresh budget for answers still due from an earlier call
                    return w
                self.total -= 1
                w.kill()
            if self.total >= _MAX_WORKERS and not force:
                return None
            self.total += 1
        return _Worker()

    def _warm(self, n: int) -> None:
        """Start idle workers until n exist, so a stuck worker can be covered without waiting for imports."""
        with self.lock:
            while self.total < min(n, _MAX_WORKERS):
                self.total += 1
                self.idle.insert(0, _Worker())  # taken last: ready ones are popped first

    def warm(self, n: int, timeout_s: float) -> int:
        self._warm(n)
        deadline = time.monotonic() + timeout_s
        with self.lock:  # take the starting ones out of the pool while reading their "ready"
            starting = [w for w in self.idle if not w.ready]
            self.idle = [w for w in self.idle if w.ready]
        waiting = list(starting)
        while waiting and time.monotonic() < deadline:
            ready, _, _ = select.select([w.rfd for w in waiting], [], [], 0.1)
            for w in [w for w in waiting if w.rfd in ready]:
                msgs = w.messages()
                if msgs is None or "ready" in msgs:  # a dead one is replaced when next taken
                    w.ready = msgs is not None
                    w.dead = msgs is None
                    waiting.remove(w)
        with self.lock:
            self.idle[:0] = starting
            return sum(w.ready for w in self.idle)

    def _give(self, w: _Worker, ok: bool) -> None:
        with self.lock:
            if ok:
                self.idle.append(w)
                return
            self.total -= 1
        w.kill()

    def run(self, op: str, cfg: GraderConfig, items: list[tuple[str, str]], nworkers: int) -> list:
        """Run (gold, completion) items on workers, in order of results; a few items are queued per worker so
        it never waits for this process to be scheduled, and items of one gold go to the same worker."""
        results: list = [None] * len(items)
        done = [False] * len(items)
        todo: dict[str, list[int]] = {}  # gold -> item indices still to send (reversed)
        for i, (g, _) in enumerate(items):
            todo.setdefault(g, []).append(i)
        for v in todo.values():
            v.reverse()
        left = len(items)
        busy: list[_Worker] = []
        startup_failures = 0
        stolen: set[int] = set()  # items re-sent because they waited behind a stuck one
        nworkers = max(1, min(nworkers, len(items)))
        for _ in range(nworkers):
            w = self._take(force=not busy)
            if w:
                busy.append(w)
        self._warm(len(busy) + _SPARES)

        def requeue(idxs) -> None:
            for i in idxs:
                if i >= 0 and not done[i] and i not in todo.get(items[i][0], ()):
                    todo.setdefault(items[i][0], []).append(i)

        try:
            while left:
                now = time.monotonic()
                stuck = {id(w) for w in busy if w.queue and now - w.since > _STUCK_S}
                for w in busy:
                    if id(w) in stuck and len(w.queue) > 1:  # let others take what waits behind a slow item
                        steal = [i for i in list(w.queue)[1:] if i not in stolen]
                        stolen.update(steal)
                        requeue(steal)
                while todo:
                    free = [w for w in busy if w.ready and not w.dead and id(w) not in stuck
                            and len(w.queue) < _PIPELINE]
                    if not free:
                        break
                    w = min(free, key=lambda x: len(x.queue))
                    gold = next((g for g in todo if g in w.golds), None)
                    if gold is None:  # a gold nobody works on yet, else the biggest group left
                        taken = {items[i][0] for x in busy for i in x.queue if i >= 0}
                        gold = next((g for g in todo if g not in taken), None) or max(todo, key=lambda g: len(todo[g]))
                    i = todo[gold].pop()
                    if not todo[gold]:
                        del todo[gold]
                    if done[i]:
                        continue
                    try:
                        send(w.wfd, (op, cfg, gold, items[i][1]))
                    except OSError:  # died while idle: nothing was graded, hand the item to another
                        requeue([i])
                        w.dead = True
                        continue
                    if not w.queue:
                        w.start_head(now)
                    w.queue.append(i)
                # a worker stuck on a slow item does not count: add one so the batch stays bounded
                if todo and len(busy) - len(stuck) < nworkers:
                    w = self._take()
                    if w:
                        busy.append(w)
                ready, _, _ = select.select([w.rfd for w in busy], [], [], 0.05)
                now = time.monotonic()
                for w in list(busy):
                    msgs = None if w.dead else w.messages() if w.rfd in ready else []
                    if not w.ready and (msgs is None or now - w.born > _START_S):
                        startup_failures += 1
                        if startup_failures >= 3:
                            raise RuntimeError("grading worker processes fail to start: run `python -c "
                                               "'import math_verify'` to see why")
                    head_limit = (cfg.timeout_s * (1 if w.queue and w.queue[0] >= 0 and items[w.queue[0]][0] in w.golds else 2)
                                  + _KILL_GRACE_S)  # a gold this worker has not parsed yet has its own budget
                    if msgs is None or (not w.ready and now - w.born > _START_S) or (
                            w.queue and w.ready and w.overran(now, head_limit)):
                        if w.queue and w.queue[0] >= 0 and not done[w.queue[0]]:  # it hung or died on this item
                            results[w.queue[0]] = None if op == "gold" else GradeResult(
                                Verdict.ANSWER_UNPARSEABLE if msgs is None else Verdict.TIMEOUT, None, None)
                            done[w.queue[0]] = True
                            left -= 1
                        requeue(list(w.queue)[1:])
                        busy.remove(w)
                        self._give(w, ok=False)
                        busy.append(self._take(force=True))
                        continue
                    for m in msgs:
                        if m == "ready":
                            w.ready = True
                            continue
                        i = w.queue.popleft()
                        w.start_head(now)
                        if i < 0:  # left over from an earlier call
                            continue
                        if len(w.golds) > 4000:  # the worker's gold cache holds 4096
                            w.golds.clear()
                        w.golds.add(items[i][0])
                        if not done[i]:  # an item taken over from a stuck worker may come back twice
                            results[i], done[i] = m, True
                            left -= 1
        except BaseException:
            for w in busy:
                self._give(w, ok=False)
            raise
        for w in busy:  # answers still due for items finished elsewhere are read and dropped later
            w.queue = deque(-1 for _ in w.queue)
            self._give(w, ok=True)
        return results


_POOL: _Pool | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> _Pool:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():  # forked child: the parent's workers are not ours
            for w in _POOL.idle if _POOL is not None else []:
                for fd in (w.wfd, w.rfd):  # drop our copies so the parent's workers still see EOF at its exit
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            _POOL = _Pool()
        return _POOL


@atexit.register
def _shutdown() -> None:
    if _POOL is not None and _POOL.pid == os.getpid():
        for w in _POOL.idle:
            w.kill()
