"""Runs are keyed by what training computes: the committed training fingerprints match the code, an edit that changes
no numbers keeps every run's key, and a change that moves a recipe's numbers is caught."""

from dataclasses import replace

import pytest
import torch.nn as nn

import tricks.recipe as recipe
from tricks import fingerprint as fp
from tricks.recipe import Phase, Recipe, RunVersions, run_version
from tricks.recipes import get_recipe

DIGEST = "d009b9a61a05" + "0" * 52


@pytest.mark.slow
def test_the_committed_fingerprints_match_what_every_named_recipe_computes():
    """The guard: fails when a recipe's numbers moved (or a recipe is new or gone) until the file is regenerated."""
    result = fp.check()
    assert result.ok, ("training fingerprints moved; if the change is meant, run `nox -s fingerprints` (only the "
                       "recipes listed retrain):\n" + "\n".join(fp.describe(result)))


def test_a_fingerprinted_recipe_keeps_its_run_version_when_the_source_bytes_change(monkeypatch):
    r = get_recipe("pal2021b/bn_before_relu")
    before = run_version(DIGEST, r.key)
    monkeypatch.setattr(recipe, "CODE_VERSION", "0.1.0+edited000000")  # what a docstring or a moved function changes
    assert run_version(DIGEST, r.key) == before and before.startswith("fp.")
    assert before == f"fp.{recipe.fingerprint_id(r.key)}+data.{DIGEST[:12]}"


def test_a_recipe_without_a_fingerprint_falls_back_to_the_source_hash(monkeypatch):
    adhoc = Recipe(model="tf_cnn", phases=(Phase("constant", 1, 1e-3),), bs=7)
    assert recipe.fingerprint_id(adhoc.key) is None
    assert run_version(DIGEST, adhoc.key) == f"{recipe.CODE_VERSION}+data.{DIGEST[:12]}"
    monkeypatch.setattr(recipe, "CODE_VERSION", "0.1.0+edited000000")
    assert run_version(DIGEST, adhoc.key).startswith("0.1.0+edited000000")


def test_run_versions_name_the_fingerprint_and_the_dataset_copy():
    r = get_recipe("pal2021b/baseline")
    versions = RunVersions(DIGEST)
    assert versions(r.key) == run_version(DIGEST, r.key)
    assert versions(r.key) != RunVersions("f" * 64)(r.key)
    assert str(versions).startswith("fingerprints.") and DIGEST[:12] in str(versions)


def test_a_changed_init_constant_moves_the_fingerprint(monkeypatch):
    """Kaiming-uniform with a=1 instead of 0 (a smaller gain): the recipe using it no longer matches."""
    r = get_recipe("pal2021a/kaiming_only")
    assert recipe.committed()[r.key].matches(fp.compute(r))
    orig = nn.init.kaiming_uniform_
    monkeypatch.setattr(nn.init, "kaiming_uniform_", lambda w, a=0, **kw: orig(w, a=1, **kw))
    result = fp.check({r.key: r})
    assert not result.ok and set(result.moved) == {r.key}
    assert any("moved: pal2021a/kaiming_only" in line for line in fp.describe(result))


def test_a_changed_recipe_field_is_a_new_recipe_without_a_fingerprint():
    r = get_recipe("pal2021b/baseline")
    changed = replace(r, bs=65)
    result = fp.check({changed.key: changed})
    assert set(result.missing) == {changed.key} and not result.ok


def test_regenerating_keeps_the_ids_of_unmoved_recipes_and_renews_moved_ones(tmp_path):
    a, b = get_recipe("he2016/naive"), get_recipe("he2016/hidden150")
    path = tmp_path / "fp.json"
    first = fp.check({a.key: a, b.key: b}, path)
    assert set(first.missing) == {a.key, b.key}
    assert sorted(fp.write(first, path)) == ["he2016/hidden150", "he2016/naive"]
    ids = {k: v.id for k, v in recipe.committed(path).items()}
    # b's numbers "moved": the next write gives b a new id and keeps a's
    bumped = (b.name, tuple(v * 1.01 for v in first.now[b.key][1]))
    moved = fp.Check({}, {}, {}, {a.key: first.now[a.key], b.key: bumped})
    assert fp.write(moved, path) == ["he2016/hidden150"]
    again = recipe.committed(path)
    assert again[a.key].id == ids[a.key] and again[b.key].id != ids[b.key]
    # a tiny float difference is the same numbers: the id stays
    jitter = fp.Check({}, {}, {}, {a.key: (a.name, tuple(v * (1 + 1e-8) for v in first.now[a.key][1]))})
    assert fp.write(jitter, path) == [] and recipe.committed(path)[a.key].id == ids[a.key]


def test_same_numbers_is_float_tolerant_and_nan_aware():
    assert recipe.same_numbers([1.0, float("nan")], [1.0 + 1e-7, float("nan")])
    assert not recipe.same_numbers([1.0], [1.01]) and not recipe.same_numbers([1.0], [1.0, 2.0])
