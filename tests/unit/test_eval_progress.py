"""`openrs eval` progress when stderr is a file or a pipe: plain one-line records at the end and at least
every 30 s (a heartbeat while a batch runs long), driven by a fake clock."""

from openrs_cli.commands.evaluate import _progress


def test_plain_progress_lines_every_interval(capsys):
    now = [0.0]
    prog = _progress("generating", clock=lambda: now[0], heartbeat=False)  # pytest's stderr is not a terminal
    with prog as update:
        ev = {"done": 0, "total": 120, "correct": 0, "graded": 0, "new": 0, "accuracy": 0.0}
        update(ev)  # the start prints nothing (a start that fails stays one error line)
        now[0] = 10.0
        update({**ev, "done": 10, "accuracy": 0.5})  # within 30 s of the last line: no line
        now[0] = 40.0
        update({**ev, "done": 40, "accuracy": 0.25})
        now[0] = 65.0
        prog.tick()  # one long batch: nothing new for 25 s since the last line, no line yet
        now[0] = 70.0
        prog.tick()  # 30 s: the heartbeat repeats the last state
        now[0] = 120.0
        update({**ev, "done": 120, "accuracy": 0.3})  # the end always prints
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "generating 40/120  1.00 samples/s  eta 1m20s  acc 25.0%",
        "generating 40/120  0.57 samples/s  eta 2m20s  acc 25.0%",
        "generating 120/120  1.00 samples/s  eta 0s  acc 30.0%",
    ]


def test_plain_progress_resumed_and_quiet(capsys):
    with _progress("generating", clock=lambda: 0.0, heartbeat=False) as update:
        update({"done": 5, "total": 9, "out_dir": "evals/x", "accuracy": 0.0})
    assert capsys.readouterr().err.splitlines()[0] == "resuming: 5 of 9 samples already done in evals/x"
    with _progress("grading", quiet=True, clock=lambda: 0.0, heartbeat=False) as update:
        update({"done": 1, "total": 2})
    assert capsys.readouterr().err == ""


def test_data_build_stages_print_plain_lines_too(capsys):
    """openrs data build showed bars only on a terminal, and nothing at all in a log; it now uses eval's progress:
    a stage that runs 30 s or more prints a line every 30 s and at its end; a shorter one prints nothing, so a
    build that fails after quick stages stays one error line."""
    from openrs_cli.commands._progress import Progress

    now = [0.0]
    prog = Progress("data build", unit="items", clock=lambda: now[0], heartbeat=False)
    with prog:
        prog.stage("open-s1: dedup", 0, 100)
        now[0] = 10.0
        prog.stage("open-s1: dedup", 100, 100)
        prog.stage("solvable: generate", 0, 8)
        now[0] = 50.0
        prog.stage("solvable: generate", 4, 8)
        now[0] = 60.0
        prog.stage("solvable: generate", 8, 8)
    assert capsys.readouterr().err.splitlines() == [
        "solvable: generate 4/8  0.10 items/s  eta 40s",
        "solvable: generate 8/8  0.16 items/s  eta 0s",
    ]
