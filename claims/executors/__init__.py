"""Executors behind one protocol (`map_runs(jobs, on_done)`): `LocalExecutor` here, `RayExecutor` in `.ray` (Ray is an
optional extra, imported only by that module)."""

from claims.executors.base import Executor, Job, OnDone, RunFailure, RunFn, call_run, default_run_fn, limit_threads
from claims.executors.local import LocalExecutor

__all__ = ["Executor", "Job", "OnDone", "RunFailure", "RunFn", "call_run", "default_run_fn", "limit_threads",
           "LocalExecutor"]
