"""Network builders: parameter counts pinned to the spec sheet, output shapes, and layouts of the originals."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tricks.layers import BnLayer, RandnDropout, ResBlock
from tricks.models import MODELS, build_model
from tricks.registry import TrickError
from tricks.transforms import params_registered, params_used

torch.set_num_threads(1)

# (builder, kwargs, registered, used by forward, output is log_softmax) from /work/shared/spec/seeds.md
SPEC = [
    ("tf_cnn", {}, 122_570, 122_570, True),  # doc 001 baseline (§2.2)
    ("tf_cnn", {"padding": 0}, 122_570, 122_570, True),  # doc 000's text: the TF tutorial net (§1.2)
    ("tf_cnn", {"head": (512,)}, 586_250, 586_250, True),
    ("tf_cnn", {"head": (512, 256)}, 715_018, 715_018, True),
    ("tf_cnn", {"bn": "before"}, 122_890, 122_890, True),
    ("tf_cnn", {"bn": "after"}, 122_890, 122_890, True),
    ("tf_cnn", {"residual": True}, 212_714, 212_714, True),
    ("pal2021_code_net", {}, 204_490, 167_562, True),  # conv3 defined, never called (§1.2)
    ("pal2021_code_net", {"spatial_dropout": 0.2, "dense_dropout": 0.2}, 204_490, 167_562, True),
    ("simple_net", {}, 123_330, 123_330, True),  # §4.2
    ("conv_net", {}, 37_490, 37_490, True),
    ("conv_net", {"padding": 1}, 37_490, 37_490, True),
    ("conv_bn_net", {}, 155_970, 155_970, True),  # includes BnLayer's m and a
    ("conv_bn_net", {"deeper": True}, 462_570, 462_570, True),
    ("conv_bn_net", {"first_k": 3}, 155_490, 155_490, True),  # a 3x3 first conv: 480 fewer weights
    ("conv_bn_net", {"first_k": 7}, 156_690, 156_690, True),
    ("jovian_cnn", {}, 5_851_338, 5_851_338, False),  # §5.1
    ("resnet9", {}, 6_575_370, 6_575_370, False),  # §5.2
    ("resnet9", {"dropout": 0.2}, 6_575_370, 6_575_370, False),
    ("resnet9", {"residual": False}, 6_575_370, 6_575_370, False),  # the ablation: same layers, no shortcuts
    ("resnet9", {"bn": False}, 6_570_890, 6_570_890, False),  # 6,575,370 less 2 x 2,240 BatchNorm weights
    ("resnet9", {"bn": False, "residual": False}, 6_570_890, 6_570_890, False),
    ("two_layer_net", {}, 1_079_060, 1_079_060, False),  # §3.1, H=350
    ("two_layer_net", {"hidden": 500}, 1_541_510, 1_541_510, False),
    ("two_layer_net", {"hidden": 500, "dropout": 0.5, "dropout_mask": "randn"}, 1_541_510, 1_541_510, False),
]


@pytest.mark.parametrize(("name", "kwargs", "registered", "used", "log_probs"), SPEC,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw, *_ in SPEC])
def test_builder_matches_the_spec_counts_and_outputs_10_classes(name, kwargs, registered, used, log_probs):
    torch.manual_seed(0)
    model = build_model(name, **kwargs)
    assert params_registered(model) == registered
    assert params_used(model) == used
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 10)
    if log_probs:
        torch.testing.assert_close(out.exp().sum(1), torch.ones(3))
    else:  # logits: no LogSoftmax at the end, so the rows do not sum to one as probabilities
        assert not torch.allclose(out.exp().sum(1), torch.ones(3), atol=1e-3)


def test_every_required_builder_is_registered():
    assert set(MODELS) == {"tf_cnn", "pal2021_code_net", "simple_net", "conv_net", "conv_bn_net", "jovian_cnn",
                           "resnet9", "two_layer_net", "tiny_cnn"}


def _flatten_input_shape(model: nn.Module) -> torch.Size:
    shapes = []
    flat = next(m for m in model.modules() if isinstance(m, nn.Flatten))
    flat.register_forward_pre_hook(lambda _m, a: shapes.append(a[0].shape))
    model.eval()(torch.randn(1, 3, 32, 32))
    return shapes[0]


@pytest.mark.parametrize("padding", [0, 1])
def test_tf_cnn_flattens_64x4x4_with_either_pooling_layout(padding):
    model = build_model("tf_cnn", padding=padding)
    assert _flatten_input_shape(model) == (1, 64, 4, 4)
    pools = [any(isinstance(m, nn.MaxPool2d) for m in block) for block in model.features]
    assert pools == ([True, True, True] if padding else [True, True, False])
    assert all(c.padding == (padding, padding) for c in model.modules() if isinstance(c, nn.Conv2d))


def test_tf_cnn_bn_goes_before_or_after_the_relu():
    before = [type(m) for m in build_model("tf_cnn", bn="before").features[0]]
    after = [type(m) for m in build_model("tf_cnn", bn="after").features[0]]
    assert before == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d]
    assert after == [nn.Conv2d, nn.ReLU, nn.BatchNorm2d, nn.MaxPool2d]


def test_tf_cnn_dropout_layers_appear_only_when_p_is_positive():
    plain = build_model("tf_cnn")
    assert not any(isinstance(m, (nn.Dropout, nn.Dropout2d)) for m in plain.modules())
    model = build_model("tf_cnn", conv_dropout=0.3, dense_dropout=0.4, head=(32, 16))
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout2d)] == [0.3] * 3
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.4, 0.4]


def test_tf_cnn_without_log_softmax_outputs_logits():
    assert not isinstance(build_model("tf_cnn", log_softmax=False).head[-1], nn.LogSoftmax)


def test_tf_cnn_residual_uses_three_projection_blocks():
    blocks = [b[0] for b in build_model("tf_cnn", residual=True).features]
    assert all(isinstance(b, ResBlock) and isinstance(b.shortcut, nn.Conv2d) for b in blocks)
    assert [b.shortcut.out_channels for b in blocks] == [32, 64, 64]


def test_pal2021_code_net_defines_conv3_but_never_calls_it():
    model = build_model("pal2021_code_net")
    calls = []
    model.conv3.register_forward_hook(lambda *_: calls.append(1))
    model.eval()(torch.randn(1, 3, 32, 32))
    assert calls == [] and params_registered(model) - params_used(model) == 64 * 64 * 9 + 64
    assert _flatten_input_shape(model) == (1, 64, 6, 6)  # 32 -> 30 -> 15 -> 13 -> 6: flatten 2304


def test_conv_bn_net_is_built_from_bn_layers_with_the_chosen_eval_statistics():
    for deeper, n in ((False, 4), (True, 8)):
        layers = [m for m in build_model("conv_bn_net", deeper=deeper, bn_eval="running").modules()
                  if isinstance(m, BnLayer)]
        assert len(layers) == n and all(m.eval_stats == "running" for m in layers)
    strides = [m.conv.stride[0] for m in build_model("conv_bn_net", deeper=True).modules() if isinstance(m, BnLayer)]
    assert strides == [2, 1] * 4


def test_resnet9_residual_stages_have_identity_shortcuts():
    model = build_model("resnet9")
    assert isinstance(model.res1.shortcut, nn.Identity) and isinstance(model.res1.act, nn.Identity)
    assert isinstance(model.res2.shortcut, nn.Identity)


@pytest.mark.parametrize(("act", "kind"), [("relu", nn.ReLU), ("leaky_relu", nn.LeakyReLU), ("tanh", nn.Tanh)])
def test_two_layer_net_takes_pixels_or_features(act, kind):
    model = build_model("two_layer_net", d_in=6400, hidden=200, act=act, dropout=0.3)
    assert params_registered(model) == 1_282_210  # §3.1, H=200 on the K-means features
    assert any(isinstance(m, kind) for m in model.modules())
    assert model.eval()(torch.randn(4, 6400)).shape == (4, 10)
    assert build_model("two_layer_net").eval()(torch.randn(4, 3, 32, 32)).shape == (4, 10)
    assert build_model("two_layer_net", n_out=20)(torch.randn(4, 3072)).shape == (4, 20)


@settings(max_examples=15, deadline=None)
@given(width=st.integers(1, 8), hidden=st.integers(1, 16))
def test_tiny_cnn_count_follows_its_arithmetic(width, hidden):
    model = build_model("tiny_cnn", width=width, hidden=hidden)
    w2 = 2 * width
    expected = (3 * width * 9 + width) + (width * w2 * 9 + w2) + (w2 * 64 * hidden + hidden) + (hidden * 10 + 10)
    assert params_registered(model) == params_used(model) == expected
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_unknown_model_name_suggests_close_names():
    with pytest.raises(TrickError, match="unknown model 'resnet_9'; did you mean resnet9"):
        build_model("resnet_9")
    with pytest.raises(TrickError, match="known models: .*tf_cnn"):
        build_model("zzz")


@pytest.mark.parametrize(("name", "kwargs", "message"), [
    ("tf_cnn", {"heads": (64,)}, "model 'tf_cnn' has no option 'heads'"),
    ("tf_cnn", {"bn": "middle"}, "bn='middle' is invalid"),
    ("tf_cnn", {"padding": 2}, "padding=2 is invalid"),
    ("tf_cnn", {"residual": True, "padding": 0}, "residual=True needs padding=1"),
    ("two_layer_net", {"act": "swish"}, "act='swish' is invalid"),
    ("conv_bn_net", {"bn_eval": "ema"}, "eval_stats='ema' is invalid"),
    ("conv_bn_net", {"first_k": 4}, "first_k=4 is invalid: the first kernel must be odd and positive"),
    ("conv_bn_net", {"first_k": 0}, "first_k=0 is invalid"),
    ("conv_bn_net", {"first_k": -1}, "first_k=-1 is invalid"),
    ("two_layer_net", {"dropout_mask": "gauss"}, "dropout_mask='gauss' is invalid: two_layer_net takes bernoulli"),
])
def test_bad_model_options_raise_one_sentence(name, kwargs, message):
    with pytest.raises(TrickError, match=message):
        build_model(name, **kwargs)


def test_two_layer_net_dropout_mask_chooses_the_dropout_layer():
    def drops(**kw):
        kw = {"hidden": 8, "dropout": 0.3, **kw}
        return [m for m in build_model("two_layer_net", **kw).modules() if isinstance(m, (nn.Dropout, RandnDropout))]

    (bern,) = drops()
    assert type(bern) is nn.Dropout and bern.p == 0.3
    assert drops(dropout_mask="bernoulli")[0].__class__ is nn.Dropout
    (randn,) = drops(dropout_mask="randn")
    assert isinstance(randn, RandnDropout) and randn.p == 0.3
    assert drops(dropout=0.0, dropout_mask="randn") == []  # no dropout, no layer, whatever the mask


def _copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """The same tensors in the same order (the two layouts name their modules differently)."""
    src_state, dst_state = src.state_dict(), dst.state_dict()
    assert [v.shape for v in src_state.values()] == [v.shape for v in dst_state.values()]
    dst.load_state_dict(dict(zip(dst_state, src_state.values(), strict=True)))


def test_resnet9_without_residual_drops_both_identity_shortcuts_and_nothing_else():
    torch.manual_seed(0)
    res, plain = build_model("resnet9").eval(), build_model("resnet9", residual=False).eval()
    assert not any(isinstance(m, ResBlock) for m in plain.modules())
    _copy_weights(res, plain)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        h = plain.conv2(plain.conv1(x))
        assert torch.equal(plain.res1(h), res.res1.main(h))  # the same stage minus the identity
        torch.testing.assert_close(res.res1(h), plain.res1(h) + h)
        assert not torch.allclose(res(x), plain(x), atol=1e-3)
    def layers(model):
        return [type(m) for m in model.modules() if not list(m.children()) and not isinstance(m, nn.Identity)]

    assert layers(res) == layers(plain)  # the same conv, BN, ReLU, pool and linear layers in the same order


def test_resnet9_without_bn_has_no_batchnorm_and_keeps_its_shortcuts():
    model = build_model("resnet9", bn=False)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert isinstance(model.res1, ResBlock) and isinstance(model.res1.shortcut, nn.Identity)
    assert isinstance(model.res2, ResBlock) and isinstance(model.res2.shortcut, nn.Identity)
    assert all(c.bias is not None for c in model.modules() if isinstance(c, nn.Conv2d))
    plain = build_model("resnet9", bn=False, residual=False)
    assert not any(isinstance(m, (ResBlock, nn.modules.batchnorm._BatchNorm)) for m in plain.modules())


def test_conv_bn_net_first_kernel_keeps_the_same_padding_layout():
    for k in (3, 5, 7):
        first = build_model("conv_bn_net", first_k=k).features[0]
        assert isinstance(first, nn.Conv2d) and first.kernel_size == (k, k) and first.padding == (k // 2, k // 2)
    assert build_model("conv_bn_net").features[0].kernel_size == (5, 5)  # the original's 5x5 by default


@pytest.mark.parametrize("name,width,count", [("resnet9", 64, 6_575_370), ("resnet9", 16, 413_514),
                                              ("jovian_cnn", 32, 5_851_338), ("jovian_cnn", 8, 367_290)])
def test_doc_004s_nets_scale_by_width_and_keep_the_published_count_at_the_published_width(name, width, count):
    model = build_model(name, width=width)
    assert params_used(model, input_shape=(2, 3, 32, 32)) == count
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_a_quarter_width_resnet9_keeps_its_shape_with_a_quarter_of_the_channels():
    full, quarter = build_model("resnet9"), build_model("resnet9", width=16, residual=False, bn=False)
    convs = [m.out_channels for m in full.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels * 4 for m in quarter.modules() if isinstance(m, nn.Conv2d)] == convs
    assert not any(isinstance(m, (nn.BatchNorm2d, ResBlock)) for m in quarter.modules())


@pytest.mark.parametrize("name,width", [("resnet9", 0), ("jovian_cnn", 12), ("jovian_cnn", 0)])
def test_an_invalid_width_is_one_clear_error(name, width):
    with pytest.raises(TrickError, match=f"width={width} is invalid"):
        build_model(name, width=width)
