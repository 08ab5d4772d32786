"""Grading worker process: math-verify parse/verify under a CPU-time limit, with gold and comparison caches.

Runs as `python -c "from openrs_cli.grading.worker import main; main(rfd, wfd)"`; reads length-prefixed pickled
items (op, cfg, gold, completion) and answers one pickled result per item. Started and supervised by `pool`.

Time limit. Each step (the gold's parse, the answer's parse, the comparison) gets `cfg.timeout_s` seconds of
*CPU time* of this process (`ITIMER_PROF`), so a busy machine, which slows the step down, cannot make it time out:
the same input gets the same verdict at any load. A step that runs out of CPU time is TIMEOUT; a gold whose parse
ran out of time is never cached (as unparseable or otherwise) and makes that item TIMEOUT, which no reward turns
into 1.0. A step stuck where Python signals cannot reach it (a long C call) is the pool's to stop: it reads this
process's CPU time too, with a wall-clock safety net for a blocked process.
"""

from __future__ import annotations

import os
import pickle
import struct
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from openrs_cli.grading.config import EVAL_EXPR_GOLD, PAPER_REWARD, GraderConfig, GradeResult, Verdict

_CAP = 500


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


_API: dict = {}


def _mv_api() -> tuple[object, str]:
    """(the timeout argument that switches math-verify's own alarm off, verify's keyword for precision).

    math-verify >= 0.6 takes None and `float_rounding`; 0.5.2 (the paper's) calls `signal.alarm(t)`, for which 0
    means no alarm, and names the keyword `precision`."""
    if not _API:
        import inspect

        from math_verify import verify
        new = "float_rounding" in inspect.signature(verify).parameters
        _API["v"] = (None, "float_rounding") if new else (0, "precision")
    return _API["v"]


def _on_deadline(signum, frame):
    raise _Deadline


def _limited(fn, seconds: float):
    """fn() with at most `seconds` of this process's CPU time (user + system); _Deadline when it runs out.

    Needs `_on_deadline` installed for SIGPROF (main() does it) and the main thread."""
    import signal
    signal.setitimer(signal.ITIMER_PROF, max(seconds, 0.01))
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)


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


def _parsed_gold(gold: str, cfg: GraderConfig) -> tuple[list | None, bool]:
    """math-verify parse of the gold (cached per worker): ([] when unparseable, raw-string flag); (None, False)
    when the parse ran out of time, which is not cached: the next item with this gold parses it again."""
    from math_verify import parse

    key = (gold, cfg.gold_kind, cfg.gold_mode, cfg.gold_fallback_raw, cfg.timeout_s)
    if key in _GOLD_CACHE:
        _GOLD_CACHE.move_to_end(key)
        return _GOLD_CACHE[key]
    try:
        parsed = _limited(lambda: parse(gold, _targets(cfg)[0], extraction_mode=cfg.gold_mode,
                                        parsing_timeout=_mv_api()[0]), cfg.timeout_s)
    except _Deadline:
        return None, False
    value = ([gold], True) if not parsed and cfg.gold_fallback_raw and gold.strip() else (parsed, False)
    return _cached(_GOLD_CACHE, key, lambda: value)  # (lighteval compares an unextractable gold as a string)


def _shown(parsed: list) -> str | None:
    s = next((x for x in reversed(parsed) if isinstance(x, str)), None)
    if s is None and parsed:
        s = str(parsed[0])
    return None if s is None else s[:_CAP]


def _grade_one(completion: str, gold: str, cfg: GraderConfig) -> GradeResult:
    from math_verify import parse, verify
    gparsed, raw_gold = _parsed_gold(gold, cfg)
    if gparsed is None:
        return GradeResult(Verdict.TIMEOUT, None, None)
    if not gparsed:
        return GradeResult(Verdict.GOLD_UNPARSEABLE, None, None)
    gshown = None if raw_gold else _shown(gparsed)
    try:
        pred = _limited(lambda: parse(completion, _targets(cfg)[1], extraction_mode=cfg.pred_mode,
                                      parsing_timeout=_mv_api()[0]), cfg.timeout_s)
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
            off, precision = _mv_api()
            ok = _limited(lambda: verify(a, b, **{precision: cfg.precision}, timeout_seconds=off), cfg.timeout_s)
        except _Deadline:
            return Verdict.TIMEOUT
        except Exception:  # noqa: BLE001
            ok = False
        return Verdict.CORRECT if ok else Verdict.GOLD_UNPARSEABLE if raw_gold else Verdict.WRONG
    # the same extracted answer for the same gold (common within a GRPO group) is compared once; a comparison
    # that ran out of time is not remembered
    key = (cfg, gold, tuple(pred))
    try:
        verdict = _VERIFY_CACHE.get(key)
    except TypeError:  # an unhashable parse result (a mutable matrix)
        return GradeResult(compare(), shown, gshown)
    if verdict is None:
        verdict = compare()
        if verdict is not Verdict.TIMEOUT:
            _cached(_VERIFY_CACHE, key, lambda: verdict)
    return GradeResult(verdict, shown, gshown)


def send(fd: int, obj) -> None:
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


def _die_with(parent: int | None) -> None:
    """Linux: SIGKILL this worker when the process that started it dies, even mid C call (a huge power)."""
    if parent is None:
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the closed pipe still ends the loop
        return
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(0)


def main(rfd: int, wfd: int) -> None:
    """Loop of a grading worker process: read tasks, answer one message per completion."""
    import logging
    import signal
    import sys
    import warnings
    _die_with(int(sys.argv[3]) if len(sys.argv) > 3 else None)
    logging.disable(logging.CRITICAL)  # math-verify logs each timeout with the whole (maybe 200 KB) input
    warnings.filterwarnings("ignore")
    try:
        import resource
        mb = int(os.environ.get("OPENRS_GRADING_MAX_MEM_MB", "4096"))
        resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))  # huge powers: MemoryError, not OOM
    except (ImportError, ValueError, OSError):
        pass
    import math_verify  # noqa: F401  warm the import before saying ready

    signal.signal(signal.SIGPROF, _on_deadline)
    for cfg in (PAPER_REWARD, EVAL_EXPR_GOLD):  # first calls import half of sympy: do it before saying ready
        _grade_one(r"so \boxed{\frac{1}{2}}", "$0.5$", cfg)
        _grade_one(r"so \boxed{x^2+1}", "$(x+1)^2$", cfg)
    _GOLD_CACHE.clear()
    _VERIFY_CACHE.clear()
    send(wfd, "ready")
    while True:
        head = _read_exact(rfd, 4)
        if head is None:
            return
        body = _read_exact(rfd, struct.unpack("!I", head)[0])
        if body is None:
            return
        op, cfg, gold, completion = pickle.loads(body)
        try:
            res = _shown(_parsed_gold(gold, cfg)[0] or []) if op == "gold" else _grade_one(completion, gold, cfg)
        except _Deadline:  # a late timer signal
            res = None if op == "gold" else GradeResult(Verdict.TIMEOUT, None, None)
        except Exception:  # noqa: BLE001 - a bug: never kill the loop
            res = None if op == "gold" else GradeResult(Verdict.ANSWER_UNPARSEABLE, None, None)
        send(wfd, res)
