"""Worker processes of the throughput benchmark (`benchmarks/throughput.py`): n fresh interpreters training the
project arm at once, on the CPU (the `concurrent` arm: two one-thread workers, as the suite runs them) or sharing
one GPU (`--gpu`); their total images over their common timed window."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from benchmarks.arms import arm_project
from benchmarks.timing import Timing


def worker(out: Any, barrier: Any, source: str, threads: int, warmup: int, steps: int, device: str, seed: int,
           sgemm: bool) -> None:
    """One worker process: the project arm on `device` with `threads` threads. All workers start their timed steps
    together (a barrier after the warm-up) and report (images, start, end) on the system-wide monotonic clock, then,
    with `sgemm`, the GFLOP/s of 1024^3 float32 matmuls timed at the same moment in every worker."""
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    from tricks.cifar import load_cifar10

    torch.set_num_threads(threads)
    cuda = torch.device(device).type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    arrays = load_cifar10(source)
    state = {"n": 0, "images": 0}

    def hook(images: int, timed: bool) -> None:
        state["n"] += 1
        if state["n"] == warmup:
            sync()
            barrier.wait()
            state["t0"] = time.monotonic()
        elif timed:
            state["images"] += images
            if state["n"] == warmup + steps:
                sync()
                state["t1"] = time.monotonic()

    try:
        arm_project(arrays, argparse.Namespace(warmup=warmup, steps=steps), seed, hook, device=device)
        report = {"images": state["images"], "t0": state["t0"], "t1": state["t1"]}
        if sgemm:
            report["sgemm_gflops"] = sgemm_gflops(barrier, device)
        out.put(report)
    except BaseException as e:  # the parent names it; the other workers' barrier breaks instead of hanging
        barrier.abort()
        out.put({"error": f"{type(e).__name__}: {e}"})


def sgemm_gflops(barrier: Any, device: str, n: int = 1024, reps: int = 10) -> float:
    """GFLOP/s of `reps` n^3 float32 matmuls, started with the other workers (a barrier)."""
    import torch

    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    (a @ b).sum().item()  # warm up
    barrier.wait()
    t = time.perf_counter()
    for _ in range(reps):
        c = a @ b
    float(c[0, 0])  # waits for a GPU too
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def run_workers(n: int, source: str, device: str, threads: int, warmup: int, steps: int, sgemm: bool = False,
                timeout: float = 290.0) -> dict[str, Any]:
    """n worker processes training at once; their total images over the common timed window, and each one's."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # a fresh interpreter: no forked OpenMP or CUDA state
    out, barrier = ctx.Queue(), ctx.Barrier(n, timeout=timeout)
    procs = [ctx.Process(target=worker, args=(out, barrier, source, threads, warmup, steps, device, i, sgemm),
                         daemon=True) for i in range(n)]
    for proc in procs:
        proc.start()
    try:
        reports = [out.get(timeout=timeout) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    errors = [r["error"] for r in reports if "error" in r]
    if errors:
        raise RuntimeError(f"{len(errors)} of {n} workers failed: {errors[0]}")
    window = max(r["t1"] for r in reports) - min(r["t0"] for r in reports)
    images = sum(r["images"] for r in reports)
    result = {"img_per_s": images / max(window, 1e-12), "images": images, "window_s": window,
              "per_worker": [r["images"] / max(r["t1"] - r["t0"], 1e-12) for r in reports]}
    if sgemm:
        result["sgemm_gflops"] = sum(r["sgemm_gflops"] for r in reports)
    return result


def concurrent_arm(source: Path, args: argparse.Namespace, extras: list[dict[str, Any]]) -> Timing:
    """Two one-thread worker processes training the project arm at once, as the suite runs them; the pair's total as
    one Timing (their images over their common window), the rest (per worker, sgemm) appended to `extras`."""
    r = run_workers(2, str(source), "cpu", 1, args.warmup, args.steps, sgemm=True)
    extras.append(r)
    timing = Timing()
    timing.add(r["images"], r["window_s"])
    return timing

