"""NCHW vs channels_last training steps for each model family of the recipes: the measurement behind
`tricks.train.CHANNELS_LAST_CPU`.

For each family, two copies of the model (same init), one in each layout, take training steps in turn (order
alternated each step, so load from other processes hits both alike) on one synthetic batch at the recipe's batch
size: forward, cross-entropy, backward, torch.optim.Adam step. Printed: images per second of the median step per
layout and their ratio. ResNet9 takes a quarter of the steps (seconds each on a CPU).

Usage: `python benchmarks/layouts.py [--steps 30] [--threads 1]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

# (label, model, options, transform, batch size of its recipes)
FAMILIES = (("tf_cnn padding 0 (doc 000)", "tf_cnn", {"padding": 0}, None, 64),
            ("tf_cnn padding 1 (doc 001 baseline)", "tf_cnn", {"padding": 1}, None, 64),
            ("tf_cnn padding 1 + bn_before_relu", "tf_cnn", {"padding": 1}, "bn_before_relu", 64),
            ("tf_cnn padding 1, residual (doc 001)", "tf_cnn", {"padding": 1, "residual": True}, None, 64),
            ("pal2021_code_net (doc 000 as run)", "pal2021_code_net", {}, None, 64),
            ("conv_net (doc 003)", "conv_net", {}, None, 256),
            ("conv_bn_net (doc 003, BnLayer)", "conv_bn_net", {}, None, 256),
            ("jovian_cnn (doc 004)", "jovian_cnn", {}, None, 128),
            ("resnet9 (doc 004)", "resnet9", {}, None, 32))


def step_times(name: str, options: dict, transform: str | None, bs: int, steps: int) -> dict[bool, list[float]]:
    """Seconds of each timed step, by layout (True: channels_last), the layouts taking turns."""
    import torch
    import torch.nn.functional as F

    from tricks.catalog import get_trick
    from tricks.models import build_model

    arms = {}
    for cl in (False, True):
        torch.manual_seed(0)
        model = build_model(name, **options)
        if transform:
            model = get_trick(transform).build()(model)
        model = model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
        arms[cl] = (model, torch.optim.Adam(model.parameters(), 1e-3))
    x, y = torch.randn(bs, 3, 32, 32), torch.randint(0, 10, (bs,))
    xs = {False: x, True: x.contiguous(memory_format=torch.channels_last)}
    times: dict[bool, list[float]] = {False: [], True: []}
    for s in range(steps + 2):  # two untimed warm-up steps
        for cl in ((False, True) if s % 2 else (True, False)):
            model, opt = arms[cl]
            t0 = time.perf_counter()
            loss = F.cross_entropy(model(xs[cl]), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if s >= 2:
                times[cl].append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30, help="timed steps per layout (default 30)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1, as a suite worker)")
    args = p.parse_args(argv)
    if args.steps < 1 or args.threads < 1:
        p.error("--steps and --threads must be at least 1")
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(args.threads)
    print(f"{'family':<38} batch   NCHW img/s   channels_last img/s   cl / NCHW")
    for label, name, options, transform, bs in FAMILIES:
        n = max(3, args.steps // 4) if name == "resnet9" else args.steps
        t = step_times(name, options, transform, bs, n)
        nchw, cl = (bs / statistics.median(t[k]) for k in (False, True))
        print(f"{label:<38} {bs:>5} {nchw:>12,.0f} {cl:>21,.0f} {cl / nchw:>10.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
