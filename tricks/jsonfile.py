"""Where `python -m tricks.apply --json` may write, and writing it whole.

The target is checked before any training: it must not be the run store (or its WAL files), the dataset, or any
existing file this program did not write (one whose JSON names no `tricks.apply/` schema), and its folder must be
writable. The file is written to a temporary name beside it and renamed into place, so a reader (or a full disk)
never sees half of it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

SCHEMA_PREFIX = "tricks.apply/"
_OWN_MAX_BYTES = 64 << 20  # a JSON this program wrote is far smaller; a bigger file is not read to check


class JsonTargetError(ValueError):
    """--json names a path it must not write: one sentence naming it."""


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def written_by_us(path: Path) -> bool:
    """Whether `path` holds JSON this program wrote (a `tricks.apply/N` schema)."""
    try:
        if path.stat().st_size > _OWN_MAX_BYTES:
            return False
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and str(doc.get("schema", "")).startswith(SCHEMA_PREFIX)


def check_target(target: str, protected: Mapping[str, str | os.PathLike | None]) -> Path:
    """The --json path, or JsonTargetError when it is one of `protected` (what -> path), a folder, a file this
    program did not write, or in a folder that does not exist or cannot be written."""
    p = Path(target).expanduser()
    for what, path in protected.items():
        if path is None:
            continue
        q = Path(path).expanduser()
        for twin in (q, q.with_name(q.name + "-wal"), q.with_name(q.name + "-shm"), q.with_name(q.name + "-journal")):
            if _same(p, twin):
                raise JsonTargetError(f"--json {target} is the {what}; give the JSON another file name")
    if p.is_dir():
        raise JsonTargetError(f"--json {target} is a folder; give a file name")
    parent = p.resolve().parent
    if not parent.is_dir():
        raise JsonTargetError(f"--json {target}: folder {parent} does not exist")
    if p.exists() and not written_by_us(p):
        raise JsonTargetError(f"--json {target} exists and was not written by tricks.apply; remove it or give "
                              "another file name")
    if not os.access(parent, os.W_OK):
        raise JsonTargetError(f"--json {target}: folder {parent} is not writable")
    return p
