"""Grading worker process: math-verify parse/verify under an interval-timer limit, with gold and comparison caches.

Runs as `python -c "from openrs_cli.grading.worker import main; main(rfd, wfd)"`; reads length-prefixed pickled
items (op, cfg, gold, completion) and answers one pickled result per item. Started and supervised by `pool`.
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


def main(rfd: int, wfd: int) -> None:
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
            res = _shown(_parsed_gold(gold, cfg)[0]) if op == "gold" else _grade_one(completion, gold, cfg)
        except (_Deadline, Exception):  # noqa: BLE001 - a late alarm or a bug: never kill the loop
            res = None if op == "gold" else GradeResult(Verdict.ANSWER_UNPARSEABLE, None, None)
        send(wfd, res)
