"""Training throughput of the project's CIFAR-10 path against a plain PyTorch loop, its own NCHW path and fastai's
stock pipeline, on a CPU; and of several runs sharing one GPU (`--gpu`).

What is measured (images per second, batch 64, doc 001's baseline net: `tf_cnn(padding=1)`, the TF-tutorial CNN,
122,570 parameters, float32, on the CPU with `--threads` threads, default 1 as a suite worker runs):

- `project`: `cifar_dls(arrays, augment=True, normalize="train")` (reflect-pad 4 + random crop + flip + normalize on
  whole batches of the uint8 tensors) and the project's Learner (`tricks.train.build_learner` of doc 001's baseline
  recipe with augmentation and normalization on: fastai Adam, CrossEntropyLossFlat, accuracy, DivergenceGuard,
  ThroughputRecorder, no progress bar), `learn.fit(.., 1e-3)`. build_learner chooses the layout: channels_last for
  this family on a CPU (`tricks.train.CHANNELS_LAST_CPU`), so `project` is also today's `project_cl` key.
- `project_nchw`: the same with `build_learner(..., channels_last=False)`: the project path as it was.
- `plain`, `plain_cl`: the same model and the same tensor augmentation and normalization, written out in plain torch
  (randperm, one gather per batch, addcmul), `torch.optim.Adam`, a zero_grad/forward/backward/step loop; NCHW, and
  with the model and each batch in channels_last.
- `stock`: fastai's own folder pipeline as it was benchmarked before: `ImageDataLoaders.from_folder(<extracted
  archive>, valid="test", bs=64, item_tfms=None, batch_tfms=[Flip(), Normalize.from_stats(*cifar_stats)])` (PIL
  decoding of each JPEG, fastai's default worker count), a stock `Learner` (fastai Adam, CrossEntropyLossFlat,
  accuracy). It does less augmentation than the project (no crop).
- `stock_aug`: the fair stock baseline: the same augmentation as the project as fastai item transforms,
  `item_tfms=[CropPad(40, pad_mode=PadMode.Reflection), FlipItem(0.5), RandomCrop(32)]` (reflect-pad 4, flip, random
  32 crop), `batch_tfms=[Normalize.from_stats(*cifar_stats)]`, fastai's default workers, a stock Learner.
- `project_solo`: the `project` arm again, run alone like the stock arms; `project_vs_stock` and
  `project_vs_stock_aug` are project_solo / stock and project_solo / stock_aug, arms run under the same condition.
- families: for the BN (`bn_before_relu`) and residual nets of doc 001 and doc 003's ConvBnNet, each recipe (with
  augmentation and normalization on, at its own batch size) in channels_last and in NCHW, the two in lockstep;
  `<family>_cl_vs_nchw` is their ratio and `<family>_project_vs_nchw` the project's chosen layout against NCHW.
- `concurrent`: two worker processes of one thread each (as the suite runs them) training the `project` arm at the
  same time: total img/s over their common timed window, and `peak_fraction`: that times the FLOPs of one training
  image (forward and backward convolutions and matmuls, counted by `torch.utils.flop_counter.FlopCounterMode` on
  the model itself) over this CPU's FP32 peak (cores x clock x FP32 FLOPs a cycle from its vector units, see
  `cpu_peak`). `sgemm_fraction` is the same against a 1024^3 sgemm timed in both workers at once.
- `loader`: the project's training loader alone (augmentation and normalization on, no model), one full epoch of
  50,000 images; `plain_loader` the plain-torch batches alone, also a full epoch; `stock_loader` fastai's stock
  loader alone over `steps` batches after `warmup` ones.
- `--gpu`: instead of all the above, N = 1, 4, 16 (`--gpu-workers`) worker processes sharing one GPU, each training
  the project arm with the data resident on the GPU; the aggregate img/s for each N. Without CUDA it prints that it
  is skipped, and why, and exits 0.

How: every training arm runs `warmup` optimizer steps, then `steps` timed ones (a callback ends the Learners' fits
there and skips validation). A step's time runs from the end of the previous step to the end of this one: loading,
forward, loss, backward, optimizer step and, for the Learners, every callback; Learner construction, worker start-up
and teardown are outside it. The in-process arms (project, project_nchw, plain, plain_cl; each family's pair) run in
*lockstep*: each in its own thread, passing one baton, step s of every arm (in an order rotated by s) before step
s + 1 of any, so a burst of load from other processes on a shared machine hits them alike; their ratios are side by
side to within one step. The stock arms cannot join the lockstep (their loader workers would go on decoding while
the other arms run) and run alone, like the loaders and the concurrent workers, between the lockstep blocks. Every
arm runs in a worker thread (see `in_thread`). Everything repeats `--rounds` times, the order rotated each round. A
speed is the median over rounds; a ratio is the median over rounds of the ratio of two arms in the same round. In
brackets (and under `median_step` in the JSON) the same from each arm's median step instead of its summed time:
blind to stalls, so not the throughput, but a check on noise.

Evidence for the design: on a 2-core machine that other processes loaded to a load average of 4 (2026-11-25), 150
steps per arm with only round-level alternation gave the same arm 140, 285 and 259 img/s in three rounds, and
project_cl 1,826 then 137 (a 2-thread OpenMP team slows ten-fold while a core is taken); the same-round ratio of two
arms run a minute apart then says nothing.

Targets (from the project's issue 10): project >= 0.95x plain_cl, project >= 1.3x project_nchw, project_solo >= 1.5x
stock_aug, loader >= 20,000 img/s. The script exits 0 whether or not they are met; one line says which were. The
last line of stdout is one JSON object with every number and the provenance (versions, threads, CPU, load average,
steps, date, dataset digest).

Usage: `python benchmarks/throughput.py [--data PATH] [--steps 150] [--family-steps 40] [--rounds 3] [--threads 1]
[--quick] [--gpu [--gpu-workers 1,4,16]]` (`nox -s bench -- --quick`). `--data` defaults to `$TRICKS_DATA`; the stock
arms need the class-folder layout (the archive is extracted once under the project's cache folder, `$TRICKS_CACHE`,
and reused).
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
# from the project's issue 10 (the earlier project >= 5x stock was withdrawn: set against a mis-measured stock figure)
TARGETS = {"project_vs_plain_cl": 0.95, "project_vs_nchw": 1.3, "project_vs_stock_aug": 1.5, "loader": 20_000.0}
LOCKSTEP_ARMS = ("project", "project_nchw", "plain", "plain_cl")  # in-process: run step by step in turn
# doc 001's BN and residual nets and doc 003's ConvBnNet: (family, recipe), each recipe with augmentation on
FAMILIES = (("bn", "pal2021b/bn_before_relu"), ("residual", "pal2021b/residual"),
            ("conv_bn_net", "fastai2018/conv_bn_net"))
FAMILY_ARMS = tuple(f"{f}_{layout}" for f, _ in FAMILIES for layout in ("cl", "nchw"))
SOLO_ARMS = ("stock", "stock_aug", "project_solo", "loader", "plain_loader", "stock_loader", "concurrent")
ARMS = LOCKSTEP_ARMS + FAMILY_ARMS + SOLO_ARMS
GPU_WORKERS = (1, 4, 16)
# (name, a, b): name = a / b in the same round. The stock arm runs alone, so it is compared with the project's arm
# run alone too: an arm in the lockstep shares the caches and the turn with three others, and on 2026-12-02 the same
# project arm gave 1,510 img/s in the lockstep and 2,187 alone in one run, 2,031 and 1,740 in the next: a
# lockstep-vs-solo ratio mixes two conditions.
# The old keys keep their names: project_cl is the project arm (channels_last is now its layout), so
# project_cl_vs_project is project / project_nchw and project_cl_vs_plain_cl is project / plain_cl.
RATIOS = (("project_vs_plain_cl", "project", "plain_cl"), ("project_vs_nchw", "project", "project_nchw"),
          ("project_vs_stock_aug", "project_solo", "stock_aug"), ("project_vs_stock", "project_solo", "stock"),
          ("project_vs_plain", "project", "plain"), ("plain_cl_vs_plain", "plain_cl", "plain"),
          ("project_cl_vs_project", "project", "project_nchw"), ("project_cl_vs_plain_cl", "project", "plain_cl"),
          ("project_nchw_vs_plain", "project_nchw", "plain"), ("loader_vs_plain_loader", "loader", "plain_loader"),
          *((f"{f}_cl_vs_nchw", f"{f}_cl", f"{f}_nchw") for f, _ in FAMILIES))

Hook = Callable[[int, bool], None]  # called by an arm at the end of each step: (images in the step, timed or not)


# ------------------------------------------------------------------------------------------------- options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("TRICKS_DATA") or None,
                   help="CIFAR-10 source: class-folder archive or folder (default $TRICKS_DATA)")
    p.add_argument("--steps", type=int, default=150, help="timed optimizer steps per training arm (default 150)")
    p.add_argument("--family-steps", type=int, default=40,
                   help="timed steps of each family arm (default 40: the residual net and ConvBnNet are slow)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before the timed ones (default 5)")
    p.add_argument("--rounds", type=int, default=3, help="repetitions of every arm, in rotated order (default 3)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1, as a suite worker)")
    p.add_argument("--stock-workers", type=int, default=None,
                   help="num_workers of the stock fastai loaders (default: fastai's own, min(16, cpus))")
    p.add_argument("--mallopt", action="store_true",
                   help="before any arm, stop glibc malloc from returning freed memory to the OS (see keep_heap)")
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms to run (default all)")
    p.add_argument("--quick", action="store_true",
                   help="smoke mode: 10 steps after 2 warm-up steps, 1 round (checks the path, judges nothing)")
    p.add_argument("--gpu", action="store_true",
                   help="only the GPU arm: N worker processes sharing one GPU (skipped with a message without CUDA)")
    p.add_argument("--gpu-workers", default=",".join(map(str, GPU_WORKERS)),
                   help="worker counts of the GPU arm (default 1,4,16)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.rounds = 10, 2, 1
        args.family_steps = min(args.family_steps, 5)
    try:
        args.gpu_workers = [int(n) for n in args.gpu_workers.split(",") if n.strip()]
    except ValueError:
        p.error(f"--gpu-workers takes comma-separated counts, not {args.gpu_workers!r}")
    if not args.gpu_workers or min(args.gpu_workers) < 1:
        p.error("--gpu-workers needs counts of at least 1")
    for name in ("steps", "family_steps", "warmup", "rounds", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, not {getattr(args, name)}")
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


def fit_steps(learn: Any, warmup: int, steps: int) -> None:
    """Fit `learn` (which holds a StepHook) for warmup + steps steps, across epochs if need be."""
    learn.fit(-(-(warmup + steps) // len(learn.dls.train)) + 1, LR)
    done = next(cb.n for cb in learn.cbs if type(cb).__name__ == "StepHook")
    if done < warmup + steps:
        raise RuntimeError(f"the fit ended after {done} steps, before {warmup + steps}")


# ------------------------------------------------------------------------------------------------- the arms


def baseline_recipe() -> Any:
    """Doc 001's baseline recipe with augmentation and training-set normalization on (the data path does its work)."""
    from dataclasses import replace

    from tricks.recipes import RECIPES

    return replace(RECIPES["pal2021b/baseline"], augment=True, normalize="train")


def family_recipe(name: str) -> Any:
    """A family's recipe with augmentation and training-set normalization on, at its own batch size."""
    from dataclasses import replace

    from tricks.recipes import RECIPES

    return replace(RECIPES[name], augment=True, normalize="train")


def tf_cnn(channels_last: bool = False) -> Any:
    """The benchmarked model (doc 001's baseline net), initialized from seed 0 in every arm."""
    import torch

    from tricks.models import build_model

    torch.manual_seed(0)
    model = build_model("tf_cnn", padding=1)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def project_dls(arrays: Any, seed: int, recipe: Any = None, device: Any = None) -> Any:
    """The project's loaders as a realistic recipe uses them: augmentation and training-set normalization on."""
    from tricks.loaders import cifar_dls

    bs = BS if recipe is None else recipe.bs
    return cifar_dls(arrays, bs=bs, val_bs=500, augment=True, normalize="train", seed=seed, device=device)


def arm_project(arrays: Any, args: argparse.Namespace, seed: int, hook: Hook, channels_last: bool | None = None,
                recipe: Any = None, steps: int | None = None, device: Any = None) -> None:
    """The project path: cifar_dls + build_learner (the Learner `tricks.train.run` trains); `channels_last` None lets
    build_learner choose the layout, as a suite run does."""
    from tricks.train import build_learner, seed_everything

    recipe = recipe or baseline_recipe()
    dls = project_dls(arrays, seed, recipe, device)
    seed_everything(0)
    learn = build_learner(recipe, dls, channels_last=channels_last,
                          extra_cbs=(step_hook(hook, args.warmup, steps or args.steps),))
    fit_steps(learn, args.warmup, steps or args.steps)


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


STOCK_TFMS = "item_tfms=None, batch_tfms=[Flip(), Normalize.from_stats(*cifar_stats)]"
STOCK_AUG_TFMS = ("item_tfms=[CropPad(40, pad_mode=PadMode.Reflection), FlipItem(0.5), RandomCrop(32)], "
                  "batch_tfms=[Normalize.from_stats(*cifar_stats)]")


def stock_dls(folder: Path, workers: int | None, augment: bool = False) -> Any:
    """fastai's stock CIFAR-10 pipeline: class folders read by PIL; `augment` False: flips and normalization as batch
    transforms (the old stock arm); True: the project's augmentation as item transforms (reflect-pad 4, flip, random
    32 crop, on each PIL image) and normalization."""
    from fastai.vision.all import ImageDataLoaders, Normalize, cifar_stats
    from fastai.vision.augment import CropPad, Flip, FlipItem, PadMode, RandomCrop

    kw = {} if workers is None else {"num_workers": workers}
    if augment:
        item = [CropPad(40, pad_mode=PadMode.Reflection), FlipItem(0.5), RandomCrop(32)]
        batch = [Normalize.from_stats(*cifar_stats)]
    else:
        item, batch = None, [Flip(), Normalize.from_stats(*cifar_stats)]
    return ImageDataLoaders.from_folder(folder, train="train", valid="test", bs=BS, item_tfms=item, batch_tfms=batch,
                                        device="cpu", seed=0, **kw)


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


# ------------------------------------------------------------------------------------------ worker processes


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


def train_flops_per_image(recipe: Any) -> float:
    """FLOPs of one training image of `recipe`'s model (forward and backward), counted by torch's FlopCounterMode on
    a batch of the recipe's size: convolutions and matmuls (the elementwise ops and the optimizer are not counted)."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from tricks.models import build_model

    torch.manual_seed(0)
    model = build_model(recipe.model, **dict(recipe.model_kwargs)).train()
    x, y = torch.randn(recipe.bs, 3, 32, 32), torch.randint(0, 10, (recipe.bs,))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / recipe.bs


def cpu_peak(cpuinfo: str = "/proc/cpuinfo") -> tuple[float, str]:
    """This CPU's FP32 peak in FLOP/s (physical cores x clock x FP32 FLOPs a cycle of its widest FMA units), and how
    it was reckoned. The clock is /proc/cpuinfo's (a VM's nominal clock; turbo would raise the peak)."""
    cores: set[tuple[str, str]] = set()
    mhz, flags, phys, core = 0.0, set(), "0", ""
    try:
        for line in [*Path(cpuinfo).read_text().splitlines(), ""]:
            key, _, value = (t.strip() for t in line.partition(":"))
            if key == "physical id":
                phys = value
            elif key == "core id":
                core = value
            elif key == "cpu MHz":
                mhz = max(mhz, float(value))
            elif key == "flags":
                flags = set(value.split())
            elif not key and core:
                cores.add((phys, core))
    except (OSError, ValueError):
        pass
    n = len(cores) or os.cpu_count() or 1
    if "avx512f" in flags:
        per_cycle, isa = 64, "AVX-512 (2 FMA units x 16 lanes x 2)"
    elif {"avx2", "fma"} <= flags:
        per_cycle, isa = 32, "AVX2 + FMA (2 FMA units x 8 lanes x 2)"
    elif "avx" in flags:
        per_cycle, isa = 16, "AVX (8-lane add + multiply)"
    else:
        per_cycle, isa = 8, "SSE (4-lane add + multiply)"
    if not mhz:
        return float("nan"), "clock unknown (no cpu MHz in /proc/cpuinfo)"
    peak = n * mhz * 1e6 * per_cycle
    return peak, f"{n} cores x {mhz / 1000:.2f} GHz x {per_cycle} FP32 FLOPs/cycle ({isa}) = {peak / 1e9:.0f} GFLOP/s"


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
    from tricks.plain import cache_dir

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




def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def paired_ratio(runs: dict[str, list[float]], a: str, b: str) -> float | None:
    """Median over rounds of a/b, each ratio taken within one round."""
    return median([x / y for x, y in zip(runs.get(a, []), runs.get(b, []), strict=False) if y > 0])


def fmt(v: float | None, ratio: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}x" if ratio else f"{v:,.0f} img/s"


def provenance(args: argparse.Namespace) -> dict[str, Any]:
    """Versions, machine and date of a run."""
    import fastai
    import numpy
    import torch

    from tricks.plain import cpu_model
    from tricks.recipe import CODE_VERSION

    return dict(torch=torch.__version__, fastai=fastai.__version__, numpy=numpy.__version__,
                python=platform.python_version(), tricks=CODE_VERSION, cpu=cpu_model(), cpus=os.cpu_count(),
                threads=args.threads, date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def gpu_main(args: argparse.Namespace, source: Path) -> int:
    """The --gpu arm: N worker processes sharing one GPU, aggregate img/s for each N; skipped without CUDA."""
    import torch

    result: dict[str, Any] = {"gpu": None, "gpu_workers": {}, "steps": args.steps, "warmup": args.warmup, "bs": BS,
                              "model": "tf_cnn(padding=1), doc 001's baseline recipe + augmentation",
                              **provenance(args)}
    if not torch.cuda.is_available():
        result["gpu_skipped"] = "no CUDA device (torch.cuda.is_available() is False)"
        print("--gpu: skipped: no CUDA device here (torch.cuda.is_available() is False); GPU figures: not measured",
              flush=True)
        print(json.dumps(result), flush=True)
        return 0
    result["gpu"] = torch.cuda.get_device_name(0)
    print(f"--gpu: {result['gpu']}, workers {args.gpu_workers}, {args.warmup} warm-up + {args.steps} timed steps "
          f"each, batch {BS}, data and augmentation on the GPU", flush=True)
    for n in args.gpu_workers:
        try:
            r = run_workers(n, str(source), "cuda", args.threads, args.warmup, args.steps)
        except RuntimeError as e:
            print(f"  {n:>3} workers: failed: {e}", flush=True)
            result["gpu_workers"][str(n)] = None
            continue
        result["gpu_workers"][str(n)] = r["img_per_s"]
        print(f"  {n:>3} worker(s): {fmt(r['img_per_s']):>14} in all "
              f"({fmt(statistics.median(r['per_worker']))} a worker, median)", flush=True)
    print(json.dumps(result), flush=True)
    return 0


def concurrent_arm(source: Path, args: argparse.Namespace, extras: list[dict[str, Any]]) -> Timing:
    """Two one-thread worker processes training the project arm at once, as the suite runs them; the pair's total as
    one Timing (their images over their common window), the rest (per worker, sgemm) appended to `extras`."""
    r = run_workers(2, str(source), "cpu", 1, args.warmup, args.steps, sgemm=True)
    extras.append(r)
    timing = Timing()
    timing.add(r["images"], r["window_s"])
    return timing


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")  # fastai/torch deprecation notices would bury the numbers
    import fastai
    import torch

    from tricks.cifar import DataError, load_cifar10
    from tricks.plain import cpu_model
    from tricks.train import memory_format_for

    torch.set_num_threads(args.threads)
    heap = keep_heap() if args.mallopt else "glibc defaults"
    source = Path(args.data).expanduser()
    try:
        arrays = load_cifar10(source)
    except DataError as e:
        print(f"throughput.py: {e}", file=sys.stderr)
        return 2
    if args.gpu:
        return gpu_main(args, source)

    stock, stock_aug, stock_note = None, None, ""
    if {"stock", "stock_aug", "stock_loader"} & set(args.arms):
        try:
            folder = class_folders(source)
        except (OSError, tarfile.TarError) as e:
            folder, stock_note = None, f"{source} could not be extracted for the stock arms ({e})"
        if folder is None:
            stock_note = (stock_note or f"{source} has no class-folder layout") + ": stock arms skipped"
            print(stock_note, flush=True)
        else:
            stock = stock_dls(folder, args.stock_workers)
            stock_aug = stock_dls(folder, args.stock_workers, augment=True)

    # a block is one lockstep run of in-process arms, or one solo arm; each returns {arm: Timing}
    lockstep = {
        "project": lambda r, h: arm_project(arrays, args, r, h),
        "project_nchw": lambda r, h: arm_project(arrays, args, r, h, channels_last=False),
        "plain": lambda r, h: arm_plain(arrays, args, r, h),
        "plain_cl": lambda r, h: arm_plain(arrays, args, r, h, channels_last=True),
    }
    lockstep = {a: f for a, f in lockstep.items() if a in args.arms}
    family_recipes = {f: family_recipe(name) for f, name in FAMILIES}
    concurrent_extras: list[dict[str, Any]] = []
    solo: dict[str, Callable[[int], Timing]] = {
        "loader": lambda r: loader_speed(project_dls(arrays, r).train),
        "plain_loader": lambda r: loader_speed(plain_stream(arrays, r), limit=-(-len(arrays.x_train) // BS)),
        "project_solo": lambda r: run_solo(lambda h: arm_project(arrays, args, r, h)),
        "concurrent": lambda r: concurrent_arm(source, args, concurrent_extras),
    }
    if stock is not None:
        solo["stock"] = lambda r: run_solo(lambda h: arm_stock(stock, args, h))
        solo["stock_aug"] = lambda r: run_solo(lambda h: arm_stock(stock_aug, args, h))
        solo["stock_loader"] = lambda r: loader_speed(stock.train, limit=args.warmup + args.steps, skip=args.warmup)
    blocks: list[tuple[str, Callable[[int], dict[str, Timing]]]] = []
    if lockstep:
        blocks.append(("lockstep", lambda r: run_lockstep({a: (lambda h, f=f: f(r, h)) for a, f in lockstep.items()},
                                                          args.warmup + args.steps)))
    for fam, rec in family_recipes.items():
        pair = {f"{fam}_{layout}": (lambda r, h, rec=rec, cl=(layout == "cl"): arm_project(
            arrays, args, r, h, channels_last=cl, recipe=rec, steps=args.family_steps)) for layout in ("cl", "nchw")}
        pair = {a: f for a, f in pair.items() if a in args.arms}
        if pair:
            blocks.append((fam, lambda r, pair=pair: run_lockstep(
                {a: (lambda h, f=f: f(r, h)) for a, f in pair.items()}, args.warmup + args.family_steps)))
    blocks += [(a, lambda r, a=a: {a: solo[a](r)}) for a in SOLO_ARMS if a in args.arms and a in solo]

    load_start, faults_start = os.getloadavg(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    print(f"doc 001's baseline tf_cnn(padding=1), batch {BS}, {args.warmup} warm-up + {args.steps} timed steps "
          f"({args.family_steps} for the families), {args.rounds} round(s), {args.threads} thread(s), "
          f"torch {torch.__version__}, fastai {fastai.__version__}, {cpu_model()} ({os.cpu_count()} cpus), "
          f"load average {load_start[0]:.2f}; malloc: {heap}; lockstep: {', '.join(lockstep) or '-'}", flush=True)
    warm = argparse.Namespace(warmup=1, steps=args.warmup)
    in_thread(lambda: run_solo(lambda h: arm_plain(arrays, warm, 0, h)))  # untimed: warm the process
    timings: dict[str, list[Timing]] = {}
    for r in range(args.rounds):
        k = r % len(blocks)
        for _, block in blocks[k:] + blocks[:k]:
            for a, t in in_thread(partial(block, r)).items():
                timings.setdefault(a, []).append(t)
                print(f"  round {r + 1}/{args.rounds}  {a:<16} {fmt(t.img_per_s):>14}   "
                      f"(median step {fmt(t.median_img_per_s)})", flush=True)
            gc.collect()
    load_end, faults = os.getloadavg(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_start

    runs = {a: [t.img_per_s for t in ts] for a, ts in timings.items()}
    step_runs = {a: [t.median_img_per_s for t in ts] for a, ts in timings.items()}
    result: dict[str, Any] = {a: median(runs.get(a, [])) for a in ARMS}
    result["project_cl"] = result["project"]  # today's key: the project arm, whose layout is now channels_last
    result.update({name: paired_ratio(runs, a, b) for name, a, b in RATIOS})

    # the families: channels_last / NCHW, and the project's own choice (build_learner's layout) / NCHW
    families: dict[str, Any] = {}
    for fam, rec in family_recipes.items():
        chosen = "channels_last" if memory_format_for(rec, "cpu") == torch.channels_last else "nchw"
        cl_ratio = result.get(f"{fam}_cl_vs_nchw")
        families[fam] = {"recipe": dict(FAMILIES)[fam], "bs": rec.bs, "cl_vs_nchw": cl_ratio, "project_layout": chosen,
                         "project_vs_nchw": cl_ratio if chosen == "channels_last" or cl_ratio is None else 1.0}
        result[f"{fam}_project_vs_nchw"] = families[fam]["project_vs_nchw"]

    # two concurrent workers against the CPU's FP32 peak, with FLOPs counted here
    flops = train_flops_per_image(baseline_recipe())
    peak, peak_note = cpu_peak()
    sgemm = median([e["sgemm_gflops"] for e in concurrent_extras])
    total = result.get("concurrent")
    result["peak_fraction"] = None if total is None or peak != peak else total * flops / peak
    result["sgemm_fraction"] = None if total is None or not sgemm else total * flops / (sgemm * 1e9)
    met = {k: (None if result[k] is None or args.quick else bool(result[k] >= t)) for k, t in TARGETS.items()}

    print("\nmedians over rounds (ratios: median of same-round ratios); in brackets the same from median steps")
    for a in ARMS:
        if runs.get(a):
            print(f"  {a:<26} {fmt(result[a]):>14}  ({fmt(median(step_runs[a]))})   "
                  f"rounds: {', '.join(f'{v:,.0f}' for v in runs[a])}")
    for name, a, b in RATIOS:
        print(f"  {name:<26} {fmt(result[name], ratio=True):>14}  ({fmt(paired_ratio(step_runs, a, b), ratio=True)})"
              + ("" if name == f"{a}_vs_{b}" else f"   ({a} / {b})"))
    for fam, v in families.items():
        print(f"  {fam + '_project_vs_nchw':<26} {fmt(v['project_vs_nchw'], ratio=True):>14}   "
              f"(project layout {v['project_layout']}; {v['recipe']}, batch {v['bs']})")
    print(f"  FLOPs per training image   {flops / 1e6:,.1f} MFLOP (FlopCounterMode: forward + backward convs/matmuls)")
    print(f"  CPU FP32 peak              {peak_note}")
    if total is not None:
        print(f"  two workers                {fmt(total)} = {total * flops / 1e9:.1f} GFLOP/s: "
              f"{100 * (result['peak_fraction'] or float('nan')):.1f} % of peak, "
              f"{100 * (result['sgemm_fraction'] or float('nan')):.1f} % of two concurrent 1-thread sgemms "
              f"({sgemm or float('nan'):.1f} GFLOP/s)")
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
        unit="img/s", targets=TARGETS, targets_met=met, rounds=runs, families=families,
        median_step={a: median(v) for a, v in step_runs.items()},
        median_step_ratios={name: paired_ratio(step_runs, a, b) for name, a, b in RATIOS},
        flops_per_image=flops, cpu_peak_flops=peak, cpu_peak_note=peak_note, sgemm_gflops=sgemm,
        concurrent_per_worker=[e["per_worker"] for e in concurrent_extras],
        lockstep=list(lockstep), n_rounds=args.rounds, steps=args.steps, family_steps=args.family_steps,
        warmup=args.warmup, bs=BS, quick=args.quick, malloc=heap, minor_page_faults=faults,
        loadavg_start=[round(v, 2) for v in load_start], loadavg_end=[round(v, 2) for v in load_end],
        dataset=f"{arrays.source} (sha256 {arrays.digest[:12]})",
        model="tf_cnn(padding=1) (doc 001's baseline), 122,570 parameters", stock_tfms=STOCK_TFMS,
        stock_aug_tfms=STOCK_AUG_TFMS, stock_workers=None if stock is None else stock.train.fake_l.num_workers,
        stock_note=stock_note, **provenance(args),
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
