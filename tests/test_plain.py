"""tricks.plain: the JSON-safe copy, the one-line exception text, the cache folders and the session group's CPU
priority."""

from __future__ import annotations

import enum
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tricks.plain import cache_dir, finite, glibc, one_line, user_cache_dir


class Colour(enum.Enum):
    RED = float("nan")


def test_finite_turns_every_nan_and_infinity_into_none_at_any_depth():
    out = finite({"a": [1.0, math.nan, (math.inf, -math.inf)], 2: {"b": Colour.RED, "c": "x"}})
    assert out == {"a": [1.0, None, [None, None]], "2": {"b": None, "c": "x"}}
    json.dumps(out, allow_nan=False)  # standard JSON


def test_finite_writes_numpy_floats_as_floats_and_keeps_integers():
    import numpy as np

    out = finite({"acc": np.float32(0.5), "loss": np.float64("nan"), "n": 3, "flag": True})
    assert out == {"acc": 0.5, "loss": None, "n": 3, "flag": True}
    assert type(out["acc"]) is float
    json.dumps(out, allow_nan=False)


def test_one_line_folds_whitespace_and_names_the_type():
    e = ValueError("bad\n  value\tthere")
    assert one_line(e) == "ValueError: bad value there"
    assert one_line(e, typed=False, limit=7) == "bad val"
    assert one_line(KeyboardInterrupt()) == "KeyboardInterrupt"


def test_the_cache_folder_is_tricks_cache_else_tricks_in_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRICKS_CACHE", str(tmp_path / "tc"))
    assert cache_dir() == tmp_path / "tc"
    monkeypatch.delenv("TRICKS_CACHE")
    assert cache_dir() == user_cache_dir() / "tricks"


def test_autogroup_nice_sets_the_session_groups_priority_and_returns_the_old_one(tmp_path):
    from tricks.plain import autogroup_nice

    fake = tmp_path / "autogroup"
    fake.write_text("/autogroup-61 nice 0\n")
    assert autogroup_nice(19, fake) == 0 and fake.read_text() == "19\n"
    assert autogroup_nice(19, tmp_path / "missing") is None  # not Linux, or no autogroup
    fake.write_text("garbage\n")
    assert autogroup_nice(19, fake) is None


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="no Linux autogroup here")
def test_autogroup_nice_lowers_a_real_session_group():
    """In a session of its own (as a campaign started with setsid), so the test runner's group is left alone."""
    code = ("from pathlib import Path; from tricks.plain import autogroup_nice; "
            "print(autogroup_nice(19), Path('/proc/self/autogroup').read_text().split()[-1])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, start_new_session=True,
                         check=True).stdout.split()
    assert out[1] == "19" and out[0] != "None"


# a chunk of heap pinned between freed blocks: free() cannot give the blocks back by shrinking the heap's top
_FRAGMENTED = """
import ctypes, sys
from tricks.plain import glibc, trim_heap
libc = glibc()
libc.malloc.restype = ctypes.c_void_p
assert libc.mallopt(-3, 32 << 20) == 1  # M_MMAP_THRESHOLD at its most: 1 MB blocks from the heap, as torch's
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
blocks, pins = [], []
for _ in range(200):
    b = libc.malloc(1 << 20)
    ctypes.memset(b, 1, 1 << 20)  # touched: resident
    blocks.append(b)
    pins.append(libc.malloc(100 << 10))  # from the top, after the block: nothing in the bins is this large
for b in blocks:
    libc.free(ctypes.c_void_p(b))
before = rss_mb()
print(trim_heap(), before - rss_mb())
"""


@pytest.mark.skipif(glibc() is None, reason="malloc_trim is glibc's")
def test_trim_heap_gives_the_free_pages_inside_glibcs_heap_back():
    """200 MB freed but stuck behind live chunks stay resident until the trim (in a process of its own)."""
    out = subprocess.run([sys.executable, "-c", _FRAGMENTED], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "True" and float(out[1]) > 150


def test_trim_heap_says_false_and_does_nothing_without_glibc(monkeypatch):
    import tricks.plain as plain

    monkeypatch.setattr(plain, "glibc", lambda: None)
    assert plain.trim_heap() is False
