"""tricks.recipes against their source documents: coupled L2 on every SGD-family arm, doc 002's dropout without L2
and its K-means mean image, doc 003's symmetric padding, doc 004's one-cycle end."""

from __future__ import annotations

import json

import pytest
import torch
from fastai.callback.schedule import combined_cos
from torch import nn

from tricks.recipe import Augment, Recipe
from tricks.recipes import RECIPES, get_recipe
from tricks.train import _opt_func

SGD_FAMILY = sorted(n for n, r in RECIPES.items() if r.opt in ("sgd", "nesterov", "rmsprop"))


def _torch_reference(recipe: Recipe, p: nn.Parameter, lr: float) -> torch.optim.Optimizer:
    """PyTorch's own optimizer with `weight_decay=` (L2 added to the gradient), as the originals used it."""
    o = dict(recipe.opt_kwargs)
    if recipe.opt == "rmsprop":
        return torch.optim.RMSprop([p], lr=lr, alpha=o["sqr_mom"], eps=o["eps"], weight_decay=o["wd"],
                                   momentum=o.get("mom", 0.0))
    return torch.optim.SGD([p], lr=lr, momentum=o["mom"], weight_decay=o["wd"], nesterov=recipe.opt == "nesterov")


def _trajectory(step, p: nn.Parameter, grads: list[torch.Tensor]) -> list[torch.Tensor]:
    out = []
    for g in grads:
        p.grad = g.clone()
        step()
        out.append(p.detach().clone())
    return out


@pytest.mark.parametrize("name", SGD_FAMILY)
def test_every_sgd_family_arm_steps_with_coupled_l2_as_pytorchs_weight_decay(name):
    recipe = get_recipe(name)
    assert dict(recipe.opt_kwargs).get("decouple_wd") is False
    torch.manual_seed(0)
    start, grads = torch.randn(50, dtype=torch.float64) + 1.0, [torch.randn(50, dtype=torch.float64) for _ in range(6)]
    lr = 0.05
    ours, ref = nn.Parameter(start.clone()), nn.Parameter(start.clone())
    fastai_opt = _opt_func(recipe)([ours], lr=lr)
    torch_opt = _torch_reference(recipe, ref, lr)
    got = _trajectory(fastai_opt.step, ours, grads)
    want = _trajectory(torch_opt.step, ref, grads)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_doc_002_momentum_step_is_the_coupled_formula_by_hand():
    """v = mom·v + (g + reg·W); W -= lr·v: the original's update with its 0.5·reg·|W|² term."""
    recipe = get_recipe("he2016/momentum_1k")
    o = dict(recipe.opt_kwargs)
    mom, reg, lr = o["mom"], o["wd"], 0.01
    assert (mom, reg) == (0.9, 0.8)
    w = torch.linspace(-2, 2, 11, dtype=torch.float64)
    p = nn.Parameter(w.clone())
    opt = _opt_func(recipe)([p], lr=lr)
    v = torch.zeros_like(w)
    for k in range(5):
        g = torch.full_like(w, 0.1 * (k + 1))
        p.grad = g.clone()
        opt.step()
        v = mom * v + g + reg * w
        w = w - lr * v
        torch.testing.assert_close(p.detach(), w, rtol=1e-12, atol=1e-12)


def test_doc_002_dropout_and_init_arms_train_without_l2_as_the_original_dropout_script():
    arms = ["he2016/no_dropout", *(f"he2016/dropout_p{k}{s}" for k in (3, 5, 7) for s in ("", "@code")),
            *(f"he2016/init_{i}" for i in ("lecun_normal", "xavier_normal", "kaiming_normal"))]
    assert {a: dict(get_recipe(a).opt_kwargs)["wd"] for a in arms} == dict.fromkeys(arms, 0.0)
    assert dict(get_recipe("he2016/momentum_1k").opt_kwargs)["wd"] == 0.8  # the update-methods arms keep reg 0.8


@pytest.mark.parametrize("name", ["he2016/kmeans", "he2016/kmeans@code"])
def test_doc_002_kmeans_arms_subtract_the_mean_image_first_as_the_original_script(name):
    assert dict(get_recipe(name).features_kwargs)["mean_image"] is True


def test_doc_003_recipes_pad_symmetrically_as_opencvs_border_reflect():
    names = [n for n in RECIPES if n.startswith("fastai2018/")]
    assert names
    for n in names:
        assert get_recipe(n).augment == Augment(pad=4, flip=0.5, mode="symmetric"), n


def test_a_recipe_with_an_augment_round_trips_through_json_with_the_same_key():
    r = get_recipe("fastai2018/conv_bn_net")
    back = Recipe.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back == r and back.key == r.key and isinstance(back.augment, Augment)
    hash(back)


def test_doc_004_one_cycle_starts_at_4e_4_and_ends_at_pytorchs_4e_8():
    for name in [n for n, r in RECIPES.items() if any(p.schedule == "one_cycle" for p in r.phases)]:
        (phase,) = get_recipe(name).phases
        o = dict(phase.params)
        sched = combined_cos(o["pct_start"], phase.lr / o["div"], phase.lr, phase.lr / o["div_final"])
        assert sched(0.0) == pytest.approx(4e-4) and sched(1.0) == pytest.approx(4e-8, rel=1e-9), name
    # PyTorch's OneCycleLR with the tutorial's arguments, stepped to its end
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.01)
    one = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=100)
    for _ in range(99):
        opt.step()
        one.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(4e-8, rel=1e-6)
