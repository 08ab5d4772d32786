"""`openrs eval --engine lighteval`: run the same five tasks through lighteval's Python API (optional extra).

lighteval lives in its own environment (it pins math-verify 0.5.2); nothing here is imported unless this
engine is chosen. Offline, lighteval's registry imports every built-in task module at start and two of them
fail (one downloads a file, one breaks on huggingface_hub 2.x), so `patch_registry` makes it load only the
custom tasks module. The paper's single-sample metric is reported (`--samples` must be 1); lighteval's own
results and details land in `<out>/lighteval/`, its scores in results.json with `engine: lighteval`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from openrs_cli.errors import OpenrsError
from openrs_cli.evaluate import store
from openrs_cli.schema import record


def patch_registry() -> None:
    """Make lighteval's Registry load only the custom tasks module (no built-ins, no network at import)."""
    from lighteval.tasks.registry import Registry

    def load_only_custom(custom_tasks=None, load_multilingual=False):
        return Registry._extract_configs(Registry.create_custom_tasks_module(custom_tasks)) if custom_tasks else {}

    Registry.load_all_task_configs = staticmethod(load_only_custom)


def model_config(cfg, backend: str):
    """lighteval model config for the chosen backend, with the paper's generation parameters."""
    from lighteval.models.model_input import GenerationParameters

    from openrs_cli.evaluate.generation import cuda_count, model_source

    gp = GenerationParameters(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                              seed=cfg.seed)
    src, gguf = model_source(cfg.model)
    if gguf:
        raise OpenrsError("--engine lighteval cannot load GGUF files; use the openrs engine or a model dir")
    if backend == "vllm":
        from lighteval.models.vllm.vllm_model import VLLMModelConfig

        return VLLMModelConfig(model_name=src, revision=cfg.revision or "main", dtype="bfloat16", seed=cfg.seed,
                               max_model_length=32768, gpu_memory_utilization=0.8,
                               data_parallel_size=cfg.data_parallel or max(1, cuda_count()), generation_parameters=gp)
    from lighteval.models.transformers.transformers_model import TransformersModelConfig

    gpu = cuda_count() > 0
    return TransformersModelConfig(model_name=src, revision=cfg.revision or "main", device="cuda" if gpu else "cpu",
                                   dtype="bfloat16" if gpu else "float32", batch_size=cfg.batch_size or 8,
                                   generation_parameters=gp)


def check_settings(cfg) -> None:
    """The lighteval engine's own requirements, checked before the output dir is touched."""
    try:
        import lighteval  # noqa: F401
    except ImportError:
        raise OpenrsError("--engine lighteval: lighteval is not installed; install it in its own environment "
                          "(pip install 'openrs[lighteval]', see docs/eval.md) or use --engine openrs") from None
    if cfg.samples != 1 or any(n != 1 for n in (cfg.samples_per_task or {}).values()):
        raise OpenrsError("--engine lighteval reports the paper's single-sample metric; use --samples 1, or the "
                          "openrs engine for k samples")
    if cfg.data not in ("bundled", "hub"):
        raise OpenrsError("--engine lighteval reads --data bundled or hub only")


def run_lighteval(cfg, datas, out_dir: Path) -> dict:
    check_settings(cfg)
    from openrs_cli.evaluate.generation import pick_backend

    backend = pick_backend(cfg.backend)
    os.environ["OPENRS_LIGHTEVAL_DATA"] = cfg.data
    patch_registry()
    from lighteval.logging.evaluation_tracker import EvaluationTracker
    from lighteval.pipeline import ParallelismManager, Pipeline, PipelineParameters

    from openrs_cli.evaluate import lighteval_tasks

    t0 = time.time()
    tracker = EvaluationTracker(output_dir=str(out_dir / "lighteval"), save_details=True)
    params = PipelineParameters(
        launcher_type=ParallelismManager.VLLM if backend == "vllm" else ParallelismManager.ACCELERATE,
        custom_tasks_directory=lighteval_tasks.__file__, max_samples=cfg.limit,
        # the paper's lighteval did not strip <think> blocks before grading
        remove_reasoning_tags=False,
    )
    pipe = Pipeline(tasks=",".join(f"{td.task.name}|0" for td in datas), pipeline_parameters=params,
                    evaluation_tracker=tracker, model_config=model_config(cfg, backend))
    pipe.evaluate()
    pipe.save_and_push_results()
    raw = pipe.get_results()["results"]
    tasks = {}
    for td in datas:
        r = next((v for k, v in raw.items() if k.split("|")[0].split(":")[0] == td.task.name), None)
        if r is None:
            continue
        tasks[td.task.name] = {"n_problems": len(td.problems), "samples": 1, "pass@1": r.get("extractive_match"),
                               "pass@k": {"1": r.get("extractive_match")}, "maj@k": None, "ci95": None,
                               "stderr": r.get("extractive_match_stderr"), "task_version": td.task.version,
                               "data_sha256": td.sha256, "data_source": td.source, **td.coverage()}
    from openrs_cli.evaluate import metrics

    results = record("results", model=cfg.model, revision=cfg.revision,
                     label=cfg.label or store.model_name(cfg.model), backend=backend, engine="lighteval",
                     sampling={"samples": 1, "temperature": cfg.temperature, "top_p": cfg.top_p,
                               "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed, "limit": cfg.limit,
                               "data": cfg.data},
                     tasks=tasks, average=metrics.average(tasks), wall_time_s=round(time.time() - t0, 3),
                     cost_ledger=None, out_dir=str(out_dir), lighteval_raw=raw)
    store.write_json_atomic(out_dir / store.RESULTS, results)
    return results
