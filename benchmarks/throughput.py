"""Training throughput of the project's CIFAR-10 path against a plain PyTorch loop and fastai's stock pipeline.

What is measured (images per second, batch 64, `build_model("tf_cnn", padding=0)`: the TF-tutorial CNN, 122,570
parameters, float32, on the CPU with `--threads` threads):

- `project`: `cifar_dls(arrays, augment=True, normalize="train")` (reflect-pad 4 + random crop + flip + normalize on
  whole batches of the uint8 tensors) and the project's Learner (`tricks.train.build_learner`: fastai Adam,
  CrossEntropyLossFlat, accuracy metric, DivergenceGuard, ThroughputRecorder, no progress bar), `learn.fit(.., 1e-3)`.
- `plain`: the same model and the same tensor augmentation and normalization, written out in plain torch (randperm,
  one gather per batch, addcmul), with `torch.optim.Adam` and a zero_grad/forward/backward/step loop.
- `project_cl`, `plain_cl`: the same two with the model and each input batch in `torch.channels_last`.
- `stock`: fastai's own pipeline: `ImageDataLoaders.from_folder(<extracted archive>, valid="test", bs=64,
  item_tfms=None, batch_tfms=[Flip(), Normalize.from_stats(*cifar_stats)])` (PIL decoding of each JPEG, fastai's
  default worker count) and a stock `Learner` (fastai Adam, CrossEntropyLossFlat, accuracy). fastai has no cheap
  batch-level pad-and-crop, so the stock arm does *less* augmentation than the others: no random crop.
- `project_solo`: the `project` arm again, run alone like `stock`; `project_vs_stock` is project_solo / stock, two
  arms run under the same condition (an arm inside the lockstep shares the caches and the turn with three others).
- `loader`: the project's training loader alone (augmentation and normalization on, no model), one full epoch of
  50,000 images; `plain_loader` the plain-torch batches alone, also a full epoch; `stock_loader` fastai's stock
  loader alone over `steps` batches after `warmup` ones (a full epoch of it takes half a minute).

How: every training arm runs `warmup` optimizer steps, then `steps` timed ones (a callback ends the Learners' fits
there and skips validation). A step's time runs from the end of the previous step to the end of this one: loading,
forward, loss, backward, optimizer step and, for the Learners, every callback; Learner construction, worker start-up
and teardown are outside it. The four in-process arms (project, plain and their channels_last variants) run in
*lockstep*: each in its own thread, passing one baton, step s of every arm (in an order rotated by s) before step
s + 1 of any, so a burst of load from other processes on a shared machine hits all four alike; their ratios are
side by side to within one step (~50 ms). The stock arm cannot join the lockstep (its loader workers would go on
decoding while the other arms run) and runs alone, like the loaders, between the lockstep blocks. Every arm runs in
a worker thread (see `in_thread`). Everything repeats `--rounds` times, the order rotated each round. A speed is the
median over rounds; a ratio is the median over rounds of the ratio of two arms in the same round. In brackets (and
under `median_step` in the JSON) the same from each arm's median step instead of its summed time: blind to stalls,
so not the throughput, but a check on noise.

Evidence for the design: on a 2-core machine that other processes loaded to a load average of 4 (2026-11-25), 150
steps per arm with only round-level alternation gave the same arm 140, 285 and 259 img/s in three rounds, and
project_cl 1,826 then 137 (a 2-thread OpenMP team slows ten-fold while a core is taken); the same-round ratio of two
arms run a minute apart then says nothing.

Targets (from the project's issue): project >= 0.9x plain, project >= 5x stock, loader >= 20,000 img/s. The script
exits 0 whether or not they are met; one line says which were. The last line of stdout is one JSON object with every
number and the provenance (versions, threads, CPU, load average, steps, date, dataset digest).

Usage: `python benchmarks/throughput.py [--data PATH] [--steps 150] [--rounds 3] [--threads 2] [--quick]`
(`nox -s bench -- --quick`). `--data` defaults to `$TRICKS_DATA`; the stock arms need the class-folder layout (the
archive is extracted once under the project's cache folder, `$TRICKS_CACHE`, and reused).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tarfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

BS = 64  # batch size of every arm
LR = 1e-3  # constant learning rate of every arm (speed does not depend on it)
TARGETS = {"project_vs_plain": 0.9, "project_vs_stock": 5.0, "loader": 20_000.0}  # from the project's issue
LOCKSTEP_ARMS = ("project", "plain", "project_cl", "plain_cl")  # in-process: run step by step in turn
SOLO_ARMS = ("stock", "project_solo", "loader", "plain_loader", "stock_loader")  # alone, between lockstep blocks
ARMS = LOCKSTEP_ARMS + SOLO_ARMS
# (name, a, b): name = a / b in the same round. The stock arm runs alone, so it is compared with the project's arm
# run alone too: an arm in the lockstep shares the caches and the turn with three others, and on 2026-12-02 the same
# project arm gave 1,510 img/s in the lockstep and 2,187 alone in one run, 2,031 and 1,740 in the next: a
# lockstep-vs-solo ratio mixes two conditions.
RATIOS = (("project_vs_plain", "project", "plain"), ("project_vs_stock", "project_solo", "stock"),
          ("plain_cl_vs_plain", "plain_cl", "plain"), ("project_cl_vs_project", "project_cl", "project"),
          ("project_cl_vs_plain_cl", "project_cl", "plain_cl"), ("loader_vs_plain_loader", "loader", "plain_loader"))

Hook = Callable[[int, bool], None]  # called by an arm at the end of each step: (images in the step, timed or not)


# ------------------------------------------------------------------------------------------------- options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("TRICKS_DATA") or None,
                   help="CIFAR-10 source: class-folder archive or folder (default $TRICKS_DATA)")
    p.add_argument("--steps", type=int, default=150, help="timed optimizer steps per training arm (default 150)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before the timed ones (default 5)")
    p.add_argument("--rounds", type=int, default=3, help="repetitions of every arm, in rotated order (default 3)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--stock-workers", type=int, default=None,
                   help="num_workers of the stock fastai loaders (default: fastai's own, min(16, cpus))")
    p.add_argument("--mallopt", action="store_true",
                   help="before any arm, stop glibc malloc from returning freed memory to the OS (see keep_heap)")
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms to run (default all)")
    p.add_argument("--quick", action="store_true",
                   help="smoke mode: 10 steps after 2 warm-up steps, 1 round (checks the path, judges nothing)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.rounds = 10, 2, 1
    for name in ("steps", "warmup", "rounds", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1, not {getattr(args, name)}")
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        p.error(f"unknown arm(s) {', '.join(unknown)} (known: {', '.join(ARMS)})")
    args.arms = arms
    if not args.data:
        p.error("no CIFAR-10 source: pass --data PATH or set TRICKS_DATA")
    return args


# ------------------------------------------------------------------------------------------------- clocks


def keep_heap() -> str:
    """Make glibc keep freed memory (mallopt M_MMAP_THRESHOLD 32 MiB, M_TRIM_THRESHOLD 1 GiB); what was done.

    By default glibc serves each multi-megabyte activation with a fresh mmap, or trims the heap after freeing it, so
    every training step faults its activations' pages in again: about 4,600 minor faults a step here (300,000 in 65
    steps), none with this setting. The same as MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 in
    the environment of the process.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None or platform.libc_ver()[0] != "glibc":
        return "not glibc: unchanged"
    libc = ctypes.CDLL(name)
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


def step_hook(hook: Hook, warmup: int, steps: int) -> Any:
    """A fastai callback that calls `hook` at the end of every training step, ends the fit after warmup + steps
    steps and skips validation (an epoch boundary's validation is not a training step)."""
    from fastai.callback.core import Callback, CancelFitException, CancelValidException
    from fastai.torch_core import find_bs

    class StepHook(Callback):
        order = 1000  # after every other after_batch, so their cost is inside the step

        def before_fit(self) -> None:
            self.n = 0

        def after_batch(self) -> None:
            if not self.training:
                return
            self.n += 1
            hook(find_bs(self.learn.yb), self.n > warmup)
            if self.n == warmup + steps:
                raise CancelFitException()

        def before_validate(self) -> None:
            raise CancelValidException()

    return StepHook()


def channels_last_inputs() -> Any:
    """A fastai callback that hands the model each input batch in channels_last memory format."""
    import torch
    from fastai.callback.core import Callback

    class ChannelsLastInputs(Callback):
        def before_batch(self) -> None:
            self.learn.xb = tuple(x.contiguous(memory_format=torch.channels_last) for x in self.xb)

    return ChannelsLastInputs()


def fit_steps(learn: Any, warmup: int, steps: int) -> None:
    """Fit `learn` (which holds a StepHook) for warmup + steps steps, across epochs if need be."""
    learn.fit(-(-(warmup + steps) // len(learn.dls.train)) + 1, LR)
    done = next(cb.n for cb in learn.cbs if type(cb).__name__ == "StepHook")
    if done < warmup + steps:
        raise RuntimeError(f"the fit ended after {done} steps, before {warmup + steps}")


# ------------------------------------------------------------------------------------------------- the arms


def tf_cnn(channels_last: bool = False) -> Any:
    """The benchmarked model, initialized from seed 0 in every arm."""
    import torch

    from tricks.models import build_model

    torch.manual_seed(0)
    model = build_model("tf_cnn", padding=0)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def project_dls(arrays: Any, seed: int) -> Any:
    """The project's loaders as a realistic recipe uses them: augmentation and training-set normalization on."""
    from tricks.data import cifar_dls

    return cifar_dls(arrays, bs=BS, val_bs=500, augment=True, normalize="train", seed=seed)


def arm_project(arrays: Any, args: argparse.Namespace, seed: int, hook: Hook, channels_last: bool = False) -> None:
    """The project path: cifar_dls + build_learner (the Learner `tricks.train.run` trains)."""
    import torch

    from tricks.train import Recipe, build_learner, seed_everything

    recipe = Recipe(model="tf_cnn", model_kwargs=(("padding", 0),), bs=BS, augment=True, normalize="train")
    dls = project_dls(arrays, seed)
    seed_everything(0)
    cbs = (channels_last_inputs(),) if channels_last else ()
    learn = build_learner(recipe, dls, extra_cbs=(*cbs, step_hook(hook, args.warmup, args.steps)))
    if channels_last:
        learn.model.to(memory_format=torch.channels_last)
    fit_steps(learn, args.warmup, args.steps)


def reflect_index(size: int, pad: int) -> Any:
    """For each position of an axis padded by `pad` on both sides, the source pixel it copies ("dcb|abcd|cba")."""
    import torch

    q = torch.arange(-pad, size + pad)
    q = torch.where(q < 0, -q, q)
    return torch.where(q > size - 1, 2 * (size - 1) - q, q)


def plain_batches(x: Any, y: Any, mean: Any, std: Any, seed: int, pad: int = 4) -> Iterator[tuple[Any, Any]]:
    """Endless shuffled epochs of (augmented, normalized float batch, labels), in plain torch: the project's ops."""
    import torch

    n, c, h, w = x.shape
    gen = torch.Generator().manual_seed(seed)
    scale = (1.0 / (255.0 * std)).view(1, c, 1, 1)  # (x/255 - mean)/std = x*scale - shift
    shift = (mean / std).view(1, c, 1, 1)
    rows_src, cols_src = reflect_index(h, pad), reflect_index(w, pad)
    ch, ar_h, ar_w = torch.arange(c).view(1, c, 1, 1), torch.arange(h), torch.arange(w)
    while True:
        perm = torch.randperm(n, generator=gen)
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        flip = torch.rand(n, generator=gen) < 0.5
        for i in range(0, n, BS):
            b = perm[i:i + BS]
            rows = rows_src[dy[i:i + BS, None] + ar_h]  # (B, H): source row of each output row
            cols = cols_src[dx[i:i + BS, None] + ar_w]  # (B, W)
            cols = torch.where(flip[i:i + BS, None], cols.flip(1), cols)
            xb = x[b.view(-1, 1, 1, 1), ch, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W) uint8
            yield torch.addcmul(-shift, xb.float(), scale), y[b]


def plain_stream(arrays: Any, seed: int) -> Iterator[tuple[Any, Any]]:
    """plain_batches over the training split, normalized by its statistics."""
    import torch

    mean, std = (torch.tensor(s, dtype=torch.float32) for s in arrays.stats)
    return plain_batches(arrays.x_train, arrays.y_train, mean, std, seed)


def arm_plain(arrays: Any, args: argparse.Namespace, seed: int, hook: Hook, channels_last: bool = False) -> None:
    """The plain loop: same model, same tensor augmentation, torch.optim.Adam, zero_grad/backward/step."""
    import torch
    import torch.nn.functional as F

    model = tf_cnn(channels_last).train()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    for i, (xb, yb) in enumerate(plain_stream(arrays, seed), start=1):
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        hook(len(yb), i > args.warmup)
        if i == args.warmup + args.steps:
            return


def stock_dls(folder: Path, workers: int | None) -> Any:
    """fastai's stock CIFAR-10 pipeline: class folders read by PIL, flips and normalization as batch transforms."""
    from fastai.vision.all import Flip, ImageDataLoaders, Normalize, cifar_stats

    kw = {} if workers is None else {"num_workers": workers}
    return ImageDataLoaders.from_folder(folder, train="train", valid="test", bs=BS, item_tfms=None,
                                        batch_tfms=[Flip(), Normalize.from_stats(*cifar_stats)], device="cpu",
                                        seed=0, **kw)


def arm_stock(dls: Any, args: argparse.Namespace, hook: Hook) -> None:
    """fastai's stock pipeline and a stock Learner (fastai Adam, CrossEntropyLossFlat, accuracy, no progress bar)."""
    from fastai.callback.progress import ProgressCallback
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy

    learn = Learner(dls, tf_cnn(), loss_func=CrossEntropyLossFlat(), metrics=accuracy,
                    cbs=[step_hook(hook, args.warmup, args.steps)])
    learn.remove_cb(ProgressCallback)
    fit_steps(learn, args.warmup, args.steps)
    gc.collect()  # the cancelled fit's loader iterator, and with it the workers, sits in a reference cycle


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


# ------------------------------------------------------------------------------------------------- data


def class_folders(source: Path) -> Path | None:
    """The folder holding `train/` and `test/` class folders for the stock arms: extracted once from an archive.

    An archive is extracted under the project's cache folder, keyed by its path, size and modification time, and
    reused by later runs. None when the source has no class-folder layout (torchvision's batches).
    """
    from tricks.data import cache_dir

    if source.is_file():
        st = source.stat()
        key = hashlib.sha256(f"{source.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:16]
        dest = cache_dir() / f"folders-{key}"
        if not dest.exists():
            tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
            print(f"extracting {source} to {dest} (once) ...", flush=True)
            with tarfile.open(source) as tar:
                tar.extractall(tmp, filter="data")
            try:
                os.replace(tmp, dest)
            except OSError:  # another run extracted it meanwhile
                shutil.rmtree(tmp, ignore_errors=True)
        source = dest
    for c in [source, *sorted(p for p in source.rglob("train") if p.is_dir())]:
        root = c if (c / "train").is_dir() else c.parent
        if (root / "train").is_dir() and (root / "test").is_dir():
            return root
    return None


# ------------------------------------------------------------------------------------------------- report


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def paired_ratio(runs: dict[str, list[float]], a: str, b: str) -> float | None:
    """Median over rounds of a/b, each ratio taken within one round."""
    return median([x / y for x, y in zip(runs.get(a, []), runs.get(b, []), strict=False) if y > 0])


def fmt(v: float | None, ratio: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}x" if ratio else f"{v:,.0f} img/s"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")  # fastai/torch deprecation notices would bury the numbers
    import fastai
    import numpy
    import torch

    from tricks.data import DataError, load_cifar10
    from tricks.train import CODE_VERSION

    torch.set_num_threads(args.threads)
    heap = keep_heap() if args.mallopt else "glibc defaults"
    source = Path(args.data).expanduser()
    try:
        arrays = load_cifar10(source)
    except DataError as e:
        print(f"throughput.py: {e}", file=sys.stderr)
        return 2

    stock, stock_note = None, ""
    if {"stock", "stock_loader"} & set(args.arms):
        try:
            folder = class_folders(source)
        except (OSError, tarfile.TarError) as e:
            folder, stock_note = None, f"{source} could not be extracted for the stock arms ({e})"
        if folder is None:
            stock_note = (stock_note or f"{source} has no class-folder layout") + ": stock arms skipped"
            print(stock_note, flush=True)
        else:
            stock = stock_dls(folder, args.stock_workers)

    # a block is one lockstep run of the in-process arms, or one solo arm; each returns {arm: Timing}
    lockstep = {
        "project": lambda r, h: arm_project(arrays, args, r, h),
        "plain": lambda r, h: arm_plain(arrays, args, r, h),
        "project_cl": lambda r, h: arm_project(arrays, args, r, h, channels_last=True),
        "plain_cl": lambda r, h: arm_plain(arrays, args, r, h, channels_last=True),
    }
    lockstep = {a: f for a, f in lockstep.items() if a in args.arms}
    solo: dict[str, Callable[[int], Timing]] = {
        "loader": lambda r: loader_speed(project_dls(arrays, r).train),
        "plain_loader": lambda r: loader_speed(plain_stream(arrays, r), limit=-(-len(arrays.x_train) // BS)),
        "project_solo": lambda r: run_solo(lambda h: arm_project(arrays, args, r, h)),
    }
    if stock is not None:
        solo["stock"] = lambda r: run_solo(lambda h: arm_stock(stock, args, h))
        solo["stock_loader"] = lambda r: loader_speed(stock.train, limit=args.warmup + args.steps, skip=args.warmup)
    blocks: list[tuple[str, Callable[[int], dict[str, Timing]]]] = []
    if lockstep:
        blocks.append(("lockstep", lambda r: run_lockstep({a: (lambda h, f=f: f(r, h)) for a, f in lockstep.items()},
                                                          args.warmup + args.steps)))
    blocks += [(a, lambda r, a=a: {a: solo[a](r)}) for a in SOLO_ARMS if a in args.arms and a in solo]

    load_start, faults_start = os.getloadavg(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    print(f"tf_cnn(padding=0), batch {BS}, {args.warmup} warm-up + {args.steps} timed steps, {args.rounds} round(s), "
          f"{args.threads} thread(s), torch {torch.__version__}, fastai {fastai.__version__}, {cpu_model()} "
          f"({os.cpu_count()} cpus), load average {load_start[0]:.2f}; malloc: {heap}; "
          f"lockstep: {', '.join(lockstep) or '-'}", flush=True)
    warm = argparse.Namespace(warmup=1, steps=args.warmup)
    in_thread(lambda: run_solo(lambda h: arm_plain(arrays, warm, 0, h)))  # untimed: warm the process
    timings: dict[str, list[Timing]] = {}
    for r in range(args.rounds):
        k = r % len(blocks)
        for _, block in blocks[k:] + blocks[:k]:
            for a, t in in_thread(partial(block, r)).items():
                timings.setdefault(a, []).append(t)
                print(f"  round {r + 1}/{args.rounds}  {a:<13} {fmt(t.img_per_s):>14}   "
                      f"(median step {fmt(t.median_img_per_s)})", flush=True)
            gc.collect()
    load_end, faults = os.getloadavg(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_start

    runs = {a: [t.img_per_s for t in ts] for a, ts in timings.items()}
    step_runs = {a: [t.median_img_per_s for t in ts] for a, ts in timings.items()}
    result: dict[str, Any] = {a: median(runs.get(a, [])) for a in ARMS}
    result.update({name: paired_ratio(runs, a, b) for name, a, b in RATIOS})
    met = {k: (None if result[k] is None or args.quick else bool(result[k] >= t)) for k, t in TARGETS.items()}

    print("\nmedians over rounds (ratios: median of same-round ratios); in brackets the same from median steps")
    for a in ARMS:
        if runs.get(a):
            print(f"  {a:<24} {fmt(result[a]):>14}  ({fmt(median(step_runs[a]))})   "
                  f"rounds: {', '.join(f'{v:,.0f}' for v in runs[a])}")
    for name, a, b in RATIOS:
        print(f"  {name:<24} {fmt(result[name], ratio=True):>14}  ({fmt(paired_ratio(step_runs, a, b), ratio=True)})"
              + ("" if name == f"{a}_vs_{b}" else f"   ({a} / {b})"))
    if args.quick:
        print("targets: not judged in --quick mode (too few steps)")
    else:
        parts = [f"{k} >= {t:g}{'' if k == 'loader' else 'x'}: "
                 f"{'not measured' if met[k] is None else ('MET' if met[k] else 'MISSED')}" for k, t in TARGETS.items()]
        print("targets: " + "; ".join(parts))
    if max(load_start[0], load_end[0]) > args.threads:
        print(f"note: load average {load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end on {os.cpu_count()} "
              "cpus: other processes competed for the cores; the lockstep ratios hold up best, absolute speeds and "
              "ratios to the solo arms least")

    result.update(
        unit="img/s", targets=TARGETS, targets_met=met, rounds=runs,
        median_step={a: median(v) for a, v in step_runs.items()},
        median_step_ratios={name: paired_ratio(step_runs, a, b) for name, a, b in RATIOS},
        lockstep=list(lockstep), n_rounds=args.rounds, steps=args.steps, warmup=args.warmup, bs=BS, quick=args.quick,
        threads=args.threads, malloc=heap, minor_page_faults=faults, cpu=cpu_model(), cpus=os.cpu_count(),
        loadavg_start=[round(v, 2) for v in load_start], loadavg_end=[round(v, 2) for v in load_end],
        torch=torch.__version__, fastai=fastai.__version__,
        numpy=numpy.__version__, python=platform.python_version(), tricks=CODE_VERSION,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        dataset=f"{arrays.source} (sha256 {arrays.digest[:12]})", model="tf_cnn(padding=0), 122,570 parameters",
        stock_tfms="item_tfms=None, batch_tfms=[Flip(), Normalize.from_stats(*cifar_stats)]",
        stock_workers=None if stock is None else stock.train.fake_l.num_workers, stock_note=stock_note,
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
