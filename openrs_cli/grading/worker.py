"""Grading worker process: math-verify parse/verify under an interval-timer limit, with gold and comparison caches.

Runs as `python -c "from openrs_cli.grading.worker import main; main(rfd, wfd)"`; reads length-prefixed pickled
items (op, cfg, gold, completion, overran) and answers one pickled (result, overran) per item. Started and
supervised by `pool`.

Overrun memo. Pathological answers get stuck in a few steps that are pure functions of their arguments:
math-verify's LaTeX-to-sympy conversion of an extracted string (`parse_latex_cached`: 5,000 nested braces keep
its ANTLR parser busy for hours), math-verify's `doit()` of a parsed expression, sympy's exact integer powers
(`Integer._eval_power`: `10^{10^{10^{10}}}` asks for a ten-billion-digit integer) and mpmath's powers at a
given precision (`mpf_pow_int`, the same tower under `evalf()`). When the time limit stops one of them after
it alone burned at least half the limit in CPU time, the worker records a digest of its arguments and the CPU
seconds it burned: the step needs more than that. The same arguments met again with a budget no larger than
that (plus `_MARGIN`, 5 %, inside the run-to-run noise of the straightforward scorer's own timeouts) are
stopped at once, as this worker would be after spending the whole budget on them again. A step
slowed down by a busy machine records only the CPU it got, so it is not skipped for a full budget until some
attempt burned that much. The pool passes every worker's records on to the others. Nothing else is skipped:
a record is dropped in a worker where its step finishes, and warm-up records are dropped.
Caveat, shared with the straightforward scorer: a step whose cost depends on what ran before in the process
(ANTLR and sympy caches) can be cheaper on a retry; for the inputs above every retry still timed out.
"""

from __future__ import annotations

import os
import pickle
import struct
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from openrs_cli.grading.config import EVAL_EXPR_GOLD, PAPER_REWARD, GraderConfig, GradeResult, Verdict

_CAP = 500
_MARGIN = 1.05  # a step that burned c CPU seconds is skipped for budgets <= c * _MARGIN
_MIN_SHARE = 0.5  # only a step that alone burned this share of the limit is recorded
_KEY_CAP = 20_000  # longer arguments are not remembered
_EXPR_CAP = 400  # nor expressions of more nodes (srepr would cost too much)


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
_OVERRAN: dict[bytes, float] = {}  # digest of "<kind>:<arguments>" -> most CPU seconds that step burned
_NEW_OVERRAN: list[tuple[bytes, float]] = []  # recorded here since the last answer, for the pool to share
_DEADLINE = [0.0, 0.0]  # monotonic deadline and length of the running limited call; 0 outside one
_SKIPS = [0]  # steps stopped at once since the last answer (reported to the pool, for tests)
_HAS = {"latex": False, "doit": False, "ipow": False, "mpfpow": False}  # any record of that kind yet


def _targets(cfg: GraderConfig) -> tuple[list, list]:
    if cfg not in _TARGETS:
        gold = _mv_targets(cfg.gold_kind.split("+"), boxed_first=False, anchor_free=True, norm=None)
        pred = _mv_targets(cfg.pred_targets, boxed_first=cfg.pred_boxed_first, anchor_free=cfg.pred_anchor_free,
                           norm=cfg.pred_normalization)
        _TARGETS[cfg] = (gold, pred)
    return _TARGETS[cfg]


def _limited(fn, seconds: float):
    import signal
    seconds = max(seconds, 0.01)
    _DEADLINE[:] = [time.monotonic() + seconds, seconds]
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _DEADLINE[:] = [0.0, 0.0]


def remember_overruns(records) -> None:
    """Merge (key digest, CPU seconds) overrun records (from another worker)."""
    for key, cpu in records:
        if cpu > _OVERRAN.get(key, -1.0):
            _OVERRAN[key] = cpu
            _HAS[_KINDS.get(key[:1], "")] = True


def forget_overruns() -> None:
    _OVERRAN.clear()
    _NEW_OVERRAN.clear()
    for kind in _HAS:
        _HAS[kind] = False


def _digest(kind: str, text: str) -> bytes:
    import hashlib
    return kind[:1].encode() + hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _guard(kind: str, fn, key_of):
    """Wrap a pure step so that arguments which overran the time limit are not computed again."""
    def guarded(*args, **kwargs):
        if not _DEADLINE[0] or kwargs:  # outside a limited call nothing can overrun; keywords: not keyed
            return fn(*args, **kwargs)
        key = None
        if _HAS[kind]:  # keys cost a little: only once this kind has overrun somewhere
            key = _key(kind, key_of, args)
            seen = _OVERRAN.get(key) if key is not None else None
            if seen is not None and _DEADLINE[0] - time.monotonic() <= seen * _MARGIN:
                _SKIPS[0] += 1
                replay = _Deadline()  # it burned more CPU than this budget before: it would again
                replay.recorded = True
                raise replay
        cpu0 = time.thread_time()
        try:
            out = fn(*args)
            if key is not None:  # it finished after all (warmer caches): forget it here
                _OVERRAN.pop(key, None)
            return out
        except _Deadline as e:
            if not getattr(e, "recorded", False):  # the innermost step that was running when time ran out
                e.recorded = True
                cpu = time.thread_time() - cpu0
                if cpu >= _MIN_SHARE * _DEADLINE[1]:  # it, not what ran before it, used up the limit
                    key = key if key is not None else _key(kind, key_of, args)
                    if key is not None:
                        remember_overruns([(key, cpu)])
                        _NEW_OVERRAN.append((key, cpu))
            raise
    guarded._openrs = True
    return guarded


def _key(kind: str, key_of, args) -> bytes | None:
    try:
        text = key_of(*args)
    except Exception:  # noqa: BLE001 - an argument we cannot key is just not remembered
        return None
    return None if text is None or len(text) > _KEY_CAP else _digest(kind, text)


def _small(*ints) -> bool:
    return all(isinstance(i, int) and i.bit_length() <= 4096 for i in ints)


def _latex_key(latex) -> str | None:
    return latex if isinstance(latex, str) else None


def _doit_key(expr) -> str | None:
    from sympy import preorder_traversal, srepr
    for n, _ in enumerate(preorder_traversal(expr)):
        if n > _EXPR_CAP:
            return None
    return f"{type(expr).__name__}:{srepr(expr)}"


def _ipow_key(base, expt) -> str | None:  # sympy Integer ** Rational (exact big-integer powers)
    from sympy import Integer, Rational
    if isinstance(base, Integer) and isinstance(expt, Rational) and _small(int(base.p), int(expt.p), int(expt.q)):
        return f"{int(base.p)}:{int(expt.p)}/{int(expt.q)}"
    return None


def _mpfpow_key(s, n, prec, rnd=None) -> str | None:  # mpmath float ** integer at a precision (evalf)
    from mpmath.libmp import libmpf
    if isinstance(s, tuple) and len(s) == 4 and _small(int(s[1]), int(s[2]), int(n), int(prec)):
        return f"{int(s[0])}:{int(s[1])}:{int(s[2])}:{int(n)}:{int(prec)}:{libmpf.round_fast if rnd is None else rnd}"
    return None


_KINDS = {b"l": "latex", b"d": "doit", b"i": "ipow", b"m": "mpfpow"}


def _rebind(old, new) -> None:
    """Point every loaded module's global that is `old` at `new` (modules import these by name)."""
    import sys
    for mod in list(sys.modules.values()):
        try:
            d = object.__getattribute__(mod, "__dict__")  # no module __getattr__: nothing lazy gets imported
        except Exception:  # noqa: BLE001 - not a plain module
            continue
        if isinstance(d, dict):
            for name, value in list(d.items()):
                if value is old:
                    d[name] = new


def install_guards() -> None:
    """Route the steps pathological answers get stuck in through the overrun memo (idempotent):
    math-verify's LaTeX conversion and doit(), sympy's exact integer powers and mpmath's powers."""
    from math_verify import grader, parser
    from mpmath.libmp import libmpf
    from sympy.core.numbers import Integer
    if getattr(parser.parse_latex_cached, "_openrs", False):
        return
    from functools import lru_cache
    cached = parser.parse_latex_cached  # guard the conversion inside math-verify's own small cache, so that
    latex = lru_cache(maxsize=20)(_guard("latex", getattr(cached, "__wrapped__", cached), _latex_key))
    latex._openrs = True  # a cached result is still answered at once
    _rebind(cached, latex)
    for old, kind, key_of in ((grader.safe_sympy_doit, "doit", _doit_key),
                              (libmpf.mpf_pow_int, "mpfpow", _mpfpow_key)):
        _rebind(old, _guard(kind, old, key_of))
    Integer._eval_power = _guard("ipow", Integer._eval_power, _ipow_key)


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
    install_guards()

    def on_alarm(signum, frame):
        raise _Deadline

    signal.signal(signal.SIGALRM, on_alarm)
    for cfg in (PAPER_REWARD, EVAL_EXPR_GOLD):  # first calls import half of sympy: do it before saying ready
        _grade_one(r"so \boxed{\frac{1}{2}}", "$0.5$", cfg)
        _grade_one(r"so \boxed{x^2+1}", "$(x+1)^2$", cfg)
    _GOLD_CACHE.clear()
    _VERIFY_CACHE.clear()
    forget_overruns()  # a warm-up slowed by a busy machine must not leave records
    send(wfd, "ready")
    while True:
        head = _read_exact(rfd, 4)
        if head is None:
            return
        body = _read_exact(rfd, struct.unpack("!I", head)[0])
        if body is None:
            return
        op, cfg, gold, completion, overran = pickle.loads(body)
        remember_overruns(overran)
        try:
            res = _shown(_parsed_gold(gold, cfg)[0]) if op == "gold" else _grade_one(completion, gold, cfg)
        except (_Deadline, Exception):  # noqa: BLE001 - a late alarm or a bug: never kill the loop
            res = None if op == "gold" else GradeResult(Verdict.ANSWER_UNPARSEABLE, None, None)
        send(wfd, (res, _NEW_OVERRAN[:], _SKIPS[0]))
        _NEW_OVERRAN.clear()
        _SKIPS[0] = 0
