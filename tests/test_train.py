"""tricks.train: the Nesterov optimizer, the run's stored version, and `run()` end to end on a tiny synthetic source
(determinism, per-epoch curves on a test subset, a data trick on the profile's subsets, mean-image normalization)."""

from __future__ import annotations

import warnings
from dataclasses import replace

import pytest
import torch
from fastai.callback.core import Callback

from tests.test_apply import TINY, _write_source
from tricks.recipe import CODE_VERSION, Phase, Profile, Recipe, RunResult, TrickUse, kw, run_version
from tricks.train import nesterov_sgd, run

torch.set_num_threads(1)
warnings.filterwarnings("ignore", category=UserWarning)

N_TRAIN, N_TEST = 8, 6  # per class: 80 training and 60 test images
THREE = replace(TINY, opt="adam", opt_kwargs=(), phases=(Phase("constant", 3, 1e-2),), normalize="train")
PLAIN = Profile("unit")


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    """The tiny class-folder source, decoded once into a cache under tmp (never the user's)."""
    from tricks.cifar import load_cifar10

    root = tmp_path_factory.mktemp("train")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRICKS_CACHE", str(root / "cache"))
        return load_cifar10(str(_write_source(root / "source", N_TRAIN, N_TEST)))


class ValidCount(Callback):
    """How many images each validation pass saw (training fits, `validate` and `get_preds` alike)."""

    def __init__(self):
        self.counts: list[int] = []

    def before_validate(self) -> None:
        self.counts.append(0)

    def after_batch(self) -> None:
        if not self.training:
            self.counts[-1] += len(self.yb[0])


def _run(recipe: Recipe, seed: int, profile: Profile, arrays, **kwargs) -> RunResult:
    return run(recipe, seed, profile, arrays=arrays, device="cpu", **kwargs)


# ---------------------------------------------------------------------------------------------- nesterov


def _problem(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 5, generator=g), torch.randn(16, 3, generator=g)
    return x, y, torch.randn(5, 3, generator=g), torch.randn(3, generator=g)


def _loss(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
    return ((x[step % 4::4] @ w + b - y[step % 4::4]) ** 2).mean()  # a different mini-batch each step


def _trajectory(make_opt, steps: int = 8, decay_first: float = 0.0) -> list[torch.Tensor]:
    x, y, w0, b0 = _problem()
    w, b = w0.clone().requires_grad_(), b0.clone().requires_grad_()
    opt = make_opt([w, b])
    out = []
    for step in range(steps):
        _loss(w, b, x, y, step).backward()
        if decay_first:  # decoupled weight decay, applied before the update as fastai's weight_decay does
            with torch.no_grad():
                w.mul_(1 - decay_first)
                b.mul_(1 - decay_first)
        opt.step()
        opt.zero_grad()
        out.append(torch.cat([w.detach().flatten(), b.detach()]).clone())
    return out


@pytest.mark.parametrize("mom,wd", [(0.9, 0.0), (0.9, 1e-2), (0.5, 0.1)])
def test_nesterov_sgd_matches_torch_sgd_with_nesterov_momentum_step_for_step(mom, wd):
    lr = 0.05
    ours = _trajectory(lambda ps: nesterov_sgd(ps, lr=lr, mom=mom, wd=wd))
    ref = _trajectory(lambda ps: torch.optim.SGD(ps, lr=lr, momentum=mom, nesterov=True, weight_decay=wd))
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    plain = _trajectory(lambda ps: torch.optim.SGD(ps, lr=lr, momentum=mom, weight_decay=wd))  # not heavy-ball
    assert not torch.allclose(ours[-1], plain[-1], atol=1e-4)


def test_nesterov_sgd_with_decoupled_weight_decay_shrinks_the_weights_before_the_step():
    lr, wd = 0.05, 0.1
    ours = _trajectory(lambda ps: nesterov_sgd(ps, lr=lr, mom=0.9, wd=wd, decouple_wd=True))
    ref = _trajectory(lambda ps: torch.optim.SGD(ps, lr=lr, momentum=0.9, nesterov=True), decay_first=lr * wd)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    coupled = _trajectory(lambda ps: nesterov_sgd(ps, lr=lr, mom=0.9, wd=wd))
    assert not torch.allclose(ours[-1], coupled[-1], atol=1e-4)


def test_a_recipe_names_the_nesterov_optimizer_with_its_options():
    from tricks.train import _opt_func

    recipe = replace(TINY, opt="nesterov", opt_kwargs=kw(mom=0.9, wd=1e-2))
    ours = _trajectory(lambda ps: _opt_func(recipe)(ps, lr=0.05))
    ref = _trajectory(lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2))
    torch.testing.assert_close(ours[-1], ref[-1], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown optimizer 'nag' .*nesterov"):
        _opt_func(replace(TINY, opt="nag"))


# ---------------------------------------------------------------------------------------------- versions


def test_run_version_names_the_training_code_and_the_dataset_copy():
    digest = "0123456789abcdef" * 4
    v = run_version(digest)
    assert v.startswith(CODE_VERSION) and digest[:12] in v and digest[:13] not in v
    assert run_version("f" * 64) != v and run_version(digest) == v


# ---------------------------------------------------------------------------------------------- run()


def test_a_run_is_stored_under_its_code_and_dataset_version_and_is_deterministic_in_its_seed(arrays):
    first = _run(THREE, 0, PLAIN, arrays)
    assert isinstance(first, RunResult) and first.code_version == run_version(arrays.digest)
    assert first.profile == "unit" and first.seed == 0 and first.recipe_key == THREE.key
    assert len(first.acc_per_epoch) == len(first.loss_per_epoch) == len(first.train_loss_per_epoch) == 3
    assert first.acc == first.acc_per_epoch[-1] and not first.diverged
    assert arrays.digest[:12] in first.dataset
    again = _run(THREE, 0, PLAIN, arrays)
    assert (again.acc, again.loss) == (first.acc, first.loss)
    assert again.acc_per_epoch == first.acc_per_epoch and again.loss_per_epoch == first.loss_per_epoch
    assert again.train_loss_per_epoch == first.train_loss_per_epoch
    other = _run(THREE, 1, PLAIN, arrays)
    assert other.train_loss_per_epoch != first.train_loss_per_epoch and other.loss != first.loss


def test_with_curve_test_the_epochs_before_the_last_are_validated_on_k_images(arrays):
    k = 20  # two test images of each class, of 60
    count = ValidCount()
    res = _run(THREE, 0, Profile("curve", curve_test=k), arrays, extra_cbs=(count,))
    assert count.counts == [k, k, 10 * N_TEST]
    assert all(abs(a * k - round(a * k)) < 1e-6 for a in res.acc_per_epoch[:-1])  # multiples of 1/k
    # the curve's epochs are counted across the fits of a multi-phase recipe
    two_phases = replace(THREE, phases=(Phase("constant", 2, 1e-2), Phase("constant", 2, 1e-3)))
    count = ValidCount()
    res = _run(two_phases, 0, Profile("curve", curve_test=k), arrays, extra_cbs=(count,))
    assert count.counts == [k, k, k, 10 * N_TEST] and len(res.acc_per_epoch) == 4


@pytest.mark.parametrize("profile,epochs", [
    (Profile("full"), 3),  # no curve_test: every epoch on the whole test set
    (Profile("curve", curve_test=20), 1),  # one epoch is the last epoch
    (Profile("curve", curve_test=60), 3),  # k no smaller than the test set
])
def test_without_a_smaller_curve_test_every_epoch_sees_the_whole_test_set(arrays, profile, epochs):
    count = ValidCount()
    _run(replace(THREE, phases=(Phase("constant", epochs, 1e-2),)), 0, profile, arrays, extra_cbs=(count,))
    assert count.counts == [10 * N_TEST] * epochs


def test_validate_subset_until_leaves_validate_and_get_preds_on_the_full_loader(arrays):
    from tricks.callbacks import ValidateSubsetUntil
    from tricks.loaders import cifar_dls
    from tricks.train import build_learner

    dls = cifar_dls(arrays, bs=16, normalize="train", seed=0)
    small = cifar_dls(arrays, bs=16, normalize="train", seed=0, test_subset=20).valid
    count = ValidCount()
    learn = build_learner(THREE, dls, extra_cbs=(ValidateSubsetUntil(small, 3), count))
    learn.fit(1, 1e-2)
    assert count.counts == [20]
    learn.validate()
    preds, targets = learn.get_preds()
    assert count.counts == [20, 60, 60] and len(preds) == len(targets) == 60
    learn.fit(2, 1e-2)  # epochs 2 and 3 of 3: the subset, then the whole test set
    assert count.counts == [20, 60, 60, 20, 60]
    learn.validate()
    assert count.counts[-1] == 60


def test_a_data_trick_runs_on_the_profiles_subsets_and_feeds_a_feature_input_net(arrays, monkeypatch):
    import tricks.kmeans
    from tricks.loaders import subsets

    seen = []
    real = tricks.kmeans.kmeans_features

    def spy(x_train, x_test, **opts):
        seen.append((x_train.clone(), x_test.clone(), opts))
        return real(x_train, x_test, **opts)

    monkeypatch.setattr(tricks.kmeans, "kmeans_features", spy)
    recipe = Recipe(model="two_layer_net", model_kwargs=kw(d_in=32, hidden=8), opt="sgd",
                    opt_kwargs=kw(mom=0.9, wd=0.0), phases=(Phase("constant", 2, 0.05),), bs=16, features="kmeans",
                    features_kwargs=kw(n_centroids=8, n_patches=2000, iters=2))
    prof = Profile("cut", train_subset=40, test_subset=30, features_kwargs=kw(iters=1))
    res = _run(recipe, 3, prof, arrays)
    assert res.params_used == (32 * 8 + 8) + (8 * 10 + 10)  # 4 x 8 centroids in, 8 hidden, 10 out
    assert len(res.acc_per_epoch) == 2 and 0.0 <= res.acc <= 1.0 and not res.diverged
    (x_train, x_test, opts), = seen
    x_tr, _, x_te, _ = subsets(arrays, 3, 40, 30)
    assert torch.equal(x_train, x_tr) and torch.equal(x_test, x_te)  # this seed's subsets, not the whole set
    assert len(x_train) == 40 and len(x_test) == 30
    assert opts["n_centroids"] == 8 and opts["iters"] == 1 and opts["seed"] == 3  # profile overrides, run's seed


def test_mean_image_normalization_centres_the_raw_training_pixels(arrays):
    from tricks.loaders import cifar_dls

    mean_image = arrays.x_train.double().mean(0)
    dls = cifar_dls(arrays, bs=16, normalize="mean_image", seed=0)
    xs = torch.cat([x.double() for x, _ in dls.train])
    assert xs.shape == arrays.x_train.shape
    assert xs.mean(0).abs().max() < 1e-3  # every pixel centred over the whole training set
    assert xs.abs().max() > 20  # raw 0-255 units, not scaled to [0, 1]
    valid = torch.cat([x.double() for x, _ in dls.valid])
    torch.testing.assert_close(valid, arrays.x_test.double() - mean_image, rtol=0, atol=1e-3)
    copy = torch.cat([x.double() for x, _ in dls.valid.new(shuffle=False, drop_last=False)])  # as get_preds makes
    torch.testing.assert_close(copy, valid, rtol=0, atol=0)
    # a training subset is still centred by the whole training set's mean image, as in the original
    cut = cifar_dls(arrays, bs=16, normalize="mean_image", seed=0, train_subset=20, test_subset=10)
    x, _ = next(iter(cut.valid))
    from tricks.loaders import subsets

    torch.testing.assert_close(x.double(), subsets(arrays, 0, 20, 10)[2].double() - mean_image, rtol=0, atol=1e-3)


def test_run_accepts_a_mean_image_recipe_with_a_pixel_input_net(arrays):
    recipe = Recipe(model="two_layer_net", model_kwargs=kw(hidden=8), opt="sgd", opt_kwargs=kw(mom=0.0, wd=0.0),
                    phases=(Phase("constant", 1, 1e-6),), bs=16, normalize="mean_image")
    res = _run(recipe, 0, PLAIN, arrays)
    assert res.params_used == 3072 * 8 + 8 + 8 * 10 + 10 and not res.diverged



def test_a_profile_scales_the_phases_epochs_but_never_below_one():
    r = replace(THREE, phases=(Phase("constant", 10, 1e-3), Phase("sgdr", 3, 1e-2)))
    assert [p.epochs for p in Profile("half", epoch_scale=0.5).scale(r).phases] == [5, 2]
    assert [p.epochs for p in Profile("tenth", epoch_scale=0.1).scale(r).phases] == [1, 1]
    assert Profile("paper").scale(r) is r


@pytest.mark.parametrize("scale,epochs,start", [(1.0, 10, 2), (0.5, 5, 1), (0.1, 1, 0), (0.35, 4, 1)])
def test_a_callbacks_epoch_index_scales_with_the_profile_and_stays_inside_the_fit(scale, epochs, start):

    wd = TrickUse("WeightDecayFrom", kw(wd=1e-4, start_epoch=2))
    r = replace(THREE, phases=(Phase("exp_decay", 10, 2e-3, kw(gamma=0.8)),), callbacks=(wd,))
    scaled = Profile("p", epoch_scale=scale).scale(r)
    assert scaled.epochs == epochs
    (use,) = scaled.callbacks
    assert dict(use.params) == {"wd": 1e-4, "start_epoch": start}  # other parameters untouched
    late = replace(r, callbacks=(TrickUse("WeightDecayFrom", kw(wd=1e-4, start_epoch=9)),))
    assert dict(Profile("p", epoch_scale=scale).scale(late).callbacks[0].params)["start_epoch"] <= epochs - 1


@pytest.mark.parametrize("profile", ["paper", "default", "smoke"])
def test_doc_000s_weight_decay_arm_turns_weight_decay_on_under_every_profile(profile):
    # Unscaled, wd from epoch 2 never started in smoke's single epoch: the arm trained exactly like lr_schedule
    from tricks.recipe import get_profile
    from tricks.recipes import RECIPES

    prof = get_profile(profile)
    r = prof.scale(RECIPES["pal2021a/weight_decay"])
    (use,) = [u for u in r.callbacks if u.name == "WeightDecayFrom"]
    assert dict(use.params)["start_epoch"] < r.epochs


# ---------------------------------------------------------------------------------------------- layout and syncs


def _is_cl(t: torch.Tensor) -> bool:
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def _learner(arrays, recipe: Recipe, channels_last=None, **dls_kwargs):
    from tricks.loaders import cifar_dls
    from tricks.train import build_learner

    dls = cifar_dls(arrays, bs=8, augment=True, normalize="train", device="cpu", **dls_kwargs)
    return build_learner(recipe, dls, channels_last=channels_last)


@pytest.mark.parametrize(("model", "layout"), [("tf_cnn", True), ("conv_bn_net", True), ("resnet9", False),
                                               ("simple_net", False)])
def test_build_learner_uses_channels_last_on_a_cpu_for_the_families_measured_faster(arrays, model, layout):
    learn = _learner(arrays, replace(THREE, model=model))
    convs = [m.weight for m in learn.model.modules() if isinstance(m, torch.nn.Conv2d)]
    x, _ = learn.dls.train.one_batch()
    assert all(_is_cl(w) == layout for w in convs) and _is_cl(x) == layout
    assert _is_cl(learn.dls.valid.one_batch()[0]) == layout


def test_build_learner_follows_an_explicit_channels_last_either_way(arrays):
    off = _learner(arrays, replace(THREE, model="tf_cnn"), channels_last=False)
    on = _learner(arrays, THREE, channels_last=True)  # tiny_cnn: not in the measured table
    assert not _is_cl(off.dls.train.one_batch()[0]) and not _is_cl(off.model[0][0][0].weight)
    assert _is_cl(on.dls.train.one_batch()[0]) and _is_cl(on.model[0][0][0].weight)


def test_channels_last_and_nchw_runs_agree_within_float_tolerance(arrays):
    nchw = _run(THREE, 0, PLAIN, arrays, channels_last=False)
    cl = _run(THREE, 0, PLAIN, arrays, channels_last=True)
    assert cl.train_loss_per_epoch == pytest.approx(nchw.train_loss_per_epoch, rel=1e-4)
    assert cl.loss_per_epoch == pytest.approx(nchw.loss_per_epoch, rel=1e-4)
    assert cl.acc_per_epoch == nchw.acc_per_epoch


def test_a_channels_last_run_gives_the_same_numbers_for_the_same_seed(arrays):
    first = _run(THREE, 3, PLAIN, arrays, channels_last=True)
    again = _run(THREE, 3, PLAIN, arrays, channels_last=True)
    assert (again.acc, again.loss, again.train_loss_per_epoch) == (first.acc, first.loss, first.train_loss_per_epoch)


def test_the_project_learner_reads_no_loss_or_metric_off_the_device_per_batch(arrays):
    """With the divergence check read once an epoch (its mode on a GPU), a fit's host reads do not grow with the
    number of batches: fastai's Recorder sums losses and metrics on the device (tricks.loaders' to_detach and the
    device-side smooth loss)."""
    from tests.test_callbacks import SpyOnLoss, host_reads
    from tricks.callbacks import DivergenceGuard

    def reads(n_train: int, n_test: int) -> int:
        learn = _learner(arrays, THREE, train_subset=n_train, test_subset=n_test)
        for cb in learn.cbs:
            if isinstance(cb, DivergenceGuard):
                cb.per_batch = False
        learn.add_cb(SpyOnLoss())
        count = host_reads(lambda: learn.fit(2, 1e-3))
        assert len(learn.recorder.values) == 2 and all(v == v for row in learn.recorder.values for v in row)
        return count

    assert reads(20, 10) == reads(80, 60) > 0  # 3 vs 10 training batches, 2 vs 8 validation batches an epoch


# ---------------------------------------------------------------------------------------------- pairing


class FirstSeen(Callback):
    """The model's convolution weights before training, and every training batch (images after augmentation)."""

    def __init__(self):
        self.conv: dict[str, torch.Tensor] = {}
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []

    def before_fit(self) -> None:
        if not self.conv:
            self.conv = {k: v.clone() for k, v in self.learn.model.features.state_dict().items()}

    def before_batch(self) -> None:
        if self.training:
            self.batches.append((self.xb[0].clone(), self.yb[0].clone()))


def _seen(recipe: Recipe, seed: int, arrays) -> FirstSeen:
    spy = FirstSeen()
    _run(recipe, seed, Profile("cut", train_subset=40, test_subset=30), arrays, extra_cbs=(spy,))
    return spy


def test_two_arms_of_a_seed_share_the_subset_batches_augmentation_and_the_init_of_their_common_layers(arrays):
    # the paired design's premise: arms that differ in the head (and dropout, which draws from torch's global
    # generator during training) still see the same images in the same order, augmented alike, from the same convs
    base = replace(TINY, augment=True, phases=(Phase("constant", 2, 0.05),), model_kwargs=kw(hidden=16))
    wide = replace(base, model_kwargs=kw(hidden=64), transforms=(TrickUse("dropout_dense", kw(p=0.5)),))
    a, b, other = _seen(base, 5, arrays), _seen(wide, 5, arrays), _seen(base, 6, arrays)
    assert a.conv.keys() == b.conv.keys() and all(torch.equal(a.conv[k], b.conv[k]) for k in a.conv)
    assert len(a.batches) == len(b.batches) == 4  # 40 images at batch 32, two epochs
    for (xa, ya), (xb, yb) in zip(a.batches, b.batches, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # and the pinning can fail: another seed draws other convs, another subset, other augmentations
    assert not all(torch.equal(a.conv[k], other.conv[k]) for k in a.conv)
    assert not torch.equal(a.batches[0][0], other.batches[0][0])


# ---------------------------------------------------------------------------------------------- scaled heavy arms


def test_a_scaled_profile_trains_a_heavy_recipe_as_its_named_variant_on_a_cpu_only():
    from tricks.recipe import PROFILES
    from tricks.recipes import RECIPES

    heavy = [r for r in RECIPES.values() if r.heavy]
    assert {r.name for r in heavy} >= {"jovian/resnet9", "jovian/base_cnn", "he2016/kmeans", "he2016/kmeans@code"}
    assert all(PROFILES["smoke"].arm(r, device_has_gpu=False) is r for r in heavy)  # smoke skips them instead
    for name in ("default",):
        prof = PROFILES[name]
        for r in heavy:
            v = prof.arm(r, device_has_gpu=False)
            assert v.name.startswith(r.name + "@") and v.scaled and not v.heavy and v.key != r.key
            assert prof.arm(r, device_has_gpu=True) is r  # full size on a GPU
        assert prof.arm(RECIPES["pal2021b/baseline"], device_has_gpu=False) is RECIPES["pal2021b/baseline"]
    for r in heavy:
        assert PROFILES["paper"].arm(r, device_has_gpu=False) is r  # full size under the paper profile
    toy = Recipe("tiny_cnn", heavy=True)  # a heavy recipe with no scaled variant stays itself (and is skipped)
    assert PROFILES["default"].arm(toy, device_has_gpu=False) is toy


def test_the_scaled_variants_change_only_the_size():
    from tricks.recipe import scaled_variant
    from tricks.recipes import RECIPES

    r9, v9 = RECIPES["jovian/resnet9-no_residual"], scaled_variant(RECIPES["jovian/resnet9-no_residual"])
    assert dict(v9.model_kwargs) == {"residual": False, "width": 16}
    assert replace(v9, model_kwargs=r9.model_kwargs, heavy=True).key == r9.key  # nothing else differs
    km, vk = RECIPES["he2016/kmeans@code"], scaled_variant(RECIPES["he2016/kmeans@code"])
    assert dict(vk.features_kwargs) == {**dict(km.features_kwargs), "n_centroids": 400, "n_patches": 100_000,
                                        "iters": 20}
    assert {"subtract_mean", "mean_image"} <= set(dict(vk.features_kwargs))  # the recipe's own options carry over
    assert replace(vk, features_kwargs=km.features_kwargs).key == km.key


def test_a_run_of_a_scaled_variant_carries_its_scaled_note(arrays):
    res = _run(replace(TINY, phases=(Phase("constant", 1, 0.05),), scaled="tiny at a quarter width"), 0, PLAIN,
               arrays)
    assert res.scaled == "tiny at a quarter width"
    assert RunResult.from_json(res.to_json()).scaled == res.scaled
    assert _run(replace(TINY, phases=(Phase("constant", 1, 0.05),)), 0, PLAIN, arrays).scaled == ""


# ---------------------------------------------------------------------------------------------- heap


class TrainBatches(Callback):
    def __init__(self):
        self.n = 0

    def after_batch(self) -> None:
        self.n += self.training


def test_a_run_trims_the_heap_every_n_training_batches_and_after_each_fit_and_changes_no_number(arrays, monkeypatch):
    import tricks.train as train

    calls = []
    monkeypatch.setattr(train, "trim_heap", lambda: calls.append(1) or True)
    two_fits = replace(THREE, phases=(Phase("constant", 2, 1e-2), Phase("constant", 1, 1e-3)))
    seen = TrainBatches()
    trimmed = _run(two_fits, 0, PLAIN, arrays, trim_every=2, extra_cbs=(seen,))
    assert seen.n >= 4 and len(calls) == seen.n // 2 + 2  # validation batches do not count; one more per fit
    calls.clear()
    plain = _run(two_fits, 0, PLAIN, arrays, trim_every=None)
    assert calls == []
    assert plain.acc_per_epoch == trimmed.acc_per_epoch and plain.train_loss_per_epoch == trimmed.train_loss_per_epoch


def test_heap_trim_refuses_a_period_below_one_batch():
    from tricks.train import HeapTrim

    with pytest.raises(ValueError, match="every >= 1"):
        HeapTrim(0)
