"""tricks.plain: the JSON-safe copy, the one-line exception text and the cache folders."""

from __future__ import annotations

import enum
import json
import math

from tricks.plain import cache_dir, finite, one_line, user_cache_dir


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
