"""`RayExecutor`: each (recipe, seed) run is a Ray task, on a local Ray instance or on a cluster (`ray start --head`).

Ray is an optional extra (`pip install -e '.[ray]'`) and is imported only here, when the executor is built. A task
asks for one CPU (and runs one torch thread), or with `gpus_per_run` a fraction of a GPU so that several runs share
one. Only the driver writes the run store: `map_runs` hands each result to `on_done` in the driver as `ray.wait`
reports it, so SQLite never sits on a network file system.

How the dataset reaches the workers: the driver `ray.put`s the uint8 tensors of the `CifarArrays` it loaded (as
numpy arrays, about 180 MB for CIFAR-10) once per executor. Ray's object store copies an object to a node once and
every worker on that node reads it from shared memory; each worker process then keeps one private copy across the
tasks it runs. This was chosen over each node loading `TRICKS_DATA` into its own cache because (1) the nodes need
neither the archive at the same path nor minutes to decode it, and (2) every run trains on exactly the copy whose
digest keys the store (the driver's), so a node with a different copy cannot mix runs of two datasets under one key.

Faults: a run that raises is a `RunFailure` with its message (as with the local executor, never retried); a worker
process that dies (killed, out of memory) is retried by Ray up to `max_retries` times, and since only a finished
task reaches the store, no run is stored twice; Ctrl-C (or any error in `on_done`) cancels every outstanding task.
A driver killed outright takes its tasks with it (Ray ends the tasks of a dead driver); the next start finds the
finished runs in the store and trains only the rest.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from claims.executors.base import Job, OnDone, RunFailure, RunFn, call_run, checked, default_run_fn, limit_threads
from tricks.recipe import RunResult

__all__ = ["RayExecutor", "RayError", "RAY_MISSING", "import_ray", "check_gpus_per_run"]

RAY_MISSING = "--executor ray needs Ray, an optional extra: pip install -e '.[ray]'"
DEFAULT_MAX_RETRIES = 3  # Ray's own default for tasks: a worker killed mid-run is retried up to 3 times


class RayError(RuntimeError):
    """Ray is missing, the cluster cannot be reached, or it lacks what the options ask for (one sentence)."""


def import_ray() -> Any:
    """The `ray` module, or RayError with the sentence saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RayError(RAY_MISSING) from None
    return ray


def check_gpus_per_run(value: float | None) -> float | None:
    """A GPU share Ray accepts: above 0, and a whole number when above 1 (Ray splits one GPU, not several)."""
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value) or value <= 0 or (value > 1 and not value.is_integer()):
        raise ValueError(f"--gpus-per-run {value:g} must be a fraction of one GPU (0 < F <= 1) or a whole number")
    return value


# ------------------------------------------------------------------------------------------------ worker side

_ARRAYS: dict[str, Any] = {}  # digest -> CifarArrays: one private copy per worker process, kept across its tasks


def _shareable(arrays: Any) -> dict[str, Any]:
    """CifarArrays as a dict with numpy arrays: Ray stores numpy zero-copy, torch tensors it would pickle."""
    return {f.name: (v.numpy() if hasattr(v, "numpy") else v)
            for f in dataclasses.fields(arrays) for v in [getattr(arrays, f.name)]}


def _worker_arrays(digest: str, box: list[Any]) -> Any:
    """This process's CifarArrays of `digest`, fetched from the object store the first time (`box` holds the ref)."""
    if digest not in _ARRAYS:
        import numpy as np
        import ray
        import torch

        from tricks.cifar import CifarArrays

        d = ray.get(box[0])  # numpy views of the node's shared memory, read-only: copied once into this process
        _ARRAYS.clear()  # one dataset at a time per worker
        _ARRAYS[digest] = CifarArrays(**{k: torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray) else v
                                         for k, v in d.items()})
    return _ARRAYS[digest]


def _task(run_fn: RunFn, job: Job, source: str | None, device: str | None, data: tuple[str, list[Any]] | None,
          threads: int) -> RunResult | RunFailure:
    """One run in a Ray worker: one torch thread, the shared dataset when there is one."""
    limit_threads(threads)
    extra = {} if data is None else {"arrays": _worker_arrays(*data)}
    return call_run(run_fn, job, source, device, **extra)


# ------------------------------------------------------------------------------------------------ driver side


class RayExecutor:
    """Ray tasks, one CPU each (or `gpus_per_run` of a GPU); connects to `address` (None: Ray's own search)."""

    def __init__(self, address: str | None = None, run_fn: RunFn | None = None, source: str | None = None,
                 device: str | None = None, gpus_per_run: float | None = None, *, arrays: Any = None,
                 max_retries: int = DEFAULT_MAX_RETRIES, threads: int = 1, poll_s: float = 0.5):
        self.gpus_per_run = check_gpus_per_run(gpus_per_run)
        self.ray = import_ray()
        self.address, self.source, self.threads, self.poll_s = address, source, threads, poll_s
        # the real run function gets the driver's dataset; a custom one (tests' fakes) is called as LocalExecutor does
        self.share_data = run_fn is None or arrays is not None
        self.run_fn = run_fn or default_run_fn()
        self.device = device or (None if self.gpus_per_run else "cpu")  # no GPU reserved: do not use one
        self.max_retries = int(max_retries)
        self._arrays, self._data = arrays, None
        self._connect()
        self._remote = self.ray.remote(_task).options(
            num_cpus=1, num_gpus=self.gpus_per_run or 0, max_retries=self.max_retries, retry_exceptions=False)

    def _connect(self) -> None:
        ray = self.ray
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, log_to_driver=False)
            except Exception as e:  # no cluster, a wrong address, a missing auth token: Ray raises many kinds
                where = f"at {self.address}" if self.address else "(none running, and none could be started)"
                raise RayError(f"cannot reach a Ray cluster {where}: {' '.join(str(e).split())[:200]}") from None
        res = ray.cluster_resources()
        cpus, gpus = int(res.get("CPU", 0)), float(res.get("GPU", 0))
        if self.gpus_per_run and gpus == 0:
            raise RayError(f"--gpus-per-run {self.gpus_per_run:g}: the Ray cluster has no GPU")
        slots = cpus if not self.gpus_per_run else min(cpus, int(gpus / self.gpus_per_run))
        self.workers = max(1, slots)  # runs in flight at once, for the scheduler's ETA

    def _data_ref(self) -> tuple[str, list[Any]] | None:
        """(digest, [ObjectRef]) of the dataset, put once; the list keeps Ray from fetching it for every task."""
        if not self.share_data:
            return None
        if self._data is None:
            if self._arrays is None:
                from tricks.cifar import load_cifar10

                self._arrays = load_cifar10(self.source)
            self._data = (self._arrays.digest, [self.ray.put(_shareable(self._arrays))])
        return self._data

    def map_runs(self, jobs: Sequence[Job], on_done: OnDone) -> None:
        """Submit every job; `on_done(job, RunResult | RunFailure)` is called in this thread as each one finishes."""
        if not jobs:
            return
        ray = self.ray
        data = self._data_ref()
        pending = {self._remote.remote(self.run_fn, job, self.source, self.device, data, self.threads): job
                   for job in jobs}
        try:
            while pending:  # a timeout, so that Ctrl-C is seen between waits
                done, _ = ray.wait(list(pending), num_returns=1, timeout=self.poll_s)
                for ref in done:
                    job = pending.pop(ref)
                    on_done(job, self._outcome(ref, job))
        finally:
            for ref in pending:  # Ctrl-C or an error in on_done: nothing keeps training for nobody
                ray.cancel(ref, force=True)

    def _outcome(self, ref: Any, job: Job) -> RunResult | RunFailure:
        """The task's RunResult or RunFailure; a task Ray gave up on (its worker died each try) is a RunFailure."""
        exc = self.ray.exceptions
        try:
            out = self.ray.get(ref)
            return out if isinstance(out, RunFailure) else checked(job, out)
        except exc.WorkerCrashedError:
            return RunFailure(job, f"its Ray worker process died {self.max_retries + 1} time(s) "
                                   f"(max_retries={self.max_retries})")
        except exc.RayTaskError as e:  # the task failed outside the run function (e.g. it could not be unpickled)
            cause = getattr(e, "cause", None) or e
            return RunFailure(job, f"its Ray task failed: {_one(cause)}")
        except exc.RayError as e:  # lost objects, a node that died, a cancelled task
            return RunFailure(job, f"its Ray task failed: {_one(e)}")


def _one(e: BaseException) -> str:
    text = " ".join(str(e).split())
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
