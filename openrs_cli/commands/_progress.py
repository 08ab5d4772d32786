"""The one progress display of the command modules (eval, eval score, data build): a Rich bar on a terminal,
plain one-line records in a log."""

from __future__ import annotations

import sys

from openrs_cli.commands._console import err_console, escape


class Progress:
    """Rich progress on a terminal (done / total, rate, running accuracy when given). When stderr is a file or a
    pipe (nohup, a batch job): a plain one-line record at the end and at least every `interval_s` from the start
    (a heartbeat thread repeats the last state while one step runs long), with done/total, rate, ETA, accuracy.

    `update(ev)` takes {"done", "total", ...}; `stage(label, done, total)` is the same for work done in named
    stages (openrs data build): each stage has its own lines (rate, ETA), printed as `update`'s are."""

    def __init__(self, what: str, quiet: bool = False, *, interval_s: float = 30.0, clock=None,
                 heartbeat: bool = True, unit: str = "samples"):
        import time

        self.what, self.unit, self.quiet, self.rich = what, unit, quiet, (not quiet) and sys.stderr.isatty()
        self.interval_s, self.clock, self.heartbeat = interval_s, clock or time.monotonic, heartbeat
        self.p = self.task = self.ev = self.start = self._stop = None
        self.printed_at = None
        self._stages = False  # stage mode: a stage shorter than interval_s prints nothing (a log of a failed
        self._stage_lines = 0  # build stays its one error line); a longer one prints every interval_s and its end

    def __enter__(self):
        self._update = self._enter()
        return self._update

    def _enter(self):
        if self.quiet:
            return self._resumed
        if not self.rich:
            if self.heartbeat:
                import threading

                self._stop = threading.Event()
                threading.Thread(target=self._beat, daemon=True, name="openrs-progress").start()
            return self._plain
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=Console(stderr=True),
                          transient=True)
        self.p.start()
        self.task = self.p.add_task(escape(self.what), total=None, info="")

        def update(ev: dict) -> None:
            self._resumed(ev)
            info = ""
            if "samples_per_s" in ev:
                info = f"{ev['samples_per_s']:.2f} {self.unit}/s  acc {100 * ev['accuracy']:.1f}%"
            self.p.update(self.task, completed=ev.get("done", 0), total=ev.get("total"), info=info)

        return update

    def _plain(self, ev: dict) -> None:
        self._resumed(ev)
        now = self.clock()
        if self.start is None:  # no line yet: a start that fails stays one error line
            self.start, self.printed_at = (now, ev.get("done", 0)), now
        self.ev = ev
        end = ev.get("done") == ev.get("total") and (not self._stages or self._stage_lines > 0)
        if end or now - self.printed_at >= self.interval_s:
            self._print_line(now)

    def tick(self) -> None:
        """The heartbeat: repeat the last state when no line was printed for `interval_s`."""
        now = self.clock()
        if self.ev is not None and now - self.printed_at >= self.interval_s:
            self._print_line(now)

    def _beat(self) -> None:
        while not self._stop.wait(min(5.0, self.interval_s)):
            self.tick()

    def _print_line(self, now: float) -> None:
        ev, (t0, d0) = self.ev, self.start
        done, total = ev.get("done", 0), ev.get("total")
        rate = (done - d0) / (now - t0) if now > t0 else 0.0
        left = (total - done) / rate if rate > 0 and total else None
        line = f"{self.what} {done}/{total if total is not None else '?'}  {rate:.2f} {self.unit}/s  eta " + \
            ("-" if left is None else _duration(left))
        if "accuracy" in ev:
            line += f"  acc {100 * ev['accuracy']:.1f}%"
        err_console.print(line, highlight=False, soft_wrap=True, markup=False)
        self.printed_at = now
        self._stage_lines += 1

    def _resumed(self, ev: dict) -> None:
        if ev.get("out_dir") and ev.get("done"):  # the first event of a resumed eval
            out = self.p.console if self.p is not None else err_console
            out.print(f"resuming: {ev['done']} of {ev['total']} samples already done in {escape(ev['out_dir'])}",
                      highlight=False, soft_wrap=True)

    def stage(self, label: str, done: int, total: int | None) -> None:
        """Progress of one named stage: a new label starts a new line (a new bar on a terminal)."""
        if label != self.what or not self._stages:
            self._stages, self._stage_lines = True, 0
            if self.p is not None:
                self.p.remove_task(self.task)  # the finished stage (or the placeholder) goes; a new bar starts
                self.task = self.p.add_task(escape(label), total=total, info="")
            self.what, self.start, self.ev = label, None, None  # its own line, rate and ETA
        self._update({"done": done, "total": total})

    def __exit__(self, *exc):
        if self._stop is not None:
            self._stop.set()
        if self.p is not None:
            self.p.stop()


def _duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
