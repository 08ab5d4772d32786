"""`openrs eval`: evaluate a model on the paper's math tasks; `eval score` re-grades; `eval compare` diffs two runs."""

from __future__ import annotations

from pathlib import Path

import typer

from openrs_cli.commands._console import JsonOpt, console, err_console, escape, print_json
from openrs_cli.commands._progress import Progress as _progress

app = typer.Typer(
    help="Evaluate a model on AIME24, AMC23, MATH-500, Minerva and OlympiadBench the way the paper did "
    "(lighteval extractive match, temperature 0.6, top_p 0.95); re-grade saved completions; compare two runs.",
    invoke_without_command=True,
    no_args_is_help=False,
)

TASKS_HELP = "Comma-separated tasks: aime24, amc23, math_500, minerva, olympiadbench, or 'all'."


@app.callback()
def main(
    ctx: typer.Context,
    model: str = typer.Option(None, "--model", "-m", help="Model dir, hub id, .gguf file, or openrs-tiny "
                              "(default: the newest runs/<name>/final)."),
    tasks: str = typer.Option("aime24,amc23,math_500,minerva,olympiadbench", "--tasks", "-t", help=TASKS_HELP),
    protocol: str = typer.Option(None, "--protocol", help="A named protocol: paper (the default), sober, open-r1 "
                                 "(`openrs eval protocols` lists their values); flags given override it."),
    samples: int = typer.Option(None, "--samples", "-k", help="Samples per problem, for every task (the paper: 1). "
                                "Use 16+ for aime24/amc23: with 30-40 problems one sample has a stderr of about "
                                "8 points."),
    limit: int = typer.Option(None, "--limit", help="Only the first N problems of each task."),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", help="Generation budget per sample (the paper: "
                                       "32768)."),
    temperature: float = typer.Option(None, "--temperature", help="0 = greedy (the paper: 0.6)."),
    top_p: float = typer.Option(None, "--top-p", help="(the paper: 0.95)"),
    seed: int = typer.Option(1234, "--seed"),
    backend: str = typer.Option("auto", "--backend", help="auto (vLLM with a GPU, else transformers), "
                                "transformers, vllm."),
    batch_size: int = typer.Option(None, "--batch-size", help="Sequences per generation batch (and per "
                                   "resume checkpoint)."),
    data: str = typer.Option("bundled", "--data", help="bundled (sha256-checked copies), hub (the paper's "
                             "datasets), or a JSONL file / dir of <task>.jsonl."),
    out: Path = typer.Option(None, "--out", "-o",
                             help="Output dir (default: evals/<model>@<revision>/<task+task>)."),
    revision: str = typer.Option(None, "--revision", help="Model revision (hub models)."),
    label: str = typer.Option(None, "--label", help="Name shown in reports."),
    engine: str = typer.Option("openrs", "--engine", help="openrs, or lighteval (optional extra, own env)."),
    data_parallel: int = typer.Option(None, "--data-parallel", help="vLLM engines (one per GPU; default all; "
                                      "on a CPU machine they share the cores; default 1)."),
    max_model_len: int = typer.Option(None, "--max-model-len", help="Context length (prompt + completion); "
                                      "default: the smaller of the model's context and the longest prompt + "
                                      "--max-new-tokens. Completions are capped to it."),
    fresh: bool = typer.Option(False, "--fresh", help="Discard the output dir's samples (e.g. made with other "
                               "weights of the model) and start over."),
    no_cost: bool = typer.Option(False, "--no-cost", help="Do not record a cost ledger."),
    shard: str = typer.Option(None, "--shard", help="i/N: only every N-th problem from the i-th (what a Slurm "
                              "array task runs)."),
    slurm: bool = typer.Option(False, "--slurm", help="Write a Slurm job array (one task per benchmark x shard) "
                               "and its merge job into the output dir, and print the array script."),
    shards: int = typer.Option(1, "--shards", help="--slurm: shards of each benchmark's problems."),
    gpus_per_task: int = typer.Option(0, "--gpus-per-task", help="--slurm: GPUs per array task (#SBATCH --gres)."),
    partition: str = typer.Option(None, "--partition", help="--slurm: #SBATCH --partition"),
    time_limit: str = typer.Option(None, "--time", help="--slurm: #SBATCH --time, e.g. 04:00:00"),
    account: str = typer.Option(None, "--account", help="--slurm: #SBATCH --account"),
    sbatch_arg: list[str] = typer.Option(None, "--sbatch-arg", help="--slurm: one more #SBATCH line (repeatable)"),
    submit: bool = typer.Option(False, "--submit", help="--slurm: also sbatch the array and the merge job."),
    dry_run: bool = typer.Option(False, "--dry-run", help="--slurm: print the scripts only; write nothing."),
    as_json: JsonOpt = False,
) -> None:
    """Run `openrs eval --model M --tasks aime24,amc23`; reruns of the same command resume."""
    if ctx.invoked_subcommand is not None:
        return
    if not model:
        from openrs_cli.evaluate.fingerprint import newest_run_model

        final, others = newest_run_model()
        model = str(final)
        err_console.print(f"no --model: evaluating {escape(model)}, the newest finished run under ./runs"
                          + (f" ({others} older; --model picks another)" if others else ""), highlight=False,
                          soft_wrap=True)
    from openrs_cli.evaluate.protocols import resolve
    from openrs_cli.evaluate.runner import EvalConfig, run_eval
    from openrs_cli.evaluate.tasks import parse_tasks

    p = resolve(protocol, [t.name for t in parse_tasks(tasks)], temperature=temperature, top_p=top_p,
                max_new_tokens=max_new_tokens, samples=samples)
    cfg = EvalConfig(model=model, tasks=tasks, revision=revision, label=label, samples=p.samples, limit=limit,
                     max_new_tokens=p.max_new_tokens, temperature=p.temperature, top_p=p.top_p, seed=seed,
                     backend=backend, batch_size=batch_size, data=data, out_dir=str(out) if out else None,
                     cost=not no_cost, engine=engine, data_parallel=data_parallel,
                     max_model_len=max_model_len, fresh=fresh, samples_per_task=p.samples_per_task,
                     protocol=p.record(), shard=shard)
    if slurm or submit or dry_run:
        if not slurm:
            raise typer.BadParameter("--submit and --dry-run go with --slurm", param_hint="--slurm")
        given = {"--model": model, "--revision": revision, "--label": label, "--protocol": protocol,
                 "--samples": samples, "--limit": limit, "--max-new-tokens": max_new_tokens,
                 "--temperature": temperature, "--top-p": top_p, "--seed": seed, "--backend": backend,
                 "--batch-size": batch_size, "--data": data, "--data-parallel": data_parallel,
                 "--max-model-len": max_model_len}
        argv = ["eval", *[x for k, v in given.items() if v is not None for x in (k, str(v))]]
        argv += ["--no-cost"] if no_cost else []
        _slurm(cfg, argv, shards=shards, gpus=gpus_per_task, partition=partition, time=time_limit,
               account=account, sbatch_args=tuple(sbatch_arg or ()), dry_run=dry_run, submit=submit)
        return
    from openrs_cli.errors import Interrupted

    try:
        with _progress("generating") as update:
            res = run_eval(cfg, on_progress=update)
    except KeyboardInterrupt:  # before generation started (run_eval turns a later one into Interrupted)
        raise Interrupted("interrupted before any sample was generated; rerun the same command to start") from None
    if as_json:
        print_json(res)
        return
    _print_table(res["tasks"], res["average"], title=f"{res['label']} ({res['backend']})")
    console.print(f"wrote {escape(res['out_dir'])}/results.json and generations.jsonl "
                  f"({res['wall_time_s']:.1f} s)", highlight=False)


def _slurm(cfg, argv: list[str], *, dry_run: bool, submit: bool, **kw) -> None:
    import shlex
    import sys

    from openrs_cli.evaluate.slurm import eval_job

    job = eval_job(cfg, argv, dry_run=dry_run, submit_job=submit,
                   command_line=" ".join(shlex.quote(a) for a in ["openrs", *sys.argv[1:]]), **kw)
    if dry_run:
        typer.echo(job.array, nl=False)
        err_console.print(f"(dry run: nothing written; the merge job runs `openrs eval merge {escape(str(job.out_dir))}`"
                          f" after the array)", highlight=False, soft_wrap=True)
        return
    console.print(escape(job.array), highlight=False, soft_wrap=True, end="")
    console.print(f"wrote {escape(str(job.array_path))} and {escape(str(job.merge_path))}"
                  + (f"; submitted array job {job.array_id} and merge job {job.merge_id} (after it)" if job.array_id
                     else f"; submit with: sbatch {escape(str(job.array_path))}, then sbatch "
                          f"--dependency=afterok:<array job id> {escape(str(job.merge_path))}"),
                  highlight=False, soft_wrap=True)


@app.command("merge")
def merge_cmd(out_dir: Path = typer.Argument(..., help="The output dir of an `openrs eval --slurm` run."),
              as_json: JsonOpt = False) -> None:
    """Gather a Slurm eval's shards into results.json and generations.jsonl, as one machine writes them."""
    from openrs_cli.evaluate.slurm import merge

    res = merge(out_dir)
    if as_json:
        print_json(res)
        return
    _print_table(res["tasks"], res["average"], title=f"{res['label']} ({res['backend']}, {len(res['merged_from'])} "
                 f"shards)")
    console.print(f"wrote {escape(str(out_dir))}/results.json and generations.jsonl", highlight=False)


@app.command("protocols")
def protocols_cmd(as_json: JsonOpt = False) -> None:
    """The named protocols `--protocol` takes: sampling settings, samples per task, and where each comes from."""
    from rich.table import Table

    from openrs_cli.evaluate.protocols import protocols

    known = protocols()
    if as_json:
        print_json({name: p.to_json() for name, p in known.items()})
        return
    t = Table(title="openrs eval --protocol NAME (flags given override a protocol's values)")
    for col in ("protocol", "temperature", "top_p", "max_new_tokens", "samples per problem", "source"):
        t.add_column(col, overflow="fold")
    for name, p in known.items():
        per = ", ".join(f"{k} {v}" for k, v in p.samples.items() if k != "default")
        per = (per + ", others " if per else "all ") + str(p.samples_for("default"))
        t.add_row(name, f"{p.temperature:g}", f"{p.top_p:g}", str(p.max_new_tokens), per, escape(p.source))
    console.print(t)


@app.command("select")
def select_cmd(
    run: Path = typer.Argument(..., help="A run directory from `openrs train` (its checkpoints and final/)."),
    samples: int = typer.Option(4, "--samples", "-k", help="Samples per validation problem."),
    limit: int = typer.Option(None, "--limit", help="Only the first N validation problems."),
    max_new_tokens: int = typer.Option(4096, "--max-new-tokens", help="Generation budget per sample."),
    temperature: float = typer.Option(0.6, "--temperature"),
    top_p: float = typer.Option(0.95, "--top-p"),
    seed: int = typer.Option(1234, "--seed"),
    backend: str = typer.Option("auto", "--backend", help="auto, transformers, vllm."),
    batch_size: int = typer.Option(None, "--batch-size"),
    no_cost: bool = typer.Option(False, "--no-cost", help="Do not record cost ledgers."),
    as_json: JsonOpt = False,
) -> None:
    """Choose a run's checkpoint on the validation split (carved from the training data, decontaminated against
    the five test sets), never on a test set; writes RUN/select/selection.json."""
    from openrs_cli.evaluate.select import RULE, select

    with _progress("validating") as update:
        sel = select(run, samples=samples, limit=limit, max_new_tokens=max_new_tokens, temperature=temperature,
                     top_p=top_p, seed=seed, backend=backend, batch_size=batch_size, cost=not no_cost,
                     on_progress=update)
    if as_json:
        print_json(sel)
        return
    from rich.table import Table

    t = Table(title=f"{escape(str(run))}: checkpoints on the validation split")
    for col in ("checkpoint", "step", "problems", "k", "pass@1", "95% CI"):
        t.add_column(col, justify="left" if col == "checkpoint" else "right")
    for c in sel["candidates"]:
        ci = c.get("ci95")
        mark = " (chosen)" if c["checkpoint"] == sel["chosen"]["checkpoint"] else ""
        t.add_row(escape(c["checkpoint"]) + mark, str(c["step"] if c["step"] is not None else "-"),
                  str(c["n_problems"]), str(c["samples"]), _pct(c["pass@1"]),
                  f"[{_pct(ci[0])}, {_pct(ci[1])}]" if ci else "-")
    console.print(t)
    console.print(f"rule: {RULE}", highlight=False, soft_wrap=True)
    console.print(f"chosen: {escape(sel['chosen']['model'])}; evaluate it on the test sets with `openrs eval "
                  f"--model {escape(sel['chosen']['model'])}` (wrote {escape(str(Path(run) / 'select'))}/"
                  f"selection.json)", highlight=False, soft_wrap=True)


@app.command("score")
def score(
    file: Path = typer.Argument(..., help="generations.jsonl, or any JSONL of {id, completion, sample?}."),
    task: str = typer.Option(None, "--task", help="Force the task (default: from each record or its id)."),
    data: str = typer.Option("bundled", "--data", help="Where gold answers come from (as for eval)."),
    as_json: JsonOpt = False,
) -> None:
    """Re-grade saved completions with the paper's grader, without any model."""
    from openrs_cli.evaluate.scoring import score_file

    with _progress("grading", quiet=as_json) as update:
        res = score_file(file, task=task, data=data,
                         on_progress=lambda d, t: update({"done": d, "total": t}))
    res.pop("graded")
    if as_json:
        print_json(res)
        return
    _print_table(res["tasks"], res["average"], title=str(file))


@app.command("compare")
def compare(
    a: Path = typer.Argument(..., help="results.json (or its dir) of run A."),
    b: Path = typer.Argument(..., help="results.json (or its dir) of run B."),
    as_json: JsonOpt = False,
) -> None:
    """Paired bootstrap over the problems both runs share: A - B per task with its 95% CI."""
    from openrs_cli.evaluate.scoring import compare_results
    from openrs_cli.evaluate.store import load_results

    ra, rb = load_results(a), load_results(b)
    res = compare_results(ra, rb)
    if as_json:
        print_json(res)
        return
    from rich.table import Table

    t = Table(title=f"A = {escape(str(ra.get('label')))}   B = {escape(str(rb.get('label')))}   (pass@1, %)")
    for col in ("task", "n", "A", "B", "A-B", "95% CI", "verdict"):
        t.add_column(col, justify="left" if col in ("task", "verdict") else "right", no_wrap=True)
    for name, r in res.items():
        verdict = "inside noise" if r["inside_noise"] else ("A better" if r["diff"] > 0 else "B better")
        t.add_row(name, str(r["n"]), _pct(r["a"]), _pct(r["b"]), f"{100 * r['diff']:+.1f}",
                  f"[{100 * r['ci95'][0]:+.1f}, {100 * r['ci95'][1]:+.1f}]", verdict)
    console.print(t)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _print_table(tasks: dict, average: dict, title: str) -> None:
    from rich.table import Table

    t = Table(title=escape(title))
    for col in ("task", "problems", "k", "pass@1", "95% CI", "stderr", "maj@k", "pass@k"):
        t.add_column(col, justify="left" if col in ("task", "pass@k") else "right", no_wrap=col != "pass@k")
    for name, r in tasks.items():
        ci = r.get("ci95")
        pk = " ".join(f"@{k}:{100 * v:.1f}" for k, v in r["pass@k"].items() if k != "1")
        t.add_row(name, str(r.get("coverage") or r["n_problems"]) if r.get("complete") is False else str(r["n_problems"]),
                  str(r["samples"]), _pct(r["pass@1"]),
                  f"[{_pct(ci[0])}, {_pct(ci[1])}]" if ci else "-", _pct(r.get("stderr")), _pct(r.get("maj@k")),
                  pk or "-")
    t.add_row("average", "", "", _pct(average.get("pass@1")), "", "", "", "", style="bold")
    console.print(t)
    if average.get("left_out"):
        console.print(f"partial (not averaged): {', '.join(average['left_out'])}; a whole-benchmark score needs every "
                      f"problem (no --limit, the bundled data)")
