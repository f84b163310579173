"""The shared conv block, residual blocks and fast.ai 2018's BnLayer (doc 003)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tricks.layers import (
    BnLayer,
    RandnDropout,
    ResBlock,
    conv_block,
    dense_head,
    pal_res_block,
    resnet9_res_block,
)
from tricks.registry import TrickError

torch.set_num_threads(1)


def _bn_layer(eval_stats: str = "last_batch", seed: int = 0) -> BnLayer:
    torch.manual_seed(seed)
    layer = BnLayer(3, 4, stride=2, eval_stats=eval_stats)
    with torch.no_grad():  # non-trivial scale and shift, so that m and a visibly act
        layer.m.copy_(torch.tensor([0.5, 1.0, 2.0, 3.0])[:, None, None])
        layer.a.copy_(torch.tensor([-1.0, 0.0, 0.25, 4.0])[:, None, None])
    return layer


def _manual(layer: BnLayer, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (F.relu(layer.conv(x)) - mean) / std * layer.m + layer.a


def _stats(layer: BnLayer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h = F.relu(layer.conv(x)).transpose(0, 1).reshape(layer.conv.out_channels, -1)
    return h.mean(1)[:, None, None], h.std(1, unbiased=True)[:, None, None]


# ------------------------------------------------------------------------------------------- BnLayer

def test_bn_layer_train_output_has_channel_mean_a_and_unbiased_std_m():
    layer = _bn_layer().train()
    y = layer(torch.randn(16, 3, 16, 16)).transpose(0, 1).reshape(4, -1)
    torch.testing.assert_close(y.mean(1), layer.a.detach().flatten(), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(1, unbiased=True), layer.m.detach().flatten(), atol=1e-5, rtol=1e-5)
    # the biased std is measurably different at this sample size, so the check above pins "unbiased"
    assert not torch.allclose(y.std(1, unbiased=False), layer.m.detach().flatten(), atol=1e-5, rtol=1e-5)


def test_bn_layer_eval_reuses_the_last_training_batch_statistics_exactly():
    layer = _bn_layer().train()
    a, b, c = torch.randn(8, 3, 16, 16), torch.randn(8, 3, 16, 16) * 2 + 1, torch.randn(4, 3, 16, 16)
    layer(a)
    layer(b)
    mean_b, std_b = _stats(layer, b)
    layer.eval()
    with torch.no_grad():
        out = layer(c)
        expected = _manual(layer, c, mean_b, std_b)
    assert torch.equal(out, expected)
    # and not the eval batch's own statistics, nor the first batch's
    with torch.no_grad():
        assert not torch.allclose(out, _manual(layer, c, *_stats(layer, c)), atol=1e-3)
        assert not torch.allclose(out, _manual(layer, c, *_stats(layer, a)), atol=1e-3)


def test_bn_layer_eval_does_not_update_statistics():
    layer = _bn_layer().train()
    layer(torch.randn(8, 3, 16, 16))
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    layer.eval()
    layer(torch.randn(8, 3, 16, 16) * 5)
    assert all(torch.equal(before[k], v) for k, v in layer.state_dict().items())


def test_bn_layer_running_option_uses_running_averages_seeded_by_the_first_batch():
    layer = _bn_layer("running").train()
    batches = [torch.randn(8, 3, 16, 16) * (1 + i) + i for i in range(3)]
    mean, std = _stats(layer, batches[0])
    for i, b in enumerate(batches):
        layer(b)
        if i:
            bm, bs = _stats(layer, b)
            mean, std = 0.9 * mean + 0.1 * bm, 0.9 * std + 0.1 * bs
    x = torch.randn(4, 3, 16, 16)
    layer.eval()
    with torch.no_grad():
        torch.testing.assert_close(layer(x), _manual(layer, x, mean, std), atol=1e-5, rtol=1e-5)
        last = _manual(layer, x, *_stats(layer, batches[-1]))
        assert not torch.allclose(layer(x), last, atol=1e-3)
    assert int(layer.num_batches_tracked) == 3


def test_bn_layer_momentum_sets_the_running_average_rate():
    layer = BnLayer(3, 4, eval_stats="running", momentum=0.5).train()
    a, b = torch.randn(8, 3, 16, 16), torch.randn(8, 3, 16, 16) + 2
    layer(a)
    layer(b)
    (ma, sa), (mb, sb) = _stats(layer, a), _stats(layer, b)
    torch.testing.assert_close(layer.running_mean, 0.5 * ma + 0.5 * mb)
    torch.testing.assert_close(layer.running_std, 0.5 * sa + 0.5 * sb)


@pytest.mark.parametrize("eval_stats", ["last_batch", "running"])
def test_bn_layer_eval_before_any_training_batch_uses_the_batch_statistics(eval_stats):
    layer = _bn_layer(eval_stats).eval()
    x = torch.randn(6, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), _manual(layer, x, *_stats(layer, x)))


def test_bn_layer_statistics_travel_with_the_state_dict():
    layer = _bn_layer().train()
    layer(torch.randn(8, 3, 16, 16) + 3)
    fresh = _bn_layer(seed=1)
    fresh.load_state_dict(layer.state_dict())
    x = torch.randn(2, 3, 16, 16)
    layer.eval(), fresh.eval()
    with torch.no_grad():
        assert torch.equal(layer(x), fresh(x))
    assert {"last_mean", "last_std", "running_mean", "running_std"} <= {n for n, _ in layer.named_buffers()}


def test_bn_layer_gradient_flows_through_the_batch_statistics():
    layer = _bn_layer().train()
    x = torch.randn(8, 3, 16, 16)
    layer(x).pow(2).sum().backward()
    g_full = layer.conv.weight.grad.clone()
    layer.zero_grad()
    mean, std = (s.detach() for s in _stats(layer, x))  # the same forward with the statistics held constant
    _manual(layer, x, mean, std).pow(2).sum().backward()
    assert layer.m.grad is not None and layer.a.grad is not None
    assert not torch.allclose(g_full, layer.conv.weight.grad)


def test_bn_layer_parameters_are_a_bias_free_conv_plus_m_and_a():
    layer = BnLayer(20, 40)
    assert layer.conv.bias is None and layer.conv.stride == (2, 2) and layer.conv.padding == (1, 1)
    assert sum(p.numel() for p in layer.parameters()) == 20 * 40 * 9 + 2 * 40
    assert layer.m.shape == layer.a.shape == (40, 1, 1)
    assert torch.equal(layer.m, torch.ones(40, 1, 1)) and torch.equal(layer.a, torch.zeros(40, 1, 1))


def test_bn_layer_reset_parameters_forgets_statistics_and_scale():
    layer = _bn_layer().train()
    layer(torch.randn(8, 3, 16, 16))
    layer.reset_parameters()
    assert int(layer.num_batches_tracked) == 0 and torch.equal(layer.m, torch.ones(4, 1, 1))
    assert torch.equal(layer.a, torch.zeros(4, 1, 1)) and torch.equal(layer.last_std, torch.ones(4, 1, 1))


def test_bn_layer_rejects_unknown_eval_stats():
    with pytest.raises(TrickError, match="eval_stats='mean'"):
        BnLayer(3, 4, eval_stats="mean")


# ------------------------------------------------------------------------------------------- conv block

@settings(max_examples=30, deadline=None)
@given(bn=st.sampled_from([None, "before", "after"]), pool=st.booleans(), dropout=st.sampled_from([0.0, 0.3]),
       padding=st.sampled_from([0, 1]), ci=st.integers(1, 4), co=st.integers(1, 6))
def test_conv_block_layout_follows_its_options(bn, pool, dropout, padding, ci, co):
    block = conv_block(ci, co, padding=padding, bn=bn, pool=pool, dropout=dropout)
    kinds = [type(m) for m in block]
    expected = [nn.Conv2d, *([nn.BatchNorm2d] if bn == "before" else []), nn.ReLU,
                *([nn.BatchNorm2d] if bn == "after" else []), *([nn.Dropout2d] if dropout else []),
                *([nn.MaxPool2d] if pool else [])]
    assert kinds == expected
    size = 32 + 2 * padding - 2
    out = block.eval()(torch.randn(2, ci, 32, 32))
    assert out.shape == (2, co, size // 2 if pool else size, size // 2 if pool else size)
    assert sum(p.numel() for p in block.parameters()) == ci * co * 9 + co + (2 * co if bn else 0)


def test_conv_block_rejects_unknown_bn_place_and_bad_residual_options():
    with pytest.raises(TrickError, match="bn='middle'"):
        conv_block(3, 8, bn="middle")
    with pytest.raises(TrickError, match="padding=0"):
        conv_block(3, 8, padding=0, residual=True)
    with pytest.raises(TrickError, match="bn='after'"):
        conv_block(3, 8, bn="after", residual=True)


def test_pal_residual_block_is_relu_of_main_plus_projection_then_pool():
    torch.manual_seed(0)
    block = conv_block(3, 8, residual=True).eval()
    res, pool = block
    assert isinstance(res, ResBlock) and isinstance(pool, nn.MaxPool2d)
    assert isinstance(res.shortcut, nn.Conv2d) and res.shortcut.kernel_size == (1, 1)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(block(x), pool(F.relu(res.main(x) + res.shortcut(x))))
    # doc 001's block 1 arithmetic: 896 + 64 + 9,248 + 64 + 128 at 32 channels
    assert sum(p.numel() for p in pal_res_block(3, 32).parameters()) == 10_400


def test_resnet9_residual_block_adds_the_identity_with_no_activation_after():
    torch.manual_seed(0)
    block = resnet9_res_block(4).eval()
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        out = block(x)
        assert torch.equal(out, block.main(x) + x)
    assert (out < 0).any()  # no ReLU after the add: negative inputs survive the identity path


def test_dense_head_layout():
    head = dense_head(12, (5, 3), 4, act=nn.Tanh, dropout=0.5)
    assert [type(m) for m in head] == [nn.Flatten, nn.Linear, nn.Tanh, nn.Dropout, nn.Linear, nn.Tanh, nn.Dropout,
                                       nn.Linear, nn.LogSoftmax]
    assert [type(m) for m in dense_head(12, (), log_softmax=False, flatten=False)] == [nn.Linear]


def test_dense_head_uses_the_given_dropout_layer():
    head = dense_head(12, (5,), 4, dropout=0.3, dropout_layer=RandnDropout)
    (drop,) = [m for m in head if isinstance(m, (nn.Dropout, RandnDropout))]
    assert isinstance(drop, RandnDropout) and drop.p == 0.3


# ------------------------------------------------------------------------------------------- RandnDropout

PHI = {0.3: 0.6179114, 0.5: 0.6914625, 0.7: 0.7580363}  # the standard normal CDF at p


@pytest.mark.parametrize("p", sorted(PHI))
def test_randn_dropout_keeps_a_unit_with_probability_phi_of_p_and_scales_it_by_one_over_p(p):
    torch.manual_seed(0)
    n = 1_000_000
    out = RandnDropout(p).train()(torch.ones(n))
    kept = out != 0
    sd = (PHI[p] * (1 - PHI[p]) / n) ** 0.5  # about 0.00046
    assert abs(kept.float().mean().item() - PHI[p]) < 5 * sd
    assert min(abs(kept.float().mean().item() - q) for q in (p, 1 - p)) > 0.05  # neither p nor 1 - p
    torch.testing.assert_close(out[kept], torch.full((int(kept.sum()),), 1 / p))


def test_randn_dropout_draws_a_fresh_mask_each_call_and_keeps_the_input_shape():
    torch.manual_seed(0)
    layer = RandnDropout(0.5).train()
    x = torch.randn(4, 8, 5)
    a, b = layer(x), layer(x)
    assert a.shape == x.shape and not torch.equal(a, b)
    zeroed = a == 0
    torch.testing.assert_close(a[~zeroed], x[~zeroed] / 0.5)


def test_randn_dropout_is_the_identity_in_eval():
    x = torch.randn(3, 7)
    layer = RandnDropout(0.3).eval()
    assert torch.equal(layer(x), x)


@pytest.mark.parametrize("p", [0.0, -0.5, float("nan")])
def test_randn_dropout_rejects_a_p_it_cannot_divide_by(p):
    with pytest.raises(TrickError, match=f"option p={p} is invalid"):
        RandnDropout(p)


def test_randn_dropout_shows_p_in_its_repr():
    assert repr(RandnDropout(0.7)) == "RandnDropout(p=0.7)"
