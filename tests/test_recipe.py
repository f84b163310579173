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


def test_the_command_lines_help_imports_neither_torch_nor_the_claims_engine():
    code = ("import runpy, sys; sys.argv = ['tricks.apply', '--help']\n"
            "try:\n    runpy.run_module('tricks.apply', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'fastai', 'claims'}), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--compare" in out.stdout  # the help was printed
    assert out.stderr.strip().splitlines()[-1] == "[]"


def test_the_callbacks_module_brings_no_part_of_the_claims_engine():
    code = "import sys, tricks.callbacks; print(sorted(m for m in sys.modules if m.split('.')[0] == 'claims'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
