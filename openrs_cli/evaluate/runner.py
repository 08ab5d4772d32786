"""`run_eval`: generate k samples per problem, grade them as they finish, append them, and write results.json.

Work is (task, problem, sample) triples; those already in generations.jsonl are skipped, the rest go to the
backend in batches of `batch_size` sequences, each batch graded and appended (fsync) before the next, so a
kill loses at most the batch in flight and a rerun continues without duplicates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from openrs_cli.errors import Interrupted, OpenrsError, RunDirError
from openrs_cli.evaluate import metrics, store
from openrs_cli.evaluate.generation import (
    BACKENDS,
    Sampling,
    default_batch_size,
    make_backend,
    pick_backend,
    place,
    sample_seed,
)
from openrs_cli.evaluate.scoring import grade_pairs, task_results
from openrs_cli.evaluate.tasks import TaskData, load_task, parse_tasks
from openrs_cli.models import check_model_ref
from openrs_cli.schema import record

ENGINES = ("openrs", "lighteval")


@dataclass
class EvalConfig:
    model: str
    tasks: str = "aime24,amc23,math_500,minerva,olympiadbench"
    revision: str | None = None
    label: str | None = None
    samples: int = 1
    limit: int | None = None
    max_new_tokens: int = 32768
    temperature: float = 0.6
    top_p: float = 0.95
    seed: int = 1234
    backend: str = "auto"
    batch_size: int | None = None
    data: str = "bundled"
    out_dir: str | None = None
    cost: bool = True
    engine: str = "openrs"
    data_parallel: int | None = None
    max_model_len: int | None = None
    fresh: bool = False  # discard the directory's samples (other weights) and start over
    extra: dict = field(default_factory=dict)
    samples_per_task: dict[str, int] | None = None  # a protocol's samples per task (else `samples` for all)
    protocol: dict | None = None  # {"name", "source", "overrides"} of the named protocol these settings come from
    shard: str | None = None  # "i/N": only problems i, i+N, i+2N, ... of each task (a Slurm array task)

    def samples_for(self, task: str) -> int:
        return int((self.samples_per_task or {}).get(task, self.samples))


def _versions() -> dict:
    from openrs_cli.versions import versions

    return versions(("math-verify", "transformers", "torch", "vllm"))


def _open_cost(out_dir: Path, enabled: bool, gpu_indices: list[int] | None = None):
    """The cost monitor (openrs_cli.cost.open_monitor) when the cost package exists and --no-cost is not given; never fails the eval.
    It bills the GPUs the backend uses (gpu_indices), not every visible one."""
    if not enabled:
        return None
    from openrs_cli.cost import open_monitor

    try:
        return open_monitor(out_dir, kind="eval", gpu_indices=gpu_indices)
    except Exception:  # monitoring must never break the run it measures
        return None


def _ledger_path(out_dir: Path) -> str | None:
    found = sorted((out_dir / "cost").glob("ledger-*.jsonl")) if (out_dir / "cost").is_dir() else []
    if not found:
        return None
    mine = [p for p in found if p.name == f"ledger-{socket.gethostname()}.jsonl"]
    return str((mine or found)[0])


def parse_shard(text: str) -> tuple[int, int]:
    """'i/N' -> (i, N) with 0 <= i < N."""
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise OpenrsError(f"--shard {text}: give i/N, e.g. 0/4 (the first of 4 shards)") from None
    if not 0 <= i < n:
        raise OpenrsError(f"--shard {text}: i must be in 0..N-1 (got {i} of {n})")
    return i, n


def pending_work(datas: list[TaskData], samples, done: set[tuple[str, str, int]]) -> list[tuple]:
    """(TaskData, Problem, sample index) triples not yet in generations.jsonl, in task/problem/sample order.
    `samples`: per problem, an int for every task or a function of the task name."""
    per = samples if callable(samples) else (lambda _t: samples)
    return [(td, p, s) for td in datas for p in td.problems for s in range(per(td.task.name))
            if (td.task.name, p.id, s) not in done]


def batches(work: list[tuple], size: int) -> list[list[tuple]]:
    return [work[i:i + size] for i in range(0, len(work), size)]


def run_eval(cfg: EvalConfig, on_progress: Callable[[dict], None] | None = None) -> dict:
    """Run (or resume) an eval and return the results dict written to <out_dir>/results.json."""
    if cfg.samples < 1 or any(n < 1 for n in (cfg.samples_per_task or {}).values()):
        raise OpenrsError(f"--samples must be >= 1 (got {cfg.samples})")
    if cfg.limit is not None and cfg.limit < 1:
        raise OpenrsError(f"--limit must be >= 1 (got {cfg.limit})")
    # checked before the output dir is touched: eval-run.json must never record a setting that cannot run
    if cfg.max_new_tokens < 1:
        raise OpenrsError(f"--max-new-tokens must be >= 1 (got {cfg.max_new_tokens})")
    if cfg.temperature < 0:
        raise OpenrsError(f"--temperature must be >= 0, 0 meaning greedy (got {cfg.temperature})")
    if not 0 < cfg.top_p <= 1:
        raise OpenrsError(f"--top-p must be in (0, 1] (got {cfg.top_p})")
    for flag, v in (("--batch-size", cfg.batch_size), ("--data-parallel", cfg.data_parallel),
                    ("--max-model-len", cfg.max_model_len)):
        if v is not None and v < 1:
            raise OpenrsError(f"{flag} must be >= 1 (got {v}); leave it out for the default")
    if cfg.engine not in ENGINES:
        raise OpenrsError(f"unknown engine '{cfg.engine}'; valid: {', '.join(ENGINES)}")
    if cfg.backend not in BACKENDS:
        raise OpenrsError(f"unknown backend '{cfg.backend}'; valid: {', '.join(BACKENDS)}")
    if cfg.engine == "lighteval":
        from openrs_cli.evaluate.lighteval_engine import check_settings

        check_settings(cfg)
    specs = parse_tasks(cfg.tasks)
    check_model_ref(cfg.model)
    from openrs_cli.evaluate.fingerprint import normalise_model

    cfg = dataclasses.replace(cfg, model=normalise_model(cfg.model))  # ./m, m/, a link to m: one model, one dir
    datas = [load_task(t, cfg.data, cfg.limit) for t in specs]
    if cfg.shard is not None:
        i, n = parse_shard(cfg.shard)
        datas = [dataclasses.replace(td, problems=td.problems[i::n]) for td in datas]
    out_dir = Path(cfg.out_dir) if cfg.out_dir else store.default_out_dir(cfg.model, cfg.revision,
                                                                             [t.name for t in specs])
    store.check_out_dir(out_dir)
    made = next((p for p in reversed([out_dir, *out_dir.parents]) if not p.exists()), None)
    had = {name: (out_dir / name).exists() for name in (store.RUN_SPEC, store.GENERATIONS, "cost")}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file in the way, an unwritable or impossible path
        raise RunDirError(f"--out {out_dir}: cannot create the output directory ({e.strerror or e}); "
                          f"pass a writable directory path") from None
    try:
        return _run(cfg, datas, out_dir, on_progress)
    except BaseException as e:
        if _undo_start(out_dir, made, had) and isinstance(e, Interrupted):
            raise Interrupted("interrupted before any sample was generated (nothing kept); rerun the same command "
                              "to start") from None
        raise


def _undo_start(out_dir: Path, made: Path | None, had: dict[str, bool]) -> bool:
    """A start that failed before any sample was saved leaves nothing behind: the directories this run made are
    removed; in a directory the user already had, only the files this run added. True when it undid the start."""
    import shutil

    gen = out_dir / store.GENERATIONS
    if gen.exists() and gen.stat().st_size > 0:
        return False
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)
        return True
    for name in (n for n, existed in had.items() if not existed):
        if (out_dir / name).is_dir():
            shutil.rmtree(out_dir / name, ignore_errors=True)
        else:
            (out_dir / name).unlink(missing_ok=True)
    return True


def _run(cfg: EvalConfig, datas: list[TaskData], out_dir: Path, on_progress) -> dict:
    """run_eval once the output directory exists."""
    from openrs_cli.evaluate.fingerprint import model_fingerprint

    fingerprint = model_fingerprint(cfg.model, cfg.revision)
    spec = {**{k: getattr(cfg, k) for k in store.RESUME_KEYS}, "max_model_len": cfg.max_model_len,
            "model_fingerprint": fingerprint, "data_sha256": {td.task.name: td.sha256 for td in datas}}
    if cfg.fresh:
        store.discard(out_dir)
    store.check_run_spec(out_dir, spec)
    from openrs_cli.cost.backend import pin_device_order

    pin_device_order()  # before CUDA starts: its GPU indices are NVML's, so the ledger names them (docs/cost.md)
    if cfg.engine == "lighteval":
        from openrs_cli.evaluate.lighteval_engine import run_lighteval

        return run_lighteval(cfg, datas, out_dir)

    gen_path = out_dir / store.GENERATIONS
    existing, _bad = store.read_generations(gen_path)
    done = {(r.get("task"), str(r["id"]), int(r.get("sample", 0) or 0)) for r in existing}
    work = pending_work(datas, cfg.samples_for, done)
    total = sum(len(td.problems) * cfg.samples_for(td.task.name) for td in datas)
    sampling = Sampling(cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.seed)
    t0 = time.time()
    backend_name = pick_backend(cfg.backend) if work else (existing[0].get("backend") if existing else cfg.backend)
    placement = place(backend_name, cfg.data_parallel) if work else None  # computed once, used by both
    monitor = _open_cost(out_dir, cfg.cost, placement.gpu_indices) if work else None
    stats = {"done": total - len(work), "total": total, "correct": 0, "graded": 0, "new": 0}
    context = cfg.max_model_len
    engine_info: dict = {}
    status = "error"
    try:
        if work:
            if on_progress:
                on_progress({**stats, "samples_per_s": 0.0, "accuracy": 0.0, "out_dir": str(out_dir)})
            context, engine_info = _generate_all(cfg, work, sampling, placement, gen_path, monitor, stats, t0,
                                                 on_progress)
        status = "ok"
    except KeyboardInterrupt:
        status = "interrupted"
        raise Interrupted(f"interrupted: {stats['done']} of {total} samples saved in {out_dir}; rerun the same "
                          f"command to continue") from None
    finally:
        if monitor is not None:
            _safe(monitor.close, status)
    records, _ = store.read_generations(gen_path)
    results = results_record(cfg, datas, records, backend=backend_name, fingerprint=fingerprint, context=context,
                             environment=_environment(cfg, out_dir, backend_name, placement, engine_info, datas),
                             wall_time_s=round(time.time() - t0, 3), out_dir=out_dir)
    store.write_json_atomic(out_dir / store.RESULTS, results)
    return results


def results_record(cfg: EvalConfig, datas: list[TaskData], records: list[dict], *, backend: str, fingerprint,
                   context, environment: dict, wall_time_s: float, out_dir: Path) -> dict:
    """results.json from the generation records of `datas` (a one-machine run, or `openrs eval merge`'s shards)."""
    wanted = {(td.task.name, p.id) for td in datas for p in td.problems}
    records = [r for r in records if (r.get("task"), str(r["id"])) in wanted
               and int(r.get("sample", 0)) < cfg.samples_for(str(r.get("task")))]
    tasks = task_results(records, seed=cfg.seed)
    for td in datas:
        if td.task.name in tasks:
            tasks[td.task.name]["data_sha256"] = td.sha256
            tasks[td.task.name]["data_source"] = td.source
            tasks[td.task.name].update(td.coverage())
    return record(
        "results",
        model=cfg.model,
        revision=cfg.revision,
        model_fingerprint=fingerprint,
        label=cfg.label or store.model_name(cfg.model),
        backend=backend,
        engine=cfg.engine,
        sampling={"samples": cfg.samples, "temperature": cfg.temperature, "top_p": cfg.top_p,
                  "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed, "limit": cfg.limit, "data": cfg.data,
                  "max_model_len": context,
                  "samples_per_task": {td.task.name: cfg.samples_for(td.task.name) for td in datas}},
        protocol=cfg.protocol,
        tasks=tasks,
        average=metrics.average(tasks),
        environment=environment,
        versions=_versions(),
        wall_time_s=wall_time_s,
        cost_ledger=_ledger_path(out_dir),
        out_dir=str(out_dir),
        generations=str(out_dir / store.GENERATIONS),
    )


def _environment(cfg, out_dir: Path, backend_name: str, placement, engine_info: dict, datas) -> dict:
    """results.json's `environment`: this run's, or, when it generated nothing (every sample was already saved),
    that of the run that did."""
    if not engine_info and (out_dir / store.RESULTS).is_file():
        try:
            old = store.load_results(out_dir).get("environment")
        except OpenrsError:
            old = None
        if isinstance(old, dict):
            return old
    from openrs_cli.evaluate.environment import environment

    return environment(backend=backend_name, engine=cfg.engine, placement=placement,
                       batch_size=engine_info.get("batch_size"), dtype=engine_info.get("dtype"),
                       tensor_parallel=engine_info.get("tensor_parallel", 1),
                       data_sha256={td.task.name: td.sha256 for td in datas},
                       protocol=cfg.protocol or {"name": None})


def _generate_all(cfg, work, sampling, placement, gen_path, monitor, stats, t0, on_progress):
    """Generate, grade and append every pending unit; returns the context length the backend used and what the
    environment record needs of the engine (dtype, tensor parallel size, batch size)."""
    from openrs_cli.evaluate.tasks import build_messages

    problems = {(td.task.name, p.id): p for td, p, _ in work}
    with _phase(monitor, "setup"):
        be = make_backend(cfg.backend, cfg.model, cfg.revision, sampling, max_model_len=cfg.max_model_len,
                          conversations=[build_messages(p.problem) for p in problems.values()], placement=placement)
    try:
        size = cfg.batch_size or default_batch_size(be.name)
        rendered: dict[tuple[str, str], str] = {}
        with store.GenerationWriter(gen_path) as writer:
            for batch in batches(work, size):
                # Units: consecutive samples of one problem share a prompt (and vLLM's n).
                units: list[tuple] = []
                for td, p, s in batch:
                    if units and units[-1][0] is td and units[-1][1].id == p.id:
                        units[-1][2].append(s)
                    else:
                        units.append((td, p, [s]))
                texts = []
                for td, p, _ in units:
                    key = (td.task.name, p.id)
                    if key not in rendered:
                        rendered[key] = be.render(build_messages(p.problem))
                    texts.append(rendered[key])
                seeds = [[sample_seed(cfg.seed, td.task.name, p.id, s) for s in ss] for td, p, ss in units]
                with _phase(monitor, "generation"):
                    comps = be.generate(texts, [len(ss) for _, _, ss in units], seeds, sampling)
                with _phase(monitor, "eval"):
                    records = _grade_batch(units, comps, texts, seeds, be.name, cfg)
                writer.write_batch(records)
                stats["done"] += len(records)
                stats["new"] += len(records)
                stats["graded"] += len(records)
                stats["correct"] += sum(r["correct"] for r in records)
                if on_progress:
                    el = time.time() - t0
                    on_progress({**stats, "samples_per_s": stats["new"] / el if el > 0 else 0.0,
                                 "accuracy": stats["correct"] / stats["graded"] if stats["graded"] else 0.0})
    finally:
        be.close()
    info = {"dtype": getattr(be, "dtype", None), "tensor_parallel": getattr(be, "tensor_parallel", 1),
            "batch_size": size}
    return getattr(be, "max_model_len", cfg.max_model_len), info


def _phase(monitor, name: str):
    """A cost-ledger phase window (setup / generation / eval), or nothing without a monitor."""
    return monitor.phase(name) if monitor is not None else contextlib.nullcontext()


def _safe(fn, *args):
    try:
        return fn(*args)
    except Exception:
        return None


def _grade_batch(units, comps, texts, seeds, backend, cfg) -> list[dict]:
    """Grade one batch per task and build its generation records."""
    flat = [(td, p, s, c, text, seed) for (td, p, ss), cs, text, group in zip(units, comps, texts, seeds, strict=True)
            for s, c, seed in zip(ss, cs, group, strict=True)]
    by_task: dict[str, list[int]] = {}
    for i, (td, *_rest) in enumerate(flat):
        by_task.setdefault(td.task.name, []).append(i)
    verdicts = [None] * len(flat)
    for idx in by_task.values():
        spec = flat[idx[0]][0].task
        res = grade_pairs(spec, [(flat[i][3].text, flat[i][1].gold) for i in idx])
        for i, g in zip(idx, res, strict=True):
            verdicts[i] = g
    out = []
    for (td, p, s, c, text, seed), g in zip(flat, verdicts, strict=True):
        out.append(record(
            "generation",
            task=td.task.name, task_version=td.task.version, id=p.id, sample=s,
            prompt=text, completion=c.text, pred=g.pred, gold=p.gold, verdict=g.verdict.value,
            correct=g.correct, n_tokens=c.n_tokens, finish_reason=c.finish_reason, seed=seed,
            model=cfg.model, revision=cfg.revision, backend=backend,
        ))
    return out
