"""Model transforms: BN placement, dropout, head changes, init schemes, LSUV, parameter counts and the callbacks."""

from __future__ import annotations

import math

import pytest
import torch
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import Learner
from fastai.optimizer import SGD
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tricks import transforms as T
from tricks.catalog import get_trick, parse_spec
from tricks.models import build_model
from tricks.registry import TrickError, TrickWarning

torch.set_num_threads(1)

TINY = st.builds(lambda w, h: build_model("tiny_cnn", width=w, hidden=h), st.integers(1, 4), st.integers(2, 8))
PROPS = settings(max_examples=15, deadline=None)


def _kinds(model: nn.Module) -> list[type]:
    return [type(m) for m in model.modules()]


# ------------------------------------------------------------------------------------------- BN placement

@pytest.mark.parametrize(("transform", "bn"), [(T.bn_before_relu, "before"), (T.bn_after_relu, "after")])
@pytest.mark.parametrize("padding", [0, 1])
def test_bn_transform_gives_the_builders_bn_net(transform, bn, padding):
    model = transform(build_model("tf_cnn", padding=padding))
    reference = build_model("tf_cnn", padding=padding, bn=bn)
    assert str(model) == str(reference)
    assert T.params_registered(model) == T.params_used(model) == 122_890


@PROPS
@given(model=TINY, before=st.booleans())
def test_bn_transform_only_adds_batchnorm_and_keeps_every_parameter(model, before):
    params = {n: (p, p.detach().clone()) for n, p in model.named_parameters()}
    kinds = _kinds(model)
    out = (T.bn_before_relu if before else T.bn_after_relu)(model)
    assert out is model
    added = list(_kinds(out))
    for k in kinds:  # removing the BatchNorm2d layers gives back the original module list
        added.remove(k)
    assert added and set(added) == {nn.BatchNorm2d}
    kept = {id(p) for p in out.parameters()}
    assert all(id(p) in kept and torch.equal(p, v) for p, v in params.values())
    convs = [m.out_channels for m in out.modules() if isinstance(m, nn.Conv2d)]
    assert T.params_registered(out) == sum(p.numel() for p, _ in params.values()) + 2 * sum(convs)
    assert out(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@PROPS
@given(model=TINY, before=st.booleans())
def test_bn_transform_is_idempotent(model, before):
    transform = T.bn_before_relu if before else T.bn_after_relu
    once = str(transform(model))
    with pytest.warns(TrickWarning, match="left this Sequential unchanged"):  # the second time says it did nothing
        again = str(transform(model))
    assert again == once


def test_bn_transform_leaves_a_conv_without_activation_alone():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 28 * 28, 10))
    T.bn_before_relu(model)
    assert [type(m) for m in model] == [nn.Conv2d, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Flatten, nn.Linear]
    assert model[2].num_features == 4


def test_bn_transform_walks_nested_and_named_containers():
    model = build_model("resnet9")
    before = T.params_registered(model)
    T.dropout_conv(model, p=0.1)  # conv blocks inside named stages and residual blocks
    assert sum(isinstance(m, nn.Dropout2d) for m in model.modules()) == 8
    assert T.params_registered(model) == before


@pytest.mark.parametrize(("transform", "model", "message"), [
    (T.bn_after_relu, "resnet9", "bn_after_relu cannot apply .* no Conv2d followed directly by an activation"),
    (T.dropout_conv, "conv_bn_net", "dropout_conv cannot apply"),
    (T.dropout_dense, "conv_net", "no hidden Linear"),
    (T.widen_head, "conv_net", "no hidden layer"),
    (T.gap_head, "two_layer_net", "gap_head needs a .N, C, H, W. feature map"),
])
def test_a_transform_with_nothing_to_act_on_raises(transform, model, message):
    with pytest.raises(TrickError, match=message):
        transform(build_model(model))


# ------------------------------------------------------------------------------------------- dropout

def test_dropout_conv_on_the_code_net_matches_its_spatial_dropout_option():
    model = T.dropout_conv(build_model("pal2021_code_net"), p=0.2)
    reference = build_model("pal2021_code_net", spatial_dropout=0.2)
    assert str(model.features) == str(reference.features) and str(model.head) == str(reference.head)
    both = T.dropout_both(build_model("pal2021_code_net"), p=0.2)
    reference = build_model("pal2021_code_net", spatial_dropout=0.2, dense_dropout=0.2)
    assert str(both.features) == str(reference.features) and str(both.head) == str(reference.head)


def test_dropout_conv_sits_after_the_activation_and_any_bn_after_it_before_the_pool():
    model = T.dropout_conv(T.bn_after_relu(build_model("tf_cnn")), p=0.3)
    assert str(model) == str(build_model("tf_cnn", bn="after", conv_dropout=0.3))
    model = T.dropout_conv(T.bn_before_relu(build_model("tf_cnn")), p=0.3)
    assert str(model) == str(build_model("tf_cnn", bn="before", conv_dropout=0.3))


def test_dropout_dense_skips_the_output_layer():
    model = T.dropout_dense(build_model("tf_cnn", head=(32, 16)), p=0.5)
    assert str(model) == str(build_model("tf_cnn", head=(32, 16), dense_dropout=0.5))
    assert [type(m) for m in model.head][-2:] == [nn.Linear, nn.LogSoftmax]


def test_dropout_again_sets_the_new_probability_instead_of_stacking():
    model = T.dropout_both(build_model("tiny_cnn"), p=0.2)
    T.dropout_both(model, p=0.4)
    drops = [m for m in model.modules() if isinstance(m, (nn.Dropout, nn.Dropout2d))]
    assert len(drops) == 3 and all(m.p == 0.4 for m in drops)


@PROPS
@given(model=TINY, p=st.floats(0.05, 0.9), which=st.sampled_from(["dropout_conv", "dropout_dense", "dropout_both"]),
       seed=st.integers(0, 2**16))
def test_dropout_is_inactive_in_eval(model, p, which, seed):
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    model.eval()
    with torch.no_grad():
        plain = model(x)
        out = getattr(T, which)(model, p=p)
        assert torch.equal(out(x), plain)
        assert out.train()(x).shape == plain.shape


def test_dropout_is_active_in_training():
    torch.manual_seed(0)
    model = T.dropout_both(build_model("tiny_cnn"), p=0.5)
    x = torch.randn(4, 3, 32, 32)
    assert not torch.equal(model.train()(x), model(x))


@pytest.mark.parametrize("p", [0.0, 1.0, -0.1, 1.5])
def test_dropout_probability_outside_0_1_is_rejected(p):
    with pytest.raises(TrickError, match=f"dropout_conv:p={p} is invalid"):
        T.dropout_conv(build_model("tiny_cnn"), p=p)


# ------------------------------------------------------------------------------------------- head

def test_widen_and_deepen_head_give_doc_001s_nets():
    wider = T.widen_head(build_model("tf_cnn"), width=512)
    deeper = T.deepen_head(build_model("tf_cnn"), widths=(512, 256))
    assert str(wider) == str(build_model("tf_cnn", head=(512,))) and T.params_registered(wider) == 586_250
    assert str(deeper) == str(build_model("tf_cnn", head=(512, 256))) and T.params_registered(deeper) == 715_018


def test_head_rebuild_keeps_activation_dropout_and_conv_parameters():
    model = build_model("two_layer_net", act="tanh", dropout=0.3)
    T.deepen_head(model, widths=(7, 5))
    assert [type(m) for m in model.head] == [nn.Flatten, nn.Linear, nn.Tanh, nn.Dropout, nn.Linear, nn.Tanh,
                                             nn.Dropout, nn.Linear]
    model = build_model("tf_cnn")
    convs = [p for n, p in model.named_parameters() if n.startswith("features")]
    T.widen_head(model, width=100)
    assert all(any(p is q for q in model.parameters()) for p in convs)


def test_gap_head_replaces_the_dense_head_by_pooling_and_one_linear():
    model = T.gap_head(build_model("tf_cnn"))
    assert [type(m) for m in model.head] == [nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear, nn.LogSoftmax]
    assert T.params_registered(model) == 56_320 + 64 * 10 + 10
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    resnet = T.gap_head(build_model("resnet9", dropout=0.2))
    assert [type(m) for m in resnet.head] == [nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout, nn.Linear]


@PROPS
@given(model=TINY, which=st.sampled_from(["widen", "deepen", "gap"]), width=st.integers(1, 20))
def test_head_transforms_keep_the_output_shape(model, which, width):
    if which == "widen":
        T.widen_head(model, width=width)
    elif which == "deepen":
        T.deepen_head(model, widths=(width, width + 1))
    else:
        T.gap_head(model)
    out = model(torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 10)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(3))  # the LogSoftmax stays at the end
    assert T.params_used(model) == T.params_registered(model)


def test_head_widths_must_be_positive():
    with pytest.raises(TrickError, match="deepen_head:widths=512/0 is invalid"):
        T.deepen_head(build_model("tiny_cnn"), widths=(512, 0))


# ------------------------------------------------------------------------------------------- init schemes

def _init_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(64, 128, 3), nn.BatchNorm2d(128), nn.ReLU(), nn.Flatten(), nn.Linear(800, 400))


FAN_IN = {0: 64 * 9, 4: 800}
FAN_OUT = {0: 128 * 9, 4: 400}


@pytest.mark.parametrize(("scheme", "std"), [
    ("kaiming_normal", lambda fi, fo: math.sqrt(2 / fi)),
    ("kaiming_uniform", lambda fi, fo: math.sqrt(2 / fi)),
    ("xavier_normal", lambda fi, fo: math.sqrt(2 / (fi + fo))),
    ("xavier_uniform", lambda fi, fo: math.sqrt(2 / (fi + fo))),
    ("lecun_normal", lambda fi, fo: math.sqrt(1 / fi)),
    ("small_normal", lambda fi, fo: 1e-4),
    ("init_default", lambda fi, fo: math.sqrt(1 / (3 * fi))),  # PyTorch's U(+-1/sqrt(fan_in))
])
def test_init_weight_std_matches_its_formula(scheme, std):
    model = _init_net()
    biases = {i: model[i].bias.detach().clone() for i in FAN_IN}
    bn = [t.detach().clone() for t in model[1].parameters()]
    with torch.no_grad():
        model[1].weight.fill_(3.0)  # BatchNorm is not a Conv2d or Linear: no scheme but init_default touches it
    out = get_trick(scheme).build()(model)
    assert out is model
    for i in FAN_IN:
        w = model[i].weight.detach()
        expected = std(FAN_IN[i], FAN_OUT[i])
        assert abs(float(w.std()) / expected - 1) < 0.03, (scheme, i)
        assert abs(float(w.mean())) < 0.05 * expected
        bias = model[i].bias
        if scheme in ("kaiming_uniform", "init_default"):  # PyTorch's default bias init: U(+-1/sqrt(fan_in))
            assert bias.abs().max() <= 1 / math.sqrt(FAN_IN[i]) and bias.abs().max() > 0
            if scheme == "kaiming_uniform":
                assert torch.equal(bias, biases[i])
        else:
            assert torch.equal(bias, torch.zeros_like(bias))
    if scheme == "init_default":
        assert torch.equal(model[1].weight, bn[0])
    else:
        assert torch.equal(model[1].weight, torch.full_like(bn[0], 3.0))


def test_uniform_schemes_stay_within_their_bounds():
    model = T.kaiming_uniform(_init_net())
    assert model[0].weight.abs().max() <= math.sqrt(6 / FAN_IN[0])
    model = T.xavier_uniform(_init_net())
    assert model[4].weight.abs().max() <= math.sqrt(6 / (FAN_IN[4] + FAN_OUT[4]))


def test_orthogonal_init_gives_orthonormal_rows():
    model = T.orthogonal(_init_net())
    w = model[4].weight  # 400 x 800: orthonormal rows
    torch.testing.assert_close(w @ w.T, torch.eye(400), atol=1e-4, rtol=0)
    c = model[0].weight.reshape(128, -1)  # 128 x 576
    torch.testing.assert_close(c @ c.T, torch.eye(128), atol=1e-4, rtol=0)


def test_init_reaches_convs_inside_bn_layers():
    model = build_model("conv_bn_net")
    T.small_normal(model, std=1e-3)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5 and all(float(c.weight.detach().std()) < 2e-3 for c in convs)


# ------------------------------------------------------------------------------------------- LSUV

def _layer_vars(model: nn.Module, xb: torch.Tensor) -> list[float]:
    outs: list[float] = []
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    hooks = [m.register_forward_hook(lambda _m, _a, o: outs.append(float(o.var()))) for m in layers]
    with torch.no_grad():
        model.eval()(xb)
    for h in hooks:
        h.remove()
    return outs


@pytest.mark.parametrize("name", ["tiny_cnn", "tf_cnn", "conv_bn_net"])
def test_lsuv_gives_unit_output_variance_on_its_batch(name):
    torch.manual_seed(0)
    model = build_model(name)
    xb = torch.rand(32, 3, 32, 32) * 3  # not unit variance itself, so the scaling is doing the work
    assert any(abs(v - 1) > 0.5 for v in _layer_vars(model, xb))
    T.lsuv_init(model, xb, tol=0.05)
    vs = _layer_vars(model, xb)
    assert len(vs) == len([m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))])
    assert all(abs(v - 1) < 0.05 for v in vs), vs


def test_lsuv_transform_uses_a_random_normal_batch():
    torch.manual_seed(1)
    model = T.lsuv(build_model("tiny_cnn"), tol=0.05)
    # a fresh batch from the same distribution: unit variance up to sampling error
    assert all(abs(v - 1) < 0.3 for v in _layer_vars(model, torch.randn(64, 3, 32, 32)))
    assert all(float(m.bias.abs().max()) == 0 for m in model.modules() if isinstance(m, nn.Linear))
    w = model.head[-2].weight.detach()  # 10 x 16: LSUV starts orthogonal and only rescales, so rows stay orthogonal
    gram = w @ w.T
    torch.testing.assert_close(gram, gram[0, 0] * torch.eye(10), atol=1e-4 * float(gram[0, 0]), rtol=0)


def test_lsuv_leaves_training_flags_and_bn_statistics_alone():
    model = build_model("tf_cnn", bn="before").train()
    stats = [b.clone() for b in model.buffers()]
    T.lsuv(model)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers(), strict=True))


# ------------------------------------------------------------------------------------------- counting

def test_params_used_skips_a_defined_but_uncalled_layer_and_restores_state():
    model = build_model("pal2021_code_net", spatial_dropout=0.2).train()
    model.head[1].weight.requires_grad_(False)
    assert T.params_registered(model) == 204_490 and T.params_used(model) == 167_562
    assert model.training and not model.head[1].weight.requires_grad
    assert all(p.grad is None for p in model.parameters())


def test_params_used_leaves_batchnorm_statistics_untouched():
    model = build_model("tf_cnn", bn="after").train()
    stats = [b.clone() for b in model.buffers()]
    assert T.params_used(model) == 122_890
    assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers(), strict=True))


def test_params_used_takes_feature_vectors():
    assert T.params_used(build_model("two_layer_net", d_in=6400, hidden=200), input_shape=(2, 6400)) == 1_282_210


# ------------------------------------------------------------------------------------------- registry

def test_every_transform_is_registered_with_its_parameters():
    names = ["bn_before_relu", "bn_after_relu", "dropout_dense", "dropout_conv", "dropout_both", "widen_head",
             "deepen_head", "gap_head", "init_default", "kaiming_uniform", "kaiming_normal", "xavier_uniform",
             "xavier_normal", "lecun_normal", "orthogonal", "small_normal", "lsuv"]
    for n in names:
        trick = get_trick(n)
        assert trick.kind == "transform" and trick.description
    assert parse_spec("deepen_head:widths=64/32") == ("deepen_head", {"widths": (64, 32)})
    assert parse_spec("dropout_conv:p=0.3") == ("dropout_conv", {"p": 0.3})
    assert get_trick("LSUVInit").kind == "callback"
    model = get_trick("widen_head").build(width=40)(build_model("tiny_cnn"))
    assert model.head[1].out_features == 40


# ------------------------------------------------------------------------------------------- callbacks

def _learner(tmp_path, cbs, n: int = 32, bs: int = 16, shuffle: bool = True) -> Learner:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
    ds = list(zip(x, y, strict=True))
    dls = DataLoaders(DataLoader(ds, bs=bs, shuffle=shuffle, drop_last=shuffle), DataLoader(ds, bs=bs))
    torch.manual_seed(0)
    return Learner(dls, build_model("tiny_cnn", width=2, hidden=4), loss_func=nn.functional.nll_loss, opt_func=SGD,
                   cbs=cbs, path=tmp_path)


def test_model_transform_applies_once_under_lr_find_then_fit(tmp_path):
    calls = []

    def counted(model: nn.Module) -> nn.Module:
        calls.append(1)
        return T.bn_before_relu(model)

    learn = _learner(tmp_path, T.ModelTransform(counted))
    learn.lr_find(num_it=6, show_plot=False)
    assert len(calls) == 1
    bns = [m for m in learn.model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 2
    before = [bn.weight.detach().clone() for bn in bns]
    learn.fit(1, lr=0.05)
    assert len(calls) == 1
    in_opt = {id(p) for group in learn.opt.param_lists for p in group}
    assert all(id(bn.weight) in in_opt for bn in bns)  # the optimizer was rebuilt over the new parameters
    assert any(not torch.equal(bn.weight, b) for bn, b in zip(bns, before, strict=True))  # and trained them


def test_model_transform_keeps_the_fits_learning_rate(tmp_path):
    seen = []

    class Spy(T.Callback):
        order = 100

        def before_batch(self) -> None:
            seen.append(self.learn.opt.hypers[0]["lr"])

    learn = _learner(tmp_path, [T.ModelTransform(T.bn_after_relu), Spy()])
    learn.fit(1, lr=0.0123)
    assert seen and all(lr == 0.0123 for lr in seen)


def test_lsuv_callback_uses_the_first_training_batch(tmp_path):
    learn = _learner(tmp_path, T.LSUVInit(tol=0.05), n=24, bs=24, shuffle=False)
    learn.fit(1, lr=0.0)  # no step moves the weights, so what LSUV set is what we see
    xb = learn.dls.train.one_batch()[0]
    vs = _layer_vars(learn.model, xb)
    assert len(vs) == 4 and all(abs(v - 1) < 0.05 for v in vs), vs


def test_lsuv_options_are_checked():
    with pytest.raises(TrickError, match="LSUVInit:tol=0"):
        T.LSUVInit(tol=0)
    with pytest.raises(TrickError, match="max_iter=0"):
        T.lsuv(build_model("tiny_cnn"), max_iter=0)


# ------------------------------------------------------------------------------------------- outside CIFAR

def mnist_net() -> nn.Sequential:
    """A 1-channel 28x28 CNN as a Fashion-MNIST user writes it: its Linear fixes the input size."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 13 * 13, 16),
                         nn.ReLU(), nn.Linear(16, 10))


def test_the_input_of_a_28x28_one_channel_model_is_inferred():
    assert T.infer_input_shape(mnist_net()) == (1, 28, 28)
    assert T.infer_input_shape(build_model("tf_cnn")) == (3, 32, 32)
    assert T.infer_input_shape(nn.Sequential(nn.Linear(7, 2))) == (7,)


def test_params_used_gap_head_and_lsuv_work_on_a_28x28_model():
    model = mnist_net()
    assert T.params_used(model) == T.params_registered(model) == 4 * 9 + 4 + 676 * 16 + 16 + 16 * 10 + 10
    T.gap_head(model)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert T.params_used(model) == T.params_registered(model) == 40 + 4 * 10 + 10
    torch.manual_seed(0)
    lsuv = T.lsuv(mnist_net(), tol=0.05)
    out = lsuv[0](torch.randn(64, 1, 28, 28))
    assert abs(float(out.var()) - 1) < 0.3


def test_an_explicit_input_shape_reaches_gap_head_and_lsuv_from_the_command_line_form():
    name, kwargs = parse_spec("gap_head:input_shape=1/28/28")
    model = get_trick(name).build(**kwargs)(mnist_net())
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    name, kwargs = parse_spec("lsuv:input_shape=1/28/28")
    assert kwargs == {"input_shape": (1, 28, 28)}
    get_trick(name).build(**kwargs)(mnist_net())


def test_a_model_whose_input_cannot_be_inferred_gets_one_value_error_sentence():
    odd = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 15 * 15, 10))  # 17x17 inputs only
    for fn in (T.infer_input_shape, T.gap_head, T.lsuv, T.params_used):
        with pytest.raises(ValueError) as e:
            fn(odd)
        msg = str(e.value)
        assert msg.startswith("cannot infer the input of this Sequential")
        assert msg.endswith("give input_shape=(C, H, W)") and "\n" not in msg


def test_lsuv_on_a_batch_the_model_cannot_run_leaves_the_model_as_it_was():
    model = mnist_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TrickError, match=r"^lsuv cannot run this Sequential on a batch of shape \(64, 1, 32, 32\)"):
        T.lsuv(model, input_shape=(1, 32, 32))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(TrickError, match=r"^lsuv cannot run"):
        T.lsuv_init(model, torch.randn(8, 1, 30, 30))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_params_used_on_a_wrong_batch_shape_is_one_sentence_and_restores_the_model():
    model = mnist_net().train()
    with pytest.raises(TrickError, match=r"^params_used cannot run this Sequential on a batch of shape \(2, 3, 32, "
                                         r"32\)"):
        T.params_used(model, input_shape=(2, 3, 32, 32))
    assert model.training and all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("transform", [T.bn_before_relu, T.bn_after_relu])
def test_a_bn_transform_on_a_model_that_already_has_it_warns_in_one_sentence(transform):
    model = transform(build_model("tf_cnn"))
    where = "before" if transform is T.bn_before_relu else "after"
    with pytest.warns(TrickWarning, match=rf"^{transform.__name__} left this Sequential unchanged: every Conv2d "
                                          rf"already has a BatchNorm2d {where} its activation$"):
        transform(model)


def test_a_bn_transform_on_a_bnlayer_model_names_its_bnlayers():
    with pytest.raises(TrickError, match="its BnLayers normalize on their own$"):
        T.bn_before_relu(build_model("conv_bn_net"))
