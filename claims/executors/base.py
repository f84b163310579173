"""The executor protocol: what the scheduler hands an executor (`Job`s) and gets back (`RunResult` or `RunFailure`).

An executor maps jobs to RunResults and nothing more (`map_runs`): it never touches the run store, which only the
driver (the scheduler's process) writes. `call_run` is the one place a run function is called, so every executor
turns a run that raises into the same `RunFailure`.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from tricks.plain import one_line
from tricks.recipe import Recipe, RunResult

__all__ = ["Job", "RunFailure", "RunFn", "OnDone", "Executor", "default_run_fn", "limit_threads", "call_run",
           "checked"]


class Job(NamedTuple):
    """One run to train: a recipe, a seed, and the name of the profile that scales it."""

    recipe: Recipe
    seed: int
    profile: str


@dataclass(frozen=True)
class RunFailure:
    """A job that produced no RunResult: the run raised, or its worker process died."""

    job: Job
    error: str  # "ExceptionType: message", one line
    traceback: str = ""

    def __str__(self) -> str:
        name = self.job.recipe.name or self.job.recipe.key[:12]
        return f"run of {name} with seed {self.job.seed} ({self.job.profile}) failed: {self.error}"


RunFn = Callable[..., RunResult]
OnDone = Callable[[Job, "RunResult | RunFailure"], None]


class Executor(Protocol):
    """Trains jobs and reports each one as it finishes, a RunResult or a RunFailure; never hangs on a failure."""

    def map_runs(self, jobs: Sequence[Job], on_done: OnDone) -> None: ...


def default_run_fn() -> RunFn:
    """`tricks.train.run`, imported when first needed."""
    from tricks.train import run

    return run


def limit_threads(threads: int | None) -> None:
    """Pin BLAS/OpenMP and torch to `threads` threads (torch only if it is imported already)."""
    if threads is None:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def call_run(run_fn: RunFn, job: Job, source: str | None, device: str | None, **extra: Any) -> RunResult | RunFailure:
    """The job's RunResult from `run_fn`, or a RunFailure naming what went wrong (KeyboardInterrupt passes)."""
    try:
        res = run_fn(job.recipe, job.seed, job.profile, source=source, device=device, **extra)
    except Exception as e:  # a failing run is reported with its job; KeyboardInterrupt still stops the suite
        return RunFailure(job, one_line(e), traceback.format_exc())
    return checked(job, res)


def checked(job: Job, res: Any) -> RunResult | RunFailure:
    """`res` if it is the job's RunResult, else a RunFailure saying what came back instead."""
    if not isinstance(res, RunResult):
        return RunFailure(job, f"the run function returned {type(res).__name__}, not a RunResult")
    if res.recipe_key != job.recipe.key or res.seed != job.seed:
        return RunFailure(job, f"the run function returned the run of recipe {res.recipe_key[:12]} seed {res.seed}")
    return res
