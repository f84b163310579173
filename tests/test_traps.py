"""The traps the README and the docstrings warn about: each is written down, and each is true of fastai as installed
(so the warning stays accurate when fastai changes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastai.callback.tracker import SaveModelCallback

import tricks.transforms as T
from tests.test_callbacks import BS, N_TRAIN, NanAt, Probe, tiny_learner, tiny_net
from tricks.callbacks import BnFreeze, DivergenceGuard, ExpLRDecay, WeightDecayFrom

TRAPS = Path(__file__).resolve().parents[1] / "docs" / "traps.md"
README = TRAPS.parents[1] / "README.md"


def _traps_section() -> str:
    assert "(docs/traps.md)" in README.read_text(), "README: no link to docs/traps.md"
    return TRAPS.read_text()


def test_the_traps_page_linked_from_the_readme_names_each_trap():
    traps = _traps_section()
    for needle in ("fine_tune", "ModelTransform", "lr_find", "from fastai.vision.all import *", "SaveModelCallback",
                   "best.pth", "TrickWarning", "input_shape", "start_epoch=k"):
        assert needle in traps, needle


def test_the_docstrings_name_the_traps_where_the_user_meets_them():
    assert "fine_tune" in ExpLRDecay.__doc__ and "fine_tune" in WeightDecayFrom.__doc__
    assert "from fastai.vision.all import *" in BnFreeze.__doc__
    assert "SaveModelCallback" in DivergenceGuard.__doc__ and "best.pth" in DivergenceGuard.__doc__
    assert "ModelTransform" in T.__doc__ and "lr_find" in T.__doc__


def test_epochs_count_from_zero_in_every_fit_so_the_weight_decay_switch_restarts(tmp_path):
    probe = Probe("before_step", lambda lr: (lr.epoch, lr.opt.hypers[0]["wd"]), order=70)
    learn = tiny_learner(tmp_path, [WeightDecayFrom(0.1, start_epoch=1), probe])
    learn.fit(2)
    learn.fit(2)  # a second phase, as fine_tune's unfrozen one
    n = N_TRAIN // BS
    assert [e for e, _ in probe.seen] == ([0] * n + [1] * n) * 2
    assert [wd for _, wd in probe.seen] == ([0.0] * n + [0.1] * n) * 2


def test_a_transform_on_learn_model_after_a_fit_leaves_its_layers_out_of_the_optimizer(tmp_path):
    learn = tiny_learner(tmp_path, model=tiny_net(bn=False))
    learn.fit(1)
    learn.model = T.bn_before_relu(learn.model)
    in_opt = {id(p) for pg in learn.opt.param_lists for p in pg}
    bn = learn.model[1]
    assert id(bn.weight) not in in_opt  # the trap
    learn.fit(1)
    assert float((bn.weight - 1).abs().max()) == 0.0  # it never trained
    fixed = tiny_learner(tmp_path, [T.ModelTransform(T.bn_before_relu)], model=tiny_net(bn=False))
    fixed.fit(1)
    assert id(fixed.model[1].weight) in {id(p) for pg in fixed.opt.param_lists for p in pg}
    assert float((fixed.model[1].weight - 1).abs().max()) > 0.0


def test_fastais_star_import_exports_its_own_bnfreeze_under_the_same_name():
    namespace: dict = {}
    exec("from fastai.vision.all import *", namespace)
    assert namespace["BnFreeze"] is not BnFreeze and namespace["BnFreeze"].__module__ == "fastai.callback.training"


def test_divergence_in_epoch_0_makes_save_model_callback_fail_on_the_missing_best_pth(tmp_path):
    learn = tiny_learner(tmp_path, [DivergenceGuard(), SaveModelCallback(fname="best")], model=NanAt(tiny_net(), 0))
    with pytest.raises(FileNotFoundError, match="best.pth"):
        learn.fit(2)
    assert learn.diverged
