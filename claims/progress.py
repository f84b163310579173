"""The scheduler's progress over one round of runs: a rich bar with an ETA from the mean run time on a terminal, plain
`[claims]` lines elsewhere (a log, CI)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from claims.executors.base import Job


class RoundProgress:
    """A rich progress bar of one round's runs with an ETA from the mean run time. Off a terminal (a log, CI) it
    prints plain lines instead: the round's start, each further tenth of its runs with the ETA, and its end."""

    def __init__(self, enabled: bool, total: int, label: str, console: Any, workers: int):
        self.total, self.label, self.workers = total, label, workers
        self.done = self.failed = 0
        self.walls: list[float] = []
        self.t0 = time.perf_counter()
        self.bar = self.plain = None
        self.shown_tenth = 0
        if enabled:
            from rich.console import Console

            console = console or Console(stderr=True)
            if console.is_terminal:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

                self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                    TimeElapsedColumn(), TextColumn("{task.fields[eta]}"), console=console,
                                    transient=False)
            else:
                self.plain = console
        self.recipes = ""

    def __enter__(self) -> RoundProgress:
        if self.bar is not None:
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total, eta="")
        self._say(f"{self.total} run(s) to train on {self.workers} worker(s)")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()
        self._say(f"{self.done}/{self.total} run(s) in {clock(time.perf_counter() - self.t0)}"
                  + (" (interrupted)" if exc[0] is not None else ""))

    def _say(self, text: str) -> None:
        """One plain line (off a terminal only), with the count of failed runs when there are any."""
        if self.plain is not None:
            failed = f", {self.failed} failed" if self.failed else ""
            self.plain.print(f"[claims] {self.label}: {text}{failed}", markup=False, highlight=False, soft_wrap=True)

    def describe(self, jobs: Sequence[Job]) -> None:
        names = sorted({j.recipe.name or j.recipe.key[:12] for j in jobs})
        self.recipes = ", ".join(names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else "")
        self._update()

    def advance(self, k: int, *, wall_s: float | None = None, failed: bool = False, why: str = "") -> None:
        """k more runs finished; a failed one says `why` at once (one line), not only in the report at the end: a
        paper round runs for hours."""
        if k <= 0:
            return
        self.done += k
        self.failed += failed
        console = self.plain if self.plain is not None else getattr(self.bar, "console", None)
        if failed and why and console is not None:
            console.print(f"[claims] {self.label}: {' '.join(why.split())}", markup=False, highlight=False,
                          soft_wrap=True)
        if wall_s is not None:
            self.walls.append(wall_s)
        self._update()

    def eta_s(self) -> float | None:
        """Seconds left: mean run time of this round's finished runs x runs left / workers."""
        if not self.walls:
            return None
        mean = sum(self.walls) / len(self.walls)
        return mean * (self.total - self.done) / self.workers

    def _update(self) -> None:
        tenth = self.done * 10 // max(self.total, 1)
        if self.plain is not None and 0 < tenth < 10 and tenth > self.shown_tenth:
            self.shown_tenth = tenth
            eta = self.eta_s()
            self._say(f"{self.done}/{self.total} run(s), {clock(time.perf_counter() - self.t0)} elapsed"
                      + ("" if eta is None else f", ETA {clock(eta)}"))
        if self.bar is None:
            return
        eta = self.eta_s()
        text = "" if eta is None else f"ETA {clock(eta)}"
        if self.failed:
            text += f"  [red]{self.failed} failed[/]"
        desc = f"{self.label}: {self.recipes}" if self.recipes else self.label
        self.bar.update(self.task, completed=self.done, description=desc, eta=text)


def clock(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
