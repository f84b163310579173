"""The clocks of the throughput benchmark (`benchmarks/throughput.py`): a step's time, an arm run alone, arms run in
lockstep (one baton passed between threads, so a burst of load from other processes hits them alike), a loader's
batches, and glibc's heap kept between steps.

A step's time runs from the end of the previous step to the end of this one: loading, forward, loss, backward,
optimizer step and, for the Learners, every callback. An arm reports each step to a `Hook`.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Hook = Callable[[int, bool], None]  # called by an arm at the end of each step: (images in the step, timed or not)


def keep_heap() -> str:
    """Make glibc keep freed memory (mallopt M_MMAP_THRESHOLD 32 MiB, M_TRIM_THRESHOLD 1 GiB); what was done.

    By default glibc serves each multi-megabyte activation with a fresh mmap, or trims the heap after freeing it, so
    every training step faults its activations' pages in again: about 4,600 minor faults a step here (300,000 in 65
    steps), none with this setting. The same as MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 in
    the environment of the process.
    """
    from tricks.plain import glibc

    libc = glibc()
    if libc is None:
        return "not glibc: unchanged"
    m_trim_threshold, m_mmap_threshold = -1, -3  # from malloc.h
    ok = libc.mallopt(m_mmap_threshold, 32 << 20) == 1 and libc.mallopt(m_trim_threshold, 1 << 30) == 1
    return "mallopt M_MMAP_THRESHOLD=32MiB, M_TRIM_THRESHOLD=1GiB" if ok else "mallopt refused: unchanged"


@dataclass
class Timing:
    """The images and seconds of each timed step (or batch) of one arm in one round."""

    images: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def add(self, images: int, seconds: float) -> None:
        self.images.append(images)
        self.seconds.append(seconds)

    @property
    def img_per_s(self) -> float:
        """Images over the summed time of the steps: the throughput."""
        return sum(self.images) / max(sum(self.seconds), 1e-12)

    @property
    def median_img_per_s(self) -> float:
        """Images per second of the median step: blind to stalls, so a diagnostic of load noise, not the number."""
        return statistics.median(n / max(t, 1e-12) for n, t in zip(self.images, self.seconds, strict=True))


def run_solo(arm: Callable[[Hook], None]) -> Timing:
    """Run one arm alone; each step is timed from the end of the one before."""
    timing, last = Timing(), [time.perf_counter()]

    def hook(images: int, timed: bool) -> None:
        now = time.perf_counter()
        if timed:
            timing.add(images, now - last[0])
        last[0] = now

    arm(hook)
    return timing


def in_thread(fn: Callable[[], Any]) -> Any:
    """fn() run in a fresh thread, as every arm is: under load, libgomp's team of the main thread (which spins while
    it waits) slowed the same training step up to seven-fold against a worker thread's team (2026-11-25, 2 cores,
    load average 3), so solo arms run in threads like the lockstep ones."""
    out: dict[str, Any] = {}

    def body() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:  # re-raised in the calling thread
            out["error"] = e

    t = threading.Thread(target=body, name="arm", daemon=True)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def run_lockstep(arms: dict[str, Callable[[Hook], None]], n_steps: int) -> dict[str, Timing]:
    """Run the arms in threads that pass one baton: step s of every arm, in an order rotated by s, before step s + 1
    of any. A step is timed from the moment its arm gets the baton to the end of the step, so the hand-over and the
    other arms' steps are outside it. Each arm must call its hook exactly `n_steps` times."""
    names = list(arms)
    go = {n: threading.Semaphore(0) for n in names}
    back = threading.Semaphore(0)
    timings = {n: Timing() for n in names}
    resumed: dict[str, float] = {}
    ended: set[str] = set()
    errors: dict[str, BaseException] = {}

    def take_baton(name: str) -> None:
        go[name].acquire()
        resumed[name] = time.perf_counter()

    def hook_of(name: str) -> Hook:
        def hook(images: int, timed: bool) -> None:
            if timed:
                timings[name].add(images, time.perf_counter() - resumed[name])
            back.release()
            take_baton(name)
        return hook

    def body(name: str) -> None:
        take_baton(name)
        try:
            arms[name](hook_of(name))
        except BaseException as e:  # re-raised in the main thread
            errors[name] = e
        finally:
            ended.add(name)
            back.release()

    threads = [threading.Thread(target=body, args=(n,), name=f"arm-{n}", daemon=True) for n in names]
    for t in threads:
        t.start()
    for s in range(n_steps + 1):  # the last turn lets every arm return from its last hook and end
        k = s % len(names)
        for n in names[k:] + names[:k]:
            if n not in ended:
                go[n].release()
                back.acquire()
    for t in threads:
        t.join()
    for name, e in errors.items():
        raise RuntimeError(f"arm {name} failed: {type(e).__name__}: {e}") from e
    return timings


def loader_speed(batches: Any, limit: int | None = None, skip: int = 0) -> Timing:
    """The time of each batch of iterating `batches` (each fully computed on the CPU): all of them or the first
    `limit`, the first `skip` untimed (loader workers' start-up)."""
    timing, it = Timing(), iter(batches)
    try:
        t = time.perf_counter()
        for i, (_, yb) in enumerate(it):
            now = time.perf_counter()
            if i >= skip:
                timing.add(len(yb), now - t)
            if limit is not None and i + 1 >= limit:
                break
            t = time.perf_counter()
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()  # a stock loader's workers end here, not at some later garbage collection
    return timing


