"""`openrs train RECIPE [key=value ...]`: parse options, call openrs_cli.train.api.train, show progress."""

from __future__ import annotations

import typer

from openrs_cli.commands._console import JsonOpt, console, err_console, escape, print_json

HELP = ("Train a recipe with GRPO (TRL) through accelerate: openrs train exp3 optim.max_steps=100 ... "
        "Plan first with --dry-run (--gpus N plans for another machine).")


def _print_plan(result, recipe_yaml: str, console=console) -> None:
    plan = result.plan
    p = plan.placement
    console.rule(f"recipe {plan.recipe_name} (resolved)")
    console.print(escape(recipe_yaml), highlight=False, soft_wrap=True)
    console.rule("placement")
    console.print(f"mode: {p.mode}; GPUs: {p.gpus}; machines: {p.num_machines}; training processes: "
                  f"{p.num_processes} ({p.processes_per_machine} per machine) on GPUs {list(p.train_gpus) or '-'}; "
                  f"vLLM server GPUs: {list(p.vllm_gpus) or '-'}", highlight=False)
    for note in p.notes + plan.notes:
        console.print(f"note: {escape(note)}", highlight=False)
    if plan.disk:
        from openrs_cli.train.disk import describe

        console.print(f"disk: {escape(describe(plan.disk))}", highlight=False)
    console.rule("commands")
    for c in plan.commands:
        console.print(escape(f"[{c.role}] {c.shell()}"), highlight=False, soft_wrap=True)
    console.rule("GRPOConfig (exact keyword arguments)")
    for k in sorted(plan.grpo):
        console.print(f"{k} = {plan.grpo[k]!r}", highlight=False, soft_wrap=True)
    console.print(f"run directory: {plan.run_dir}" + (f" (resume from {result.resumed_from})"
                                                      if result.resumed_from else ""), highlight=False)


def _fmt(v, spec=".3g"):
    return "-" if v is None else format(v, spec)


def _line(rec: dict) -> str:
    eta = rec.get("eta_s")
    return (f"step {rec.get('step')}/{rec.get('max_steps', '?')}  reward {_fmt(rec.get('reward_mean'))}"
            f" ± {_fmt(rec.get('reward_std'))}  len {_fmt(rec.get('completion_length_mean'))}"
            f"  kl {_fmt(rec.get('kl'))}  step {_fmt(rec.get('step_time_s'))}s"
            f" (gen {_fmt(rec.get('generation_time_s'))}s)  eta {'-' if eta is None else f'{eta:.0f}s'}")


class _View:
    """Rich live view on a terminal; plain lines otherwise."""

    def __init__(self):
        self.live = None
        self.last = "starting…"
        if console.is_terminal:
            from rich.live import Live

            self.live = Live(self.last, console=console, refresh_per_second=4, transient=False)
            self.live.start()

    def __call__(self, kind: str, data: dict) -> None:
        if kind == "metrics":
            self.last = _line(data)
            if self.live:
                self.live.update(self.last)
            else:
                console.print(self.last, highlight=False)
        elif kind == "started":
            msg = f"started {data['role']} (log: {data['log']})"
            console.print(msg, highlight=False) if not self.live else self.live.console.print(msg, highlight=False)
        elif kind == "resume":
            console.print(f"resuming from {data['checkpoint'] or 'step 0 (no complete checkpoint)'}", highlight=False)
        elif kind == "error":
            err_console.print(f"[red]{escape(data['message'])}[/]")

    def stop(self) -> None:
        if self.live:
            self.live.stop()


def train(
    recipe: str = typer.Argument(..., help="Shipped recipe (exp1, exp2, exp3, qwen3-1.7b, tiny) or a YAML path"),
    overrides: list[str] | None = typer.Argument(None, help="key.sub=value overrides, e.g. optim.max_steps=50"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print recipe, placement, commands, GRPOConfig; start nothing"),
    resume: bool = typer.Option(False, "--resume", help="Continue the run directory from its newest complete checkpoint"),
    run_dir: str | None = typer.Option(None, "--run-dir", help="Run directory (default runs/<recipe name>)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run directory"),
    gpus: int | None = typer.Option(None, "--gpus", min=0, help="Plan for N GPUs per machine (another machine)"),
    num_machines: int = typer.Option(1, "--num-machines", min=1, help="accelerate --num_machines"),
    machine_rank: int = typer.Option(0, "--machine-rank", min=0, help="accelerate --machine_rank"),
    main_process_ip: str | None = typer.Option(None, "--main-process-ip", help="accelerate --main_process_ip"),
    main_process_port: int | None = typer.Option(None, "--main-process-port", help="accelerate --main_process_port"),
    no_cost: bool = typer.Option(False, "--no-cost", help="Do not record the cost ledger"),
    as_json: JsonOpt = False,
    vllm_server: str | None = typer.Option(None, "--vllm-server", help="HOST:PORT:GROUP_PORT of a vLLM server "
                                           "another node runs (the Slurm script sets it); start none here"),
    slurm: bool = typer.Option(False, "--slurm", help="Write <run_dir>/train.sbatch (a multi-node Slurm job) and "
                               "print it; with --dry-run print it only"),
    nodes: int = typer.Option(1, "--nodes", min=1, help="--slurm: nodes in the job, the vLLM server's included"),
    gpus_per_node: int | None = typer.Option(None, "--gpus-per-node", min=0, help="--slurm: GPUs per node "
                                             "(default: the recipe's training ranks + vLLM GPUs)"),
    partition: str | None = typer.Option(None, "--partition", help="--slurm: #SBATCH --partition"),
    time_limit: str | None = typer.Option(None, "--time", help="--slurm: #SBATCH --time, e.g. 1-00:00:00"),
    account: str | None = typer.Option(None, "--account", help="--slurm: #SBATCH --account"),
    sbatch_arg: list[str] | None = typer.Option(None, "--sbatch-arg", help="--slurm: one more #SBATCH line "
                                                "(repeatable), e.g. --sbatch-arg=--qos=high"),
    submit: bool = typer.Option(False, "--submit", help="--slurm: also run sbatch and print the job id"),
) -> None:
    from openrs_cli.recipes import recipe_to_yaml
    from openrs_cli.train.api import train as run_train
    from openrs_cli.train.launch import MultiNode

    if slurm:
        from openrs_cli.train.slurm import SlurmShape, slurm_job

        shape = SlurmShape(nodes, gpus_per_node, partition, time_limit, account, tuple(sbatch_arg or ()))
        job = slurm_job(recipe, overrides, shape=shape, run_dir=run_dir, resume=resume, overwrite=overwrite,
                        dry_run=dry_run, cost=not no_cost, submit_job=submit,
                        command_line=" ".join(["openrs train", recipe, *(overrides or []), "--slurm"]))
        if dry_run:  # the plan on stderr, the script alone on stdout: openrs train ... --slurm --dry-run > job.sbatch
            from openrs_cli.recipes import load_recipe

            src = job.result.plan.recipe_path if resume else recipe
            given = list(overrides or []) + list(job.layout.overrides)
            _print_plan(job.result, recipe_to_yaml(load_recipe(src, given)), console=err_console)
        out = err_console if dry_run else console
        for note in job.layout.notes:
            out.print(f"slurm: {escape(note)}", highlight=False, soft_wrap=True)
        typer.echo(job.script, nl=False)
        if dry_run:
            return
        console.print(f"wrote {escape(str(job.path))}" + (f"; submitted job {job.job_id}" if job.job_id
                      else f"; submit it with: sbatch {escape(str(job.path))}"), highlight=False, soft_wrap=True)
        return
    from openrs_cli.train.slurm import parse_vllm_server

    mn = MultiNode(num_machines, machine_rank, main_process_ip, main_process_port,
                   parse_vllm_server(vllm_server) if vllm_server else None)
    if dry_run:
        result = run_train(recipe, overrides, run_dir=run_dir, resume=resume, dry_run=True, gpus=gpus,
                           multinode=mn, cost=not no_cost)
        if as_json:
            print_json(result.plan.to_dict())
        else:
            from openrs_cli.recipes import load_recipe

            _print_plan(result, recipe_to_yaml(load_recipe(result.plan.recipe_path if resume else recipe, overrides)))
        return
    view = _View()
    try:
        result = run_train(recipe, overrides, run_dir=run_dir, resume=resume, overwrite=overwrite, gpus=gpus,
                           multinode=mn, cost=not no_cost, on_event=view)
    finally:
        view.stop()
    for note in result.notes:
        console.print(f"note: {escape(note)}", highlight=False)
    if result.returncode != 0:
        tail = result.log_path.read_text(errors="replace").splitlines()[-25:] if result.log_path.exists() else []
        for line in tail:
            err_console.print(escape(line), highlight=False)
        err_console.print(f"[bold red]error:[/] training exited with code {result.returncode}; full log: "
                          f"{escape(str(result.log_path))}; continue with --resume", highlight=False)
        raise typer.Exit(1)
    console.print(f"done: {result.run_dir / 'final'} (metrics: {result.run_dir / 'metrics.jsonl'})", highlight=False)
