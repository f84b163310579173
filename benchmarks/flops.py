"""FLOPs of a training image, counted by torch on the model itself, and this CPU's FP32 peak: the two numbers the
throughput benchmark's `peak_fraction` divides (`benchmarks/throughput.py`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


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

