"""`LocalExecutor`: one-thread worker processes on this machine (spawn), or the jobs in this process (`workers=0`).

On a 2-core machine two 1-thread processes gave 1.3x the throughput of one 2-thread process. A worker that dies
mid-run becomes a `RunFailure` of its job and is replaced; workers that cannot start at all fail every job once.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import signal
import sys
import warnings
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait as wait_ready
from typing import Any

from claims.executors.base import Job, OnDone, RunFailure, RunFn, call_run, default_run_fn, limit_threads
from tricks.plain import one_line

__all__ = ["LocalExecutor"]


def _worker_main(conn: Any, run_fn: RunFn, source: str | None, device: str | None, threads: int | None) -> None:
    # Ctrl-C reaches the whole process group; only the parent decides what stops, and it terminates the workers
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from claims.lifeline import install_in_worker

    install_in_worker()  # under nox: a worker whose suite was killed stops mid-run
    # fastai's import scripts a function with torch.jit, which torch 2.14 deprecates: one line per worker, no news
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
    limit_threads(threads)
    conn.send((None, "ready"))  # a worker that dies before this could not start: the parent stops respawning
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if msg is None:
            return
        idx, job = msg
        limit_threads(threads)  # the previous run may have imported torch with its own default
        out = call_run(run_fn, job, source, device)
        try:
            conn.send((idx, out))
        except (BrokenPipeError, EOFError, OSError):
            return
        except Exception as e:  # the result would not pickle
            conn.send((idx, RunFailure(job, f"the result could not be sent back: {one_line(e)}")))


@dataclass
class _Worker:
    proc: Any
    conn: Any
    idx: int | None = None  # the job in flight
    ready: bool = False  # the worker started (imported the run function) and said so


class LocalExecutor:
    """Worker processes (spawn), one thread each; `workers=0` runs the jobs in this process, for debugging."""

    def __init__(self, workers: int | None = None, run_fn: RunFn | None = None, source: str | None = None,
                 device: str | None = None, threads: int | None = 1):
        self.workers = (os.cpu_count() or 1) if workers is None else int(workers)
        if self.workers < 0:
            raise ValueError(f"workers must be 0 (in-process) or more, not {workers}")
        self.run_fn = run_fn or default_run_fn()
        self.source, self.device, self.threads = source, device, threads
        if self.workers > 0:
            try:
                pickle.dumps(self.run_fn)
            except Exception:
                raise TypeError(f"run function {self.run_fn!r} cannot be sent to worker processes: "
                                "it must be a module-level function") from None

    def map_runs(self, jobs: Sequence[Job], on_done: OnDone) -> None:
        """Train every job; `on_done(job, RunResult | RunFailure)` is called in this thread as each one finishes."""
        if not jobs:
            return
        if self.workers == 0:
            self._map_in_process(jobs, on_done)
        else:
            self._map_in_workers(jobs, on_done)

    def _map_in_process(self, jobs: Sequence[Job], on_done: OnDone) -> None:
        torch = sys.modules.get("torch")
        before = torch.get_num_threads() if torch is not None else None
        try:
            for job in jobs:
                limit_threads(self.threads)
                on_done(job, call_run(self.run_fn, job, self.source, self.device))
        finally:
            torch = sys.modules.get("torch")
            if torch is not None and before is not None:
                torch.set_num_threads(before)

    def _start(self, ctx: Any) -> _Worker:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker_main, args=(child, self.run_fn, self.source, self.device, self.threads),
                           name="tricks-run-worker")
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def _map_in_workers(self, jobs: Sequence[Job], on_done: OnDone) -> None:
        ctx = mp.get_context("spawn")
        pending = deque(range(len(jobs)))
        pool: list[_Worker] = []
        clean = False

        def feed(w: _Worker) -> None:
            if pending:
                w.idx = pending.popleft()
                with contextlib.suppress(BrokenPipeError, OSError):  # a dead worker is reported by its sentinel
                    w.conn.send((w.idx, jobs[w.idx]))

        try:
            for _ in range(min(self.workers, len(jobs))):
                pool.append(self._start(ctx))
                feed(pool[-1])
            while any(w.idx is not None for w in pool):
                busy = [w for w in pool if w.idx is not None]
                wait_ready([w.conn for w in busy] + [w.proc.sentinel for w in busy])
                for w in busy:
                    got = None
                    try:
                        if w.conn.poll():
                            got = w.conn.recv()
                    except (EOFError, OSError):
                        got = None
                    if got is not None:
                        idx, out = got
                        if idx is None:
                            w.ready = True
                            continue
                        w.idx = None
                        on_done(jobs[idx], out)
                        feed(w)
                    elif not w.proc.is_alive():
                        w.proc.join()
                        job = jobs[w.idx]
                        w.idx = None
                        pool.remove(w)
                        if not w.ready:  # respawning would only fail again, once per job
                            why = (f"worker processes cannot start (exit code {w.proc.exitcode}); --workers 0 "
                                   "trains in this process and shows why")
                            for j in [job, *(jobs[i] for i in pending)]:
                                on_done(j, RunFailure(j, why))
                            pending.clear()
                            continue
                        on_done(job, RunFailure(job, f"its worker process died (exit code {w.proc.exitcode})"))
                        if pending:
                            pool.append(self._start(ctx))
                            feed(pool[-1])
            clean = True
        finally:
            _stop(pool, graceful=clean)


def _stop(pool: list[_Worker], graceful: bool) -> None:
    """Ask idle workers to exit; terminate the rest (Ctrl-C, an error in `on_done`): runs in flight are lost."""
    for w in pool:
        if graceful:
            with contextlib.suppress(BrokenPipeError, OSError):
                w.conn.send(None)
        else:
            w.proc.terminate()
    for w in pool:
        w.proc.join(timeout=5 if graceful else 2)
        if w.proc.is_alive():
            w.proc.kill()
            w.proc.join(timeout=2)
        w.conn.close()
