"""Every trick of the library, by name: importing this module imports each module that defines tricks (callbacks,
model transforms, the K-means data trick), which registers its own into `tricks.registry`; the lookups below then see
them all. `parse_spec("dropout_conv:p=0.3")` turns a command-line spec into a name and typed keyword arguments, with
one clear sentence on any error.
"""

from __future__ import annotations

from typing import Any

from tricks import callbacks, kmeans, transforms
from tricks.registry import _REGISTRY, Trick, TrickError, suggestions

MODULES = (callbacks, transforms, kmeans)  # the modules whose tricks the catalog lists


def all_tricks() -> list[Trick]:
    """Every registered trick, sorted by kind then name."""
    return sorted(_REGISTRY.values(), key=lambda t: (t.kind, t.name.lower()))


def get_trick(name: str) -> Trick:
    """The trick called `name`; an unknown name raises TrickError suggesting the closest names."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    lower = {k.lower(): k for k in _REGISTRY}
    if name.lower() in lower:
        return _REGISTRY[lower[name.lower()]]
    close = suggestions(name, list(_REGISTRY))
    hint = f"; did you mean {' or '.join(close)}?" if close else "; `python -m tricks.apply --list` lists them"
    raise TrickError(f"unknown trick '{name}'{hint}")


def parse_spec(text: str) -> tuple[str, dict[str, Any]]:
    """Parse `NAME[:k=v,...]` into the trick's canonical name and typed keyword arguments."""
    name, _, rest = text.strip().partition(":")
    name = name.strip()
    if not name:
        raise TrickError(f"option '{text}' is malformed: it needs a trick name before any ':'")
    trick = get_trick(name)
    kwargs: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        k, eq, v = item.partition("=")
        if not eq or not k.strip():
            raise TrickError(f"option '{text}' is malformed: '{item}' is not of the form key=value")
        k = k.strip()
        if k in kwargs:
            raise TrickError(f"option '{text}' is malformed: '{k}' is given twice")
        kwargs[k] = trick.param(k).convert(trick.name, v.strip())
    missing = [p.name for p in trick.params if p.required and p.name not in kwargs]
    if missing:
        raise TrickError(f"trick '{trick.name}' needs {', '.join(missing)} (e.g. {trick.name}:{missing[0]}=...)")
    return trick.name, kwargs


def build(text: str) -> Any:
    """Parse and build a trick spec in one step."""
    name, kwargs = parse_spec(text)
    return get_trick(name).build(**kwargs)
