"""Answer grading on math-verify, shared by the GRPO rewards and the evaluator.

`grade(completion, gold, cfg)` extracts the answer from a completion and the gold from an answer or a full
solution, compares them with math-verify at `cfg.precision`, and says which of correct / wrong /
unparseable-gold / unparseable-answer / timed-out it is. It never raises on bad input.

Time limit. math-verify's own timeouts use `signal.alarm`, which only works in the main thread (0.9 raises
elsewhere, 0.5.2 silently returns wrong answers), and a signal cannot interrupt a long C call (sympy big-int
arithmetic on `10^{10^{10^{10}}}`). So every parse/verify runs in a persistent worker *process* (a fresh
interpreter started with `subprocess`, so it works from threads, thread pools, forked and daemonic pool
workers alike) with math-verify's timeouts disabled. Inside the worker an interval timer stops a call after
`cfg.timeout_s` (TIMEOUT); if the worker does not answer within `timeout_s + 1 s` it is killed and replaced.
The gold gets its own `timeout_s` budget (math-verify's behaviour: a gold that times out is unparseable).

Speed. `grade_many` sends items one at a time, preferring a worker that already parsed that gold (each worker
keeps an LRU cache of parsed golds, so a prompt's gold is parsed about once); an item running longer than
0.3 s stops counting its worker as available and an idle one (two are kept started) takes over, so a batch
with a few pathological completions still finishes in about one time limit. Before the symbolic comparison
it checks whether the extracted answer and gold strings are identical: math-verify's `verify` compares every
(gold, pred) pair and its string-string pair is plain equality, so that shortcut can never change a verdict.
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
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Literal


class Verdict(str, Enum):
    CORRECT = "correct"
    WRONG = "wrong"
    GOLD_UNPARSEABLE = "unparseable_gold"
    ANSWER_UNPARSEABLE = "unparseable_answer"
    TIMEOUT = "timed_out"


@dataclass(frozen=True)
class GradeResult:
    verdict: Verdict
    pred: str | None  # extracted answer as written in the completion (truncated to 500 chars)
    gold: str | None  # extracted gold as written

    @property
    def correct(self) -> bool:
        return self.verdict is Verdict.CORRECT


@dataclass(frozen=True)
class GraderConfig:
    """How to extract and compare. Targets name math-verify extraction configs: "latex" / "expr"."""

    gold_kind: Literal["latex", "expr", "latex+expr"] = "latex"
    gold_mode: Literal["first_match", "any_match"] = "any_match"
    gold_fallback_raw: bool = False  # lighteval: an unparseable gold is compared as a raw string
    pred_targets: tuple[str, ...] = ("expr", "latex")
    pred_boxed_first: bool = True  # LatexExtractionConfig(boxed_match_priority=0) instead of 50
    pred_anchor_free: bool = True  # try_extract_without_anchor
    pred_normalization: tuple[tuple[str, Any], ...] | None = None  # NormalizationConfig kwargs; None = default
    pred_mode: Literal["first_match", "any_match"] = "any_match"
    precision: int = 6  # verify(float_rounding=...)
    timeout_s: float = 5.0
    gold_first: bool = True  # verify(gold, pred); open-rs called verify(pred, gold)


# lighteval's extractive match as the paper's eval ran it: pred = expr + latex(boxed first), any match,
# precision 5, 5 s; gold extracted as expr (aime24, amc23) or latex (math_500, minerva, olympiadbench).
EVAL_EXPR_GOLD = GraderConfig(gold_kind="expr", gold_fallback_raw=True, precision=5, timeout_s=5.0)
EVAL_LATEX_GOLD = replace(EVAL_EXPR_GOLD, gold_kind="latex")
# open-rs `accuracy_reward`: gold LatexExtractionConfig() first_match; pred latex only, boxed first, anchor
# required, nits/malformed_operators off, equations on; verify(pred, gold), precision 6; 3 s (math-verify 0.5.2).
_PAPER_NORM = (("basic_latex", True), ("units", True), ("malformed_operators", False), ("nits", False),
               ("boxed", "all"), ("equations", True))
PAPER_REWARD = GraderConfig(gold_kind="latex", gold_mode="first_match", pred_targets=("latex",),
                            pred_anchor_free=False, pred_normalization=_PAPER_NORM, pred_mode="first_match",
                            precision=6, timeout_s=3.0, gold_first=False)
# open-rs `cosine_scaled_reward` parsed with boxed=True: not a latex2sympy value, so \boxed is only stripped
# in math-verify's plain-boxed group. Kept on purpose to reproduce the paper.
PAPER_COSINE = replace(PAPER_REWARD, pred_normalization=tuple(
    (k, True if k == "boxed" else v) for k, v in _PAPER_NORM))
# Our own reward grading: gold from an answer (expr+latex) or a solution, correct verify order.
FIXED_REWARD = GraderConfig(gold_kind="latex+expr", gold_mode="first_match", pred_targets=("latex", "expr"),
                            pred_anchor_free=False, precision=6, timeout_s=3.0)

_KILL_GRACE_S = 1.0
_START_S = 120.0  # a worker that has not imported math-verify by then is replaced
_STUCK_S = 0.3  # an item running longer than this no longer counts its worker as available
_SPARES = 2  # idle workers kept started beyond those in use
_MAX_WORKERS = 32
_CAP = 500


def extract_boxed(text: str) -> str | None:
    """Content of the last balanced \\boxed{...} in text (None if there is none)."""
    if not isinstance(text, str):
        return None
    end = len(text)
    while True:
        start = text.rfind("\\boxed{", 0, end)
        if start < 0:
            return None
        depth, i = 1, start + 7
        while i < len(text):
            ch = text[i]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[start + 7:i]
            i += 1
        end = start  # unclosed: try the previous one


def grade(completion: str, gold: str, cfg: GraderConfig = EVAL_LATEX_GOLD) -> GradeResult:
    """Grade one completion against one gold, within cfg.timeout_s (+1 s hard kill). Thread-safe."""
    return grade_many([(completion, gold)], cfg, workers=1)[0]


def gold_parses(gold: str, cfg: GraderConfig = EVAL_LATEX_GOLD) -> bool:
    """True if math-verify extracts a gold from `gold` under cfg (within the time limit)."""
    cfg = replace(cfg, gold_fallback_raw=False)
    return _pool().run("gold", cfg, [(_as_text(gold), "")], 1)[0] is not None


def grade_many(pairs: Sequence[tuple[str, str]], cfg: GraderConfig = EVAL_LATEX_GOLD,
               workers: int | None = None) -> list[GradeResult]:
    """Grade (completion, gold) pairs in worker processes; same results as grade() one by one, in order."""
    items = [(_as_text(g), _as_text(c)) for c, g in pairs]
    return _pool().run("grade", cfg, items, workers or default_workers()) if items else []


def warm_up(workers: int | None = None, timeout_s: float = 120.0) -> int:
    """Start the grading workers (and spares) now and wait until they are ready; returns how many are ready.

    Optional: the first grade() starts them anyway. Call it before timing, or before the first training step."""
    return _pool().warm((workers or default_workers()) + _SPARES, timeout_s)


def default_workers() -> int:
    """Worker processes for grade_many: OPENRS_GRADING_WORKERS, else the usable CPUs (at most 8)."""
    env = os.environ.get("OPENRS_GRADING_WORKERS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _as_text(x: object) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, bytes):
        return x.decode("utf-8", "replace")
    return "" if x is None else str(x)


# ----------------------------------------------------------------------------------------- worker side

class _Deadline(BaseException):  # BaseException: math-verify's `except Exception` must not swallow it
    pass


def _mv_targets(kind_list: Sequence[str], *, boxed_first: bool, anchor_free: bool, norm) -> list:
    from latex2sympy2_extended import NormalizationConfig
    from math_verify import ExprExtractionConfig, LatexExtractionConfig
    out = []
    for kind in kind_list:
        if kind == "expr":
            out.append(ExprExtractionConfig(try_extract_without_anchor=anchor_free))
        else:
            kw: dict[str, Any] = {"boxed_match_priority": 0 if boxed_first else 50,
                                  "try_extract_without_anchor": anchor_free}
            if norm is not None:
                kw["normalization_config"] = NormalizationConfig(**dict(norm))
            out.append(LatexExtractionConfig(**kw))
    return out


_TARGETS: dict = {}
_GOLD_CACHE: OrderedDict = OrderedDict()
_VERIFY_CACHE: OrderedDict = OrderedDict()


def _targets(cfg: GraderConfig) -> tuple[list, list]:
    if cfg not in _TARGETS:
        gold = _mv_targets(cfg.gold_kind.split("+"), boxed_first=False, anchor_free=True, norm=None)
        pred = _mv_targets(cfg.pred_targets, boxed_first=cfg.pred_boxed_first, anchor_free=cfg.pred_anchor_free,
                           norm=cfg.pred_normalization)
        _TARGETS[cfg] = (gold, pred)
    return _TARGETS[cfg]


def _limited(fn, seconds: float):
    import signal
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _cached(cache: OrderedDict, key, compute):
    try:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    except TypeError:  # an unhashable parse result (a mutable matrix): no caching
        return compute()
    value = cache[key] = compute()
    if len(cache) > 4096:
        cache.popitem(last=False)
    return value


def _parsed_gold(gold: str, cfg: GraderConfig) -> tuple[list, bool]:
    """math-verify parse of the gold (cached per worker): ([] when unparseable or timed out, raw-string flag)."""
    from math_verify import parse

    def compute():
        try:
            parsed = _limited(lambda: parse(gold, _targets(cfg)[0], extraction_mode=cfg.gold_mode,
                                            parsing_timeout=None), cfg.timeout_s)
        except _Deadline:
            parsed = []
        if not parsed and cfg.gold_fallback_raw and gold.strip():
            return [gold], True  # lighteval compares an unextractable gold as a string
        return parsed, False
    return _cached(_GOLD_CACHE, (gold, cfg.gold_kind, cfg.gold_mode, cfg.gold_fallback_raw, cfg.timeout_s), compute)


def _shown(parsed: list) -> str | None:
    s = next((x for x in reversed(parsed) if isinstance(x, str)), None)
    if s is None and parsed:
        s = str(parsed[0])
    return None if s is None else s[:_CAP]


def _grade_one(completion: str, gold: str, cfg: GraderConfig) -> GradeResult:
    from math_verify import parse, verify
    gparsed, raw_gold = _parsed_gold(gold, cfg)
    if not gparsed:
        return GradeResult(Verdict.GOLD_UNPARSEABLE, None, None)
    gshown = None if raw_gold else _shown(gparsed)
    try:
        pred = _limited(lambda: parse(completion, _targets(cfg)[1], extraction_mode=cfg.pred_mode,
                                      parsing_timeout=None), cfg.timeout_s)
    except _Deadline:
        return GradeResult(Verdict.TIMEOUT, None, gshown)
    except Exception:  # noqa: BLE001 - math-verify already swallows almost everything; never raise
        pred = []
    if not pred:
        return GradeResult(Verdict.ANSWER_UNPARSEABLE, None, gshown)
    shown = _shown(pred)
    # Shortcut: verify() tries every (gold, pred) pair and a str/str pair is equal iff the stripped strings
    # are equal and non-empty, so identical extracted strings make verify() True whatever else it does.
    gstr = {x.strip() for x in gparsed if isinstance(x, str)} - {""}
    if any(isinstance(x, str) and x.strip() in gstr for x in pred):
        return GradeResult(Verdict.CORRECT, shown, gshown)
    a, b = (gparsed, pred) if cfg.gold_first else (pred, gparsed)

    def compare() -> Verdict:
        try:
            ok = _limited(lambda: verify(a, b, float_rounding=cfg.precision, timeout_seconds=None), cfg.timeout_s)
        except _Deadline:
            return Verdict.TIMEOUT
        except Exception:  # noqa: BLE001
            ok = False
        return Verdict.CORRECT if ok else Verdict.GOLD_UNPARSEABLE if raw_gold else Verdict.WRONG
    # the same extracted answer for the same gold (common within a GRPO group) is compared once
    verdict = _cached(_VERIFY_CACHE, (cfg, gold, tuple(pred)), compare)
    return GradeResult(verdict, shown, gshown)


def _send(fd: int, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(struct.pack("!I", len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _worker_main(rfd: int, wfd: int) -> None:
    """Loop of a grading worker process: read tasks, answer one message per completion."""
    import logging
    import signal
    import warnings
    logging.disable(logging.CRITICAL)  # math-verify logs each timeout with the whole (maybe 200 KB) input
    warnings.filterwarnings("ignore")
    try:
        import resource
        mb = int(os.environ.get("OPENRS_GRADING_MAX_MEM_MB", "4096"))
        resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))  # huge powers: MemoryError, not OOM
    except (ImportError, ValueError, OSError):
        pass
    import math_verify  # noqa: F401  warm the import before saying ready

    def on_alarm(signum, frame):
        raise _Deadline

    signal.signal(signal.SIGALRM, on_alarm)
    for cfg in (PAPER_REWARD, EVAL_EXPR_GOLD):  # first calls import half of sympy: do it before saying ready
        _grade_one(r"so \boxed{\frac{1}{2}}", "$0.5$", cfg)
        _grade_one(r"so \boxed{x^2+1}", "$(x+1)^2$", cfg)
    _GOLD_CACHE.clear()
    _VERIFY_CACHE.clear()
    _send(wfd, "ready")
    while True:
        head = _read_exact(rfd, 4)
        if head is None:
            return
        body = _read_exact(rfd, struct.unpack("!I", head)[0])
        if body is None:
            return
        op, cfg, gold, completion = pickle.loads(body)
        try:
            res = _shown(_parsed_gold(gold, cfg)[0]) if op == "gold" else _grade_one(completion, gold, cfg)
        except (_Deadline, Exception):  # noqa: BLE001 - a late alarm or a bug: never kill the loop
            res = None if op == "gold" else GradeResult(Verdict.ANSWER_UNPARSEABLE, None, None)
        _send(wfd, res)


# ----------------------------------------------------------------------------------------- parent side

class _Worker:
    def __init__(self) -> None:
        c_r, p_w = os.pipe()
        p_r, c_w = os.pipe()
        code = "import sys; from openrs_cli.grading import _worker_main; _worker_main(int(sys.argv[1]), int(sys.argv[2]))"
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
                            _send(w.wfd, (op, cfg, gold, items[w.task][1]))
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
            _POOL = _Pool()
        return _POOL


@atexit.register
def _shutdown() -> None:
    if _POOL is not None and _POOL.pid == os.getpid():
        for w in _POOL.idle:
            w.kill()
