"""Method cards: one generated card a registered trick, with its usage, source and the claims that use it."""

from __future__ import annotations

from pathlib import Path

from claims import cards
from tricks.catalog import all_tricks

ROOT = Path(__file__).resolve().parents[1]


def test_every_registered_trick_has_its_card_and_every_card_is_as_generated(tmp_path):
    folder = ROOT / cards.CARDS
    names = {t.name for t in all_tricks()}
    assert {p.stem for p in folder.glob("*.md")} == names  # one card a trick, none for a trick that is gone
    assert cards.main(["--out", str(folder), "--proxy", str(ROOT / cards.PROXY), "--check"]) == 0  # not hand-edited
    assert cards.main(["--out", str(tmp_path), "--check"]) == 1  # a folder without the cards fails the check


def test_a_card_names_usage_parameters_source_and_the_claims_that_use_the_trick(tmp_path):
    proxy = tmp_path / "proxy.json"
    proxy.write_text('{"created": "2026-12-06", "claims": {"C001-4": {"verdict": "SUPPORTED", "n": 8, "mean": 9.6, '
                     '"lower": 3.9, "upper": 15.29}}}')
    text = cards.cards(proxy)["bn_before_relu"]
    for heading in ("## What it does", "## How to use it", "## Source", "## Evidence here"):
        assert heading in text
    assert "model = bn_before_relu(model" in text and "python -m tricks.apply --cb bn_before_relu" in text
    assert "doc 001 (pal2021b)" in text
    (row,) = [ln for ln in text.splitlines() if ln.startswith("| C001-4 |")]
    assert "| A | SUPPORTED | +9.60 [+3.90, +15.29] | 8 |" in row and "report of 2026-12-06" in text
    assert "| C001-5 |" in text and "not run" in text  # a claim without a verdict in the file says so
    bnfreeze = cards.cards(proxy)["BnFreeze"]
    assert "BnFreeze(affine=False, start_epoch=0)" in bnfreeze and "`start_epoch` | int in [0, inf) = 0" in bnfreeze


def test_every_cards_import_line_imports_the_trick_it_names(tmp_path):
    import importlib
    import re

    for name, text in cards.cards(tmp_path / "no-proxy.json").items():
        for module, obj in re.findall(r"^from ([\w.]+) import (\w+)$", text, flags=re.M):
            assert hasattr(importlib.import_module(module), obj), f"card {name}: from {module} import {obj} fails"
