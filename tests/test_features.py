"""Tests of tricks/kmeans.py on small synthetic images: shapes, whitening, K-means, triangle features, the trick."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tricks.catalog import get_trick, parse_spec
from tricks.kmeans import (
    kmeans,
    kmeans_centroids,
    kmeans_features,
    normalize_patches,
    pca_whiten,
    quadrant_pooling,
    random_patches,
    standardize,
    triangle_features,
    whiten_patches,
    zca_whiten,
)

torch.set_num_threads(1)

SMALL = dict(n_centroids=16, n_patches=2000, iters=4)


def images(n: int = 40, size: int = 32, seed: int = 0, structured: bool = True) -> torch.Tensor:
    """uint8 (n, 3, size, size): a per-image brightness ramp (so the mean patch is not flat) plus noise."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 160, size)[None, None, None, :] if structured else torch.zeros(1)
    x = ramp * torch.rand(n, 3, 1, 1, generator=g) + 90 * torch.rand(n, 3, size, size, generator=g)
    return x.clamp(0, 255).to(torch.uint8)


def naive_features(x: np.ndarray, centroids: np.ndarray, mean: np.ndarray, P: np.ndarray, patch: int,
                   subtract_mean: bool) -> np.ndarray:
    """Window by window, as spec/seeds.md §3.3 describes it, in float64 numpy."""
    out = []
    for img in x.astype(np.float64):
        C, H, W = img.shape
        R, S = H - patch + 1, W - patch + 1
        f = np.zeros((R, S, len(centroids)))
        for r in range(R):
            for c in range(S):
                w = img[:, r:r + patch, c:c + patch].ravel()
                w = (w - w.mean()) / np.sqrt(w.var() + 10)
                w = (w - mean) @ P if subtract_mean else w @ P
                dist = np.sqrt(((w[None, :] - centroids) ** 2).sum(1))
                f[r, c] = np.maximum(0, dist.mean() - dist)
        hr, hs = R // 2, S // 2
        out.append(np.concatenate([f[:hr, :hs].sum((0, 1)), f[:hr, hs:S - 1].sum((0, 1)),
                                   f[hr:R - 1, :hs].sum((0, 1)), f[hr:R - 1, hs:S - 1].sum((0, 1))]))
    return np.array(out)


# --------------------------------------------------------------------------------------------- the pipeline


def test_features_have_four_per_centroid_for_train_and_test():
    x = images(40)
    f_train, f_test = kmeans_features(x[:30], x[30:], **SMALL)
    assert f_train.shape == (30, 64) and f_test.shape == (10, 64)
    assert f_train.dtype == f_test.dtype == torch.float32
    assert torch.isfinite(f_train).all() and torch.isfinite(f_test).all()


def test_features_are_standardized_per_sample():
    f_train, _ = kmeans_features(images(20), images(4, seed=1), **SMALL)
    assert torch.allclose(f_train.mean(1), torch.zeros(20), atol=1e-5)
    v = f_train.var(1, correction=0)
    assert ((v > 0.9) & (v < 1.0)).all()  # var/(var + 0.01) of the pooled activations


def test_same_seed_same_features_other_seed_other_features():
    x = images(24)
    a = kmeans_features(x[:20], x[20:], seed=3, **SMALL)
    b = kmeans_features(x[:20], x[20:], seed=3, **SMALL)
    c = kmeans_features(x[:20], x[20:], seed=4, **SMALL)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.allclose(a[0], c[0])


@pytest.mark.parametrize("opt", [{"subtract_mean": False}, {"whiten": "none"}, {"mean_image": True}])
def test_each_option_changes_the_features(opt):
    x = images(24)
    base = kmeans_features(x[:20], x[20:], **SMALL)[0]
    assert not torch.allclose(base, kmeans_features(x[:20], x[20:], **SMALL, **opt)[0], atol=1e-3)


def test_pca_and_zca_whitening_give_features_of_the_same_quality():
    # PCA differs from ZCA by a rotation, which preserves distances; only the random init differs in effect
    x = images(24)
    zca = kmeans_features(x[:20], x[20:], whiten="zca", **SMALL)[0]
    pca = kmeans_features(x[:20], x[20:], whiten="pca", **SMALL)[0]
    assert zca.shape == pca.shape and torch.isfinite(pca).all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(x_train=images(4).float(), x_test=images(2)), "x_train must be a non-empty uint8 tensor"),
    (dict(x_train=images(4), x_test=images(2)[:, 0]), "x_test must be a non-empty uint8 tensor"),
    (dict(x_train=images(4), x_test=images(2, size=16)), "x_test images (3, 16, 16) differ in shape"),
    (dict(x_train=images(4, size=4), x_test=images(2, size=4)), "smaller than the 6x6 patch"),
    (dict(x_train=images(4), x_test=images(2), whiten="pcaa"), "whiten must be 'zca', 'pca' or 'none'"),
    (dict(x_train=images(4), x_test=images(2), n_centroids=0), "n_centroids must be at least 1"),
])
def test_bad_input_is_one_clear_value_error(kwargs, message):
    with pytest.raises(ValueError) as e:
        kmeans_features(**kwargs)
    assert message in str(e.value)


# --------------------------------------------------------------------------------------------- the pieces


def test_random_patches_come_from_image_i_mod_n_at_valid_positions():
    x = torch.arange(5 * 3 * 8 * 8).reshape(5, 3, 8, 8).to(torch.uint8)  # every pixel value tells where it is
    p = random_patches(x, 12, patch=3, generator=torch.Generator().manual_seed(0))
    assert p.shape == (12, 27)
    for i, row in enumerate(p):
        img = x[i % 5]
        windows = [img[:, r:r + 3, c:c + 3].reshape(-1).float() for r in range(6) for c in range(6)]
        assert any(torch.equal(w, row) for w in windows), f"patch {i} is no 3x3 window of image {i % 5}"


def test_random_patches_subtract_the_offset_at_the_same_pixels():
    x = images(6, size=10)
    offset = torch.rand(3, 10, 10) * 50
    a = random_patches(x, 30, 4, torch.Generator().manual_seed(1))
    b = random_patches(x, 30, 4, torch.Generator().manual_seed(1), offset=offset)
    z = random_patches(torch.zeros_like(x), 30, 4, torch.Generator().manual_seed(1), offset=offset)
    assert torch.allclose(a - b, -z, atol=1e-4)


def test_normalized_patches_have_zero_mean_and_contrast_with_eps_10():
    p = torch.rand(100, 27) * 255
    n = normalize_patches(p)
    assert torch.allclose(n.mean(1), torch.zeros(100), atol=1e-4)
    v = p.var(1, correction=0)
    assert torch.allclose(n.var(1, correction=0), v / (v + 10), rtol=1e-4)


def correlated(n: int = 20000, d: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g)
    return torch.randn(n, d, generator=g) @ mix + 5 * torch.randn(d, generator=g)


@pytest.mark.parametrize("whiten", [zca_whiten, pca_whiten])
def test_whitened_patches_have_identity_covariance(whiten):
    x = correlated()
    mean, P = whiten(x, eps=1e-6)
    w = whiten_patches(x, mean, P)
    assert torch.allclose(w.mean(0), torch.zeros(12), atol=1e-3)
    assert torch.allclose(torch.cov(w.T), torch.eye(12), atol=1e-3)


def test_whitening_shrinks_each_eigen_direction_by_d_over_d_plus_eps():
    x = correlated(d=6)
    mean, P = zca_whiten(x, eps=0.1)
    d, v = torch.linalg.eigh(torch.cov(x.T.double()))
    expected = (v * (d / (d + 0.1))) @ v.T
    assert torch.allclose(torch.cov(whiten_patches(x, mean, P).T).double(), expected, atol=1e-3)
    assert torch.allclose(P, P.T, atol=1e-5)  # ZCA's P is symmetric


def test_zca_and_pca_whitening_preserve_the_same_distances():
    x = correlated(n=500, d=8)
    wz = whiten_patches(x, *zca_whiten(x))
    wp = whiten_patches(x, *pca_whiten(x))
    exact = "donot_use_mm_for_euclid_dist"
    assert torch.allclose(torch.cdist(wz[:50], wz[:50], compute_mode=exact),
                          torch.cdist(wp[:50], wp[:50], compute_mode=exact), atol=1e-3)


def test_subtract_mean_toggles_the_mean_of_whitened_patches():
    p = normalize_patches(random_patches(images(40), 5000, 6, torch.Generator().manual_seed(0)))
    mean, P = zca_whiten(p)
    assert mean.norm() > 0.5  # the ramp makes the mean patch far from flat
    fixed = whiten_patches(p, mean, P, subtract_mean=True)
    buggy = whiten_patches(p, mean, P, subtract_mean=False)
    assert fixed.mean(0).abs().max() < 1e-4
    assert torch.allclose(buggy.mean(0), mean @ P, atol=1e-4) and (mean @ P).norm() > 1.0
    assert torch.allclose(buggy - fixed, (mean @ P).expand_as(fixed), atol=1e-4)


def test_kmeans_one_iteration_is_a_lloyd_step_from_the_0_1_gaussian_init():
    # seeded: an unseeded draw can put a point on a near-tie between two centroids, where the two distance formulas
    # may pick different (equally near) clusters
    x = torch.randn(103, 5, generator=torch.Generator().manual_seed(11))
    init = 0.1 * torch.randn(9, 5, generator=torch.Generator().manual_seed(7))
    c = kmeans_centroids(x, 9, iters=1, batch=7, generator=torch.Generator().manual_seed(7))
    labels = torch.cdist(x, init).argmin(1)
    for k in range(9):
        members = x[labels == k]
        assert torch.allclose(c[k], members.mean(0) if len(members) else torch.zeros(5), atol=1e-5)


def test_kmeans_finds_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[10.0, 0], [-10, 0], [0, 10], [0, -10]])
    x = (centres[:, None] + 0.1 * torch.randn(4, 200, 2, generator=g)).reshape(-1, 2)
    # starting near the origin, all four points of the compass attract some of the init centroids
    c = kmeans_centroids(x, 12, iters=20, generator=torch.Generator().manual_seed(1))
    nonzero = c[c.norm(dim=1) > 0]
    assert torch.cdist(centres, nonzero).min(1).values.max() < 0.1


def test_kmeans_sets_empty_clusters_to_zero_without_nans():
    x = torch.randn(10, 3) + 20  # far from every init centroid: one centroid takes all, the others are empty
    c = kmeans_centroids(x, 30, iters=2, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(c).all()
    assert (c.norm(dim=1) == 0).sum() >= 20


@settings(max_examples=12, deadline=None)
@given(patch=st.integers(2, 4), size=st.integers(5, 9), k=st.integers(1, 5), subtract_mean=st.booleans(),
       seed=st.integers(0, 10**6))
def test_triangle_features_match_a_window_by_window_reference(patch, size, k, subtract_mean, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (3, 3, size, size), dtype=torch.uint8, generator=g)
    d = 3 * patch * patch
    centroids, mean = torch.randn(k, d, generator=g), 0.3 * torch.randn(d, generator=g)
    P = torch.eye(d) + 0.1 * torch.randn(d, d, generator=g)
    got = triangle_features(x, centroids, mean, P, patch=patch, subtract_mean=subtract_mean, chunk=2)
    ref = naive_features(x.numpy(), centroids.double().numpy(), mean.double().numpy(), P.double().numpy(), patch,
                         subtract_mean)
    assert got.shape == (3, 4 * k)
    assert np.allclose(got.numpy(), ref, rtol=1e-4, atol=1e-3)
    assert (got >= 0).all()  # sums of triangle activations max(0, mean - dist)


def test_triangle_activations_are_non_negative_and_not_all_zero():
    x = images(6)
    p = normalize_patches(random_patches(x, 3000, 6, torch.Generator().manual_seed(0)))
    mean, P = zca_whiten(p)
    c = kmeans_centroids(whiten_patches(p, mean, P), 8, iters=3, generator=torch.Generator().manual_seed(0))
    f = triangle_features(x, c, mean, P)
    assert f.shape == (6, 32) and (f >= 0).all() and (f > 0).float().mean() > 0.3


def test_standardize_uses_var_plus_0_01():
    f = torch.rand(5, 40)
    v = f.var(1, correction=0, keepdim=True)
    assert torch.allclose(standardize(f), (f - f.mean(1, keepdim=True)) / torch.sqrt(v + 0.01))


# --------------------------------------------------------------------------------------------- the registered trick


@pytest.fixture
def trick_modules():
    """Every trick module is loaded: tricks.catalog imports them all."""


def test_kmeans_is_a_registered_data_trick_with_typed_parameters(trick_modules):
    trick = get_trick("kmeans")
    assert trick.kind == "data" and trick.factory is kmeans
    types = {p.name: p.type for p in trick.params}
    assert types == {"n_centroids": int, "patch": int, "n_patches": int, "iters": int, "subtract_mean": bool,
                     "whiten": str, "mean_image": bool, "seed": int}
    assert parse_spec("kmeans:n_centroids=16,subtract_mean=false,whiten=pca") == (
        "kmeans", {"n_centroids": 16, "subtract_mean": False, "whiten": "pca"})


@dataclasses.dataclass(frozen=True)
class Arrays:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    classes: tuple[str, ...]


def test_the_trick_replaces_pixels_by_features_and_keeps_the_rest(trick_modules):
    x = images(24)
    arrays = Arrays(x[:20], torch.arange(20), x[20:], ("a", "b"))
    out = get_trick("kmeans").build(**SMALL)(arrays)
    assert isinstance(out, Arrays) and out.y_train is arrays.y_train and out.classes == ("a", "b")
    assert out.x_train.shape == (20, 64) and out.x_test.shape == (4, 64)
    assert torch.equal(out.x_train, kmeans_features(x[:20], x[20:], **SMALL)[0])
    pair = kmeans((x[:20], x[20:]), **SMALL)
    assert torch.equal(pair[1], out.x_test)
    with pytest.raises(TypeError, match="kmeans needs arrays with x_train and x_test"):
        kmeans(x, **SMALL)


def test_quadrant_pooling_of_27_windows_sums_four_13_by_13_blocks_and_drops_the_last_row_and_column():
    q = quadrant_pooling(27, 27).view(4, 27, 27)
    assert (q.sum((1, 2)) == 169).all() and (q.sum(0) <= 1).all()
    assert q[:, 26, :].sum() == 0 and q[:, :, 26].sum() == 0
    assert q[0, 0, 0] == q[1, 0, 13] == q[2, 13, 0] == q[3, 25, 25] == 1


def test_triangle_features_do_not_depend_on_the_chunk_size():
    x = images(7)
    g = torch.Generator().manual_seed(0)
    c, mean, P = torch.randn(5, 108, generator=g), torch.randn(108, generator=g), torch.eye(108)
    one = triangle_features(x, c, mean, P, chunk=1)
    assert torch.allclose(one, triangle_features(x, c, mean, P), rtol=1e-5)
    assert torch.allclose(one, triangle_features(x, c, mean, P, chunk=3), rtol=1e-5)
    with pytest.raises(ValueError, match="chunk must be at least 1 image"):
        triangle_features(x, c, mean, P, chunk=0)
