"""Small torch-free helpers that `tricks` and `claims` share: a JSON-safe copy of a value (NaN and infinities become
null), an exception on one line, the per-user cache folder (decoded datasets, the run store) and the CPU's name.

Importing this module imports nothing beyond the standard library.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import math
import numbers
import os
import platform
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def finite(x: Any) -> Any:
    """`x` made JSON-safe, recursively: NaN and infinities become None (json.dumps would write the non-standard NaN),
    tuples become lists, mapping keys strings, enums their values."""
    if isinstance(x, numbers.Real) and not isinstance(x, numbers.Integral):  # float, and NumPy's floats as floats
        return float(x) if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    if isinstance(x, enum.Enum):
        return finite(x.value)
    return x


def utc_stamp() -> str:
    """Now, in UTC, to the second (2026-12-07T18:36:46Z): the time stamp of reports and of the paper record."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def say(text: str) -> None:
    """One message for the user on stderr, flushed at once (progress and verdict lines of the command line)."""
    sys.stderr.write(text.rstrip() + "\n")
    sys.stderr.flush()


def one_line(e: BaseException, *, typed: bool = True, limit: int | None = None) -> str:
    """The exception on one line: "ExceptionType: message" (`typed=False`: the message alone), whitespace folded, cut
    to `limit` characters; the type's name when there is no message."""
    msg = " ".join(str(e).split())[:limit]
    if not msg:
        return type(e).__name__
    return f"{type(e).__name__}: {msg}" if typed else msg


def user_cache_dir() -> Path:
    """The platform's per-user cache folder (XDG on Linux, ~/Library/Caches on macOS, LOCALAPPDATA on Windows)."""
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def cache_dir() -> Path:
    """The project's cache folder: `$TRICKS_CACHE`, else `tricks/` in the user cache folder (`user_cache_dir`)."""
    if os.environ.get("TRICKS_CACHE"):
        return Path(os.environ["TRICKS_CACHE"]).expanduser()
    return user_cache_dir() / "tricks"


def cpu_model() -> str:
    """The CPU's model name where the system tells it (Linux's /proc/cpuinfo), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def autogroup_nice(nice: int, path: Path = Path("/proc/self/autogroup")) -> int | None:
    """Set the CPU priority of this process's session group; return the group's previous nice value, or None where
    there is no such group (not Linux, no autogroup) or it cannot be changed.

    Linux's autogroup scheduler shares the CPU fairly between sessions (a terminal, a `setsid` job) whatever their
    processes' nice values: a `nice -n 19` job in one session still took half of this 2-core machine from two busy
    processes in another (measured 2026-12-07). The group's own nice value is what makes it yield."""
    try:
        before = int(path.read_text().split()[-1])
        path.write_text(f"{nice}\n")
    except (OSError, ValueError, IndexError):
        return None
    return before


@functools.cache
def glibc() -> Any | None:
    """This process's C library through ctypes when it is glibc, else None (musl, macOS, Windows)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None or platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(name)


def trim_heap() -> bool:
    """Give the free pages of glibc's heap back to the system (`malloc_trim(0)`); False where there is no glibc.

    glibc 2.36 does not reuse the memory that torch's aligned allocations of a dense net's batches free (a few MB
    each): a he2016/naive paper run grew about 30 MB/s to 4.1 GB, and a suite worker to 20 GB, measured 2026-12-07.
    Trimming now and then keeps such a run flat; `benchmarks/heap.py` measures what it costs."""
    libc = glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder renamed into place (OSError on failure,
    with the earlier file, if any, left whole and no temporary file behind)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
