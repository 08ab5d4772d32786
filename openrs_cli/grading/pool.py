"""Persistent grading worker processes shared by all threads of a process, with a hard per-item time limit.

Workers are fresh interpreters started with `subprocess` (so they can be started from threads, forked children
and daemonic pool workers). Items are sent one at a time, preferring a worker that already parsed the item's
gold; an item that overruns `timeout_s` (+ `timeout_s` for a gold not yet parsed there) + 1 s gets its worker
killed and replaced and is reported TIMEOUT (ANSWER_UNPARSEABLE if the worker died).
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

from openrs_cli.grading.config import GraderConfig, GradeResult, Verdict
from openrs_cli.grading.worker import send

_KILL_GRACE_S = 1.0
_START_S = 120.0  # a worker that has not imported math-verify by then is replaced
_STUCK_S = 0.3  # an item running longer than this no longer counts its worker as available
_SPARES = 2  # idle workers kept started beyond those in use
_MAX_WORKERS = 32
_CAP = 500


class _Worker:
    def __init__(self) -> None:
        c_r, p_w = os.pipe()
        p_r, c_w = os.pipe()
        code = "import sys; from openrs_cli.grading.worker import main; main(int(sys.argv[1]), int(sys.argv[2]))"
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(c_r), str(c_w)], pass_fds=(c_r, c_w),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        os.close(c_r)
        os.close(c_w)
        self.wfd, self.rfd = p_w, p_r
        self.buf = bytearray()
        self.ready = False
        self.task: int | None = None  # index of the item in flight
        self.gold = ""  # its gold
        self.golds: set[str] = set()  # golds this worker has parsed (cached)
        self.since = 0.0  # when the current item was sent
        self.dead = False
        self.born = time.monotonic()

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
        """Run (gold, completion) items one at a time on workers, preferring a worker that parsed the gold."""
        results: list = [None] * len(items)
        todo: dict[str, list[int]] = {}  # gold -> item indices still to send (reversed)
        for i, (g, _) in enumerate(items):
            todo.setdefault(g, []).append(i)
        for v in todo.values():
            v.reverse()
        left = len(items)
        busy: list[_Worker] = []
        startup_failures = 0
        nworkers = max(1, min(nworkers, len(items)))
        for _ in range(nworkers):
            w = self._take(force=not busy)
            if w:
                busy.append(w)
        self._warm(len(busy) + _SPARES)
        try:
            while left:
                now = time.monotonic()
                for w in busy:
                    if w.ready and w.task is None and todo:
                        gold = next((g for g in todo if g in w.golds), None)
                        if gold is None:  # a gold nobody works on yet, else the biggest group left
                            taken = {x.gold for x in busy if x.task is not None}
                            gold = next((g for g in todo if g not in taken), None) or max(todo, key=lambda g: len(todo[g]))
                        w.task, w.gold, w.since = todo[gold].pop(), gold, now
                        if not todo[gold]:
                            del todo[gold]
                        try:
                            send(w.wfd, (op, cfg, gold, items[w.task][1]))
                        except OSError:  # died while idle: nothing was graded, hand the item to another
                            todo.setdefault(gold, []).append(w.task)
                            w.task, w.dead = None, True
                # a worker stuck on a slow item does not count: add one so the batch stays bounded
                if todo and sum(not (w.task is not None and now - w.since > _STUCK_S) for w in busy) < nworkers:
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
                    limit = cfg.timeout_s * (1 if w.gold in w.golds else 2) + _KILL_GRACE_S  # +gold parse
                    if msgs is None or (not w.ready and now - w.born > _START_S) or (
                            w.task is not None and now - w.since > limit):
                        if w.task is not None:  # it hung (killed) or died on this item
                            results[w.task] = None if op == "gold" else GradeResult(
                                Verdict.ANSWER_UNPARSEABLE if msgs is None else Verdict.TIMEOUT, None, None)
                            left -= 1
                        busy.remove(w)
                        self._give(w, ok=False)
                        busy.append(self._take(force=True))
                        continue
                    for m in msgs:
                        if m == "ready":
                            w.ready = True
                        elif w.task is not None:
                            results[w.task], w.task = m, None
                            if len(w.golds) > 4000:  # the worker's gold cache holds 4096
                                w.golds.clear()
                            w.golds.add(w.gold)
                            left -= 1
        except BaseException:
            for w in busy:
                self._give(w, ok=False)
            raise
        for w in busy:
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
