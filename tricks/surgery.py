"""Rewriting a model's `nn.Sequential` containers in place: the walk and the splice the structural transforms of
`tricks.transforms` share (BN placement, dropout insertion, head changes)."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

__all__ = ["insert_before", "like", "sequentials", "set_children"]


def sequentials(model: nn.Module) -> list[nn.Sequential]:
    """Every nn.Sequential in the model, outermost first (listed before any rewrite, so rewriting is safe)."""
    return [m for m in model.modules() if isinstance(m, nn.Sequential)]


def set_children(seq: nn.Sequential, mods: list[nn.Module]) -> None:
    """Replace the Sequential's children in place: renumbered if they were numbered, else old names kept.

    New children take the container's training mode.
    """
    old = list(seq._modules.items())
    known = {id(m) for _, m in old}
    for m in mods:
        if id(m) not in known:  # a new layer takes the container's mode: dropout added to an eval model stays off
            m.train(seq.training)
    if all(k.isdigit() for k, _ in old):
        named = [(str(i), m) for i, m in enumerate(mods)]
    else:
        names = {id(m): k for k, m in old}
        taken = set(names.values())
        named = []
        for m in mods:
            name = names.get(id(m))
            if name is None:
                base, n = type(m).__name__.lower(), 0
                while f"{base}{n}" in taken:
                    n += 1
                name = f"{base}{n}"
                taken.add(name)
            named.append((name, m))
    seq._modules.clear()
    for k, m in named:
        seq._modules[k] = m


def insert_before(seq: nn.Sequential, inserts: Iterable[tuple[int, nn.Module]]) -> None:
    """Insert each module before the child at that (original) index."""
    at: dict[int, list[nn.Module]] = {}
    for i, m in inserts:
        at.setdefault(i, []).append(m)
    if not at:
        return
    mods = list(seq)
    out: list[nn.Module] = []
    for i in range(len(mods) + 1):
        out += at.get(i, [])
        if i < len(mods):
            out.append(mods[i])
    set_children(seq, out)


def like(new: nn.Module, ref: nn.Module) -> nn.Module:
    """`new` on the device and dtype of `ref`'s weight, so that a transform keeps a model where it is."""
    w = getattr(ref, "weight", None)
    return new if w is None else new.to(device=w.device, dtype=w.dtype)
