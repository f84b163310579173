"""The house rules, checked on the source (tests/architecture.py reads it with `ast` and imports none of it): no import
cycle among the modules of tricks/, claims/, benchmarks/ (lazy imports counted), `tricks` reaches `claims` only
through the command line's one lazy import of `claims.compare`, no module over 600 lines. Each rule is first shown
able to fail, on a small package tree written for the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.architecture import MAX_LINES, Import, cycles, forbidden, imports, oversized, violations

ROOT = Path(__file__).resolve().parents[1]


def _tree(root: Path, files: dict[str, str]) -> Path:
    """Write `files` (path -> source) under `root`, with an empty __init__.py in every package folder."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in {p.parent for p in root.rglob("*.py")}:
        (folder / "__init__.py").touch()
    return root


def _groups(root: Path) -> list[set[str]]:
    return [{i.source for i in cycle} for cycle in cycles(imports(root))]


# ------------------------------------------------------------------------------------------------- the checker


def test_a_tree_without_cycles_forbidden_imports_or_long_modules_has_no_violations(tmp_path):
    root = _tree(tmp_path, {
        "tricks/models.py": "import torch\n",
        "tricks/train.py": "from tricks.models import build\nfrom .recipe import Recipe\n",
        "tricks/recipe.py": "import dataclasses\n",
        "claims/spec.py": "from tricks.recipe import Recipe\n",
        "claims/schedule.py": "from claims import spec\n\ndef f():\n    from tricks import train\n",
        "benchmarks/arms.py": "from tricks.train import run\n",
    })
    assert violations(root) == []


def test_a_cycle_closed_by_an_import_inside_a_function_is_found(tmp_path):
    root = _tree(tmp_path, {
        "claims/report.py": "from claims.schedule import look\n",
        "claims/schedule.py": "def look():\n    from claims.report import multiplicity\n",
    })
    (cycle,) = cycles(imports(root))
    assert [(i.source, i.target, i.lazy) for i in cycle] == [("claims.report", "claims.schedule", False),
                                                             ("claims.schedule", "claims.report", True)]
    assert any(line.startswith("import cycle among claims.report, claims.schedule") for line in violations(root))


def test_a_cycle_through_importlib_with_a_constant_name_or_relative_imports_is_found(tmp_path):
    root = _tree(tmp_path, {
        "tricks/registry.py": "import importlib\n\ndef load():\n    importlib.import_module('tricks.callbacks')\n",
        "tricks/callbacks.py": "from .registry import register\n",
        "tricks/recipes.py": "from . import train\n",
        "tricks/train.py": "def arm():\n    from .recipes import scaled_variant\n",
        "tricks/data.py": "import importlib\n\ndef load(name):\n    importlib.import_module(name)\n",  # not a constant
    })
    assert _groups(root) == [{"tricks.callbacks", "tricks.registry"}, {"tricks.recipes", "tricks.train"}]


def test_a_longer_cycle_across_packages_is_one_group(tmp_path):
    root = _tree(tmp_path, {
        "tricks/apply.py": "def compare():\n    from claims.compare import main\n",
        "claims/compare.py": "import claims.store\n",
        "claims/store.py": "from tricks.apply import parse\n",
        "claims/spec.py": "import claims.store\n",  # reaches the cycle but is not in it
    })
    assert _groups(root) == [{"tricks.apply", "claims.compare", "claims.store"}]


def test_a_module_over_600_lines_is_reported_and_one_of_600_is_not(tmp_path):
    root = _tree(tmp_path, {
        "tricks/long.py": "x = 1\n" * (MAX_LINES + 1),
        "benchmarks/full.py": "x = 1\n" * MAX_LINES,
        "claims/suite/test_long.py": "x = 1\n" * 700,
    })
    assert sorted(oversized(root)) == [("claims.suite.test_long", 700), ("tricks.long", MAX_LINES + 1)]
    assert f"module over {MAX_LINES} lines: tricks.long ({MAX_LINES + 1})" in violations(root)


def test_tricks_may_import_claims_only_lazily_from_the_command_line_and_only_claims_compare(tmp_path):
    root = _tree(tmp_path, {
        "tricks/apply.py": "def compare():\n    from claims.compare import main\n",  # the one allowed arrow
        "tricks/apply_plan.py": "def f():\n    from claims import compare\n",  # a second one
        "tricks/models.py": "def g():\n    import claims.store\n",  # lazy, but not the command line
        "tricks/train.py": "from claims.compare import main\n",  # at import time
        "claims/compare.py": "",
        "claims/store.py": "",
    })
    assert [(i.source, i.target) for i in forbidden(imports(root))] == [
        ("tricks.apply_plan", "claims.compare"), ("tricks.models", "claims.store"), ("tricks.train", "claims.compare")]


@pytest.mark.parametrize(("source", "culprit"), [
    ("from claims.compare import main\n", "claims.compare"),  # at import time
    ("def f():\n    from claims.report import write\n", "claims.report"),  # another module of claims
    ("def f():\n    from claims import X\n", "claims"),  # the package itself
])
def test_the_command_line_importing_another_claims_module_or_at_import_time_is_forbidden(tmp_path, source, culprit):
    root = _tree(tmp_path, {"claims/__init__.py": "X = 1\n", "claims/compare.py": "", "claims/report.py": "",
                            "tricks/apply.py": source})
    assert [i.target for i in forbidden(imports(root))] == [culprit]
    assert any(line.startswith(f"tricks imports claims: tricks.apply -> {culprit} ") for line in violations(root))


# ------------------------------------------------------------------------------------------------- this repository


@pytest.fixture(scope="module")
def repository() -> list[Import]:
    return imports(ROOT)  # parsed once for the two import rules


def test_the_modules_of_tricks_claims_and_benchmarks_have_no_import_cycle(repository):
    found = cycles(repository)
    assert found == [], "\n".join("cycle:\n" + "\n".join(f"    {i}" for i in cycle) for cycle in found)


def test_tricks_reaches_claims_only_through_the_command_lines_one_lazy_import_of_claims_compare(repository):
    found = forbidden(repository)
    assert found == [], "\n".join(map(str, found))


def test_no_module_of_tricks_claims_or_benchmarks_is_over_600_lines():
    found = oversized(ROOT)
    assert found == [], "\n".join(f"{m}: {n} lines" for m, n in found)
