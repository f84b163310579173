"""tricks.recipe is the torch-free data model: the run store, the claims and the reports read it without torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_importing_tricks_recipe_imports_neither_torch_nor_fastai():
    code = ("import sys, tricks.recipe, tricks.plain; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'fastai', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
