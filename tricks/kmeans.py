"""Whitened K-means triangle features of Coates, Ng & Lee (2011), "An Analysis of Single-Layer Networks in
Unsupervised Feature Learning", as doc 002 put them in front of a 2-layer net (spec/seeds.md §3.3).

Pipeline: random 6x6x3 patches (patch i from image i mod N) -> per-patch normalization (x - mean)/sqrt(var + 10) ->
ZCA whitening P = V diag(1/sqrt(D + 0.1)) V^T of the patch covariance -> K-means (init 0.1·N(0,1), full passes
accumulated over batches of 1,000 patches, empty clusters set to 0) -> for each image every stride-1 window,
normalized and whitened the same way -> triangle activation max(0, mean(dist) - dist) -> sum over 4 quadrants
(doc 002's slices: two halves of rows//2 each, the last row and column dropped) -> per-sample standardization
(var + 0.01). Variances are numpy's (biased) as in doc 002, the covariance is unbiased as np.cov.

`subtract_mean=True` whitens (patches - M)·P, as Coates' reference code; False whitens patches·P, doc 002's bug
("I forgot to subtract mean before doing PCA whitening"). Everything is batched torch: unfold for the windows,
one matmul for the squared distances, images in chunks so memory stays bounded.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from tricks.registry import register

__all__ = ["kmeans", "kmeans_centroids", "kmeans_features", "normalize_patches", "pca_whiten", "quadrant_pooling",
           "random_patches", "standardize", "triangle_features", "whiten_patches", "zca_whiten"]

PATCH_EPS = 10.0  # per-patch normalization: (x - mean) / sqrt(var + 10), pixels in 0..255
WHITEN_EPS = 0.1  # whitening: 1 / sqrt(D + 0.1)
FEATURE_EPS = 0.01  # per-sample standardization of the pooled features
CHUNK_BYTES = 16 * 2**20  # distance matrix of one chunk of images: small chunks stay in cache and run fastest


def _images(x: Any, name: str, patch: int) -> Tensor:
    """`x` as a uint8 tensor (N, C, H, W) at least `patch` pixels wide, or ValueError naming `name`."""
    x = torch.as_tensor(x)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty uint8 tensor of images (N, C, H, W), "
                         f"got {x.dtype} of shape {tuple(x.shape)}")
    if min(x.shape[2:]) < patch:
        raise ValueError(f"{name} images of {x.shape[2]}x{x.shape[3]} pixels are smaller than the "
                         f"{patch}x{patch} patch")
    return x


def random_patches(x: Tensor, n: int, patch: int = 6, generator: torch.Generator | None = None,
                   offset: Tensor | None = None) -> Tensor:
    """`n` random patch x patch windows as float32 rows (n, C·patch²): patch i from image i mod N, any position.

    `offset` (C, H, W), e.g. the mean image, is subtracted from the pixels first. Rows are channel-major, as unfold.
    """
    N, C, H, W = x.shape
    rows = torch.randint(0, H - patch + 1, (n,), generator=generator)
    cols = torch.randint(0, W - patch + 1, (n,), generator=generator)
    d = torch.arange(patch)
    ch = torch.arange(C)[None, :, None, None]
    out = torch.empty(n, C * patch * patch)
    for s in range(0, n, 65536):  # gather in slices so broadcast indices stay small
        i = torch.arange(s, min(s + 65536, n))
        r = (rows[i, None] + d)[:, None, :, None]  # (m, 1, p, 1)
        c = (cols[i, None] + d)[:, None, None, :]  # (m, 1, 1, p)
        p = x[(i % N)[:, None, None, None], ch, r, c].float()  # (m, C, p, p)
        if offset is not None:
            p -= offset[ch, r, c]
        out[s:s + len(i)] = p.reshape(len(i), -1)
    return out


def normalize_patches(p: Tensor, eps: float = PATCH_EPS) -> Tensor:
    """Per-patch brightness and contrast normalization: (p - mean) / sqrt(var + eps) along each row."""
    mean = p.mean(1, keepdim=True)
    var = p.var(1, keepdim=True, correction=0)
    return (p - mean) / torch.sqrt(var + eps)


def _mean_cov(p: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and unbiased covariance of the rows, accumulated in float64 over slices."""
    mean = p.double().mean(0)
    cov = torch.zeros(p.shape[1], p.shape[1], dtype=torch.float64)
    for s in range(0, len(p), 65536):
        c = p[s:s + 65536].double() - mean
        cov += c.T @ c
    return mean.float(), cov / max(len(p) - 1, 1)


def zca_whiten(p: Tensor, eps: float = WHITEN_EPS) -> tuple[Tensor, Tensor]:
    """ZCA whitening of rows `p`: their mean M and P = V diag(1/sqrt(D + eps)) V^T from eig of their covariance."""
    mean, cov = _mean_cov(p)
    d, v = torch.linalg.eigh(cov)
    return mean, ((v * torch.rsqrt(d + eps)) @ v.T).float()


def pca_whiten(p: Tensor, eps: float = WHITEN_EPS) -> tuple[Tensor, Tensor]:
    """PCA whitening of rows `p`: their mean M and P = V diag(1/sqrt(D + eps)), coordinates on the principal axes.

    It differs from ZCA by the rotation V^T only, so distances between whitened patches are the same.
    """
    mean, cov = _mean_cov(p)
    d, v = torch.linalg.eigh(cov)
    return mean, (v * torch.rsqrt(d + eps)).float()


def whiten_patches(p: Tensor, mean: Tensor, P: Tensor, subtract_mean: bool = True) -> Tensor:
    """(p - mean)·P, or p·P when `subtract_mean` is False (doc 002's bug)."""
    return (p - mean) @ P if subtract_mean else p @ P


def kmeans_centroids(x: Tensor, k: int, iters: int = 50, batch: int = 1000,
                     generator: torch.Generator | None = None) -> Tensor:
    """K-means (Lloyd) on rows `x`: init 0.1·N(0,1); each iteration assigns all rows, in batches, then re-centres.

    A cluster left empty gets the zero centroid, as Coates' code (it may win points again in a later pass).
    """
    n, dim = x.shape
    c = 0.1 * torch.randn(k, dim, generator=generator)
    for _ in range(iters):
        half_c2 = 0.5 * (c * c).sum(1)
        sums = torch.zeros(k, dim)
        counts = torch.zeros(k)
        for s in range(0, n, batch):
            xb = x[s:s + batch]
            # nearest centroid maximizes x·c - |c|²/2 (|x|² is the same for all centroids)
            labels = torch.addmm(half_c2, xb, c.T, beta=-1).argmax(1)
            sums.index_add_(0, labels, xb)
            counts += torch.bincount(labels, minlength=k)
        c = sums / counts.clamp_min(1)[:, None]  # an empty cluster's sum is 0, so its centroid becomes 0
    return c


def triangle_features(x: Tensor, centroids: Tensor, mean: Tensor, P: Tensor, *, patch: int = 6,
                      subtract_mean: bool = True, offset: Tensor | None = None, chunk: int | None = None) -> Tensor:
    """Sum-pooled triangle activations (N, 4·K) of every stride-1 window of uint8 images `x` (N, C, H, W).

    Windows are normalized and whitened as the training patches; f = max(0, mean(dist) - dist) over the K centroids.
    """
    N, _, H, W = x.shape
    K = len(centroids)
    R, S = H - patch + 1, W - patch + 1  # 27 x 27 windows for 32 x 32 images
    if chunk is None:
        chunk = max(1, CHUNK_BYTES // (R * S * K * 4))
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1 image, got {chunk}")
    c2 = (centroids * centroids).sum(1)
    pool = quadrant_pooling(R, S)  # (4, R·S)
    out = torch.empty(N, 4 * K)
    for s in range(0, N, chunk):
        xb = x[s:s + chunk].float()
        if offset is not None:
            xb -= offset
        B = len(xb)
        w = F.unfold(xb, patch).transpose(1, 2).reshape(B * R * S, -1)  # (B·R·S, C·patch²)
        w = whiten_patches(normalize_patches(w), mean, P, subtract_mean)
        dist = torch.addmm(c2, w, centroids.T, alpha=-2)  # |c|² - 2 w·c
        dist.add_((w * w).sum(1, keepdim=True)).clamp_min_(0).sqrt_()
        mu = dist.mean(1, keepdim=True)
        f = dist.neg_().add_(mu).clamp_min_(0).view(B, R * S, K)
        out[s:s + B] = (pool @ f).view(B, 4 * K)  # quadrant-major: all K of quadrant 1, then 2, 3, 4
    return out


def quadrant_pooling(rows: int, cols: int) -> Tensor:
    """0/1 matrix (4, rows·cols) summing a rows x cols map over doc 002's four quadrants.

    The halves are [0, rows//2) and [rows//2, rows-1) (the last row and column dropped), the same for columns;
    the quadrants are top-left, top-right, bottom-left, bottom-right.
    """
    hr, hc = rows // 2, cols // 2
    q = torch.zeros(4, rows, cols)
    q[0, :hr, :hc] = q[1, :hr, hc:cols - 1] = q[2, hr:rows - 1, :hc] = q[3, hr:rows - 1, hc:cols - 1] = 1
    return q.view(4, rows * cols)


def standardize(f: Tensor, eps: float = FEATURE_EPS) -> Tensor:
    """Per-sample standardization of feature rows: (f - mean) / sqrt(var + eps)."""
    return (f - f.mean(1, keepdim=True)) / torch.sqrt(f.var(1, keepdim=True, correction=0) + eps)


_WHITEN = {"zca": zca_whiten, "pca": pca_whiten}


def kmeans_features(x_train: Any, x_test: Any, *, n_centroids: int = 1600, patch: int = 6, n_patches: int = 400_000,
                    iters: int = 50, subtract_mean: bool = True, whiten: str = "zca", mean_image: bool = False,
                    seed: int = 0, batch: int = 1000, chunk: int | None = None) -> tuple[Tensor, Tensor]:
    """Learn whitened K-means centroids on training patches and return standardized features (float32 (N, 4·K)).

    `whiten` is "zca", "pca" or "none"; `mean_image=True` first subtracts the training set's mean image, as doc
    002's script did (Coates' code does not). `batch` is the K-means accumulation batch, `chunk` the images per step
    of feature extraction (default: sized to keep its distance matrix near 16 MB, 3 images at K=1600).
    """
    x_train, x_test = _images(x_train, "x_train", patch), _images(x_test, "x_test", patch)
    if x_test.shape[1:] != x_train.shape[1:]:
        raise ValueError(f"x_test images {tuple(x_test.shape[1:])} differ in shape from x_train's "
                         f"{tuple(x_train.shape[1:])}")
    if whiten not in (*_WHITEN, "none"):
        raise ValueError(f"whiten must be 'zca', 'pca' or 'none', got '{whiten}'")
    for name, v in (("n_centroids", n_centroids), ("patch", patch), ("n_patches", n_patches), ("batch", batch)):
        if v < 1:
            raise ValueError(f"{name} must be at least 1, got {v}")
    if iters < 0:
        raise ValueError(f"iters must be 0 or more, got {iters}")
    g = torch.Generator().manual_seed(seed)
    offset = sum(x.double().sum(0) for x in x_train.split(4096)).div(len(x_train)).float() if mean_image else None
    p = normalize_patches(random_patches(x_train, n_patches, patch, g, offset))
    if whiten == "none":
        mean, P = p.mean(0), torch.eye(p.shape[1])
    else:
        mean, P = _WHITEN[whiten](p)
    p = whiten_patches(p, mean, P, subtract_mean)
    centroids = kmeans_centroids(p, n_centroids, iters, batch, g)
    del p
    feats = []
    for x in (x_train, x_test):
        f = triangle_features(x, centroids, mean, P, patch=patch, subtract_mean=subtract_mean, offset=offset,
                              chunk=chunk)
        for rows in f.split(4096):  # in place, slice by slice: no second copy of 50k x 6400 floats
            rows.copy_(standardize(rows))
        feats.append(f)
    return feats[0], feats[1]


@register(name="kmeans", kind="data", ranges={"n_centroids": "[1, inf)", "patch": "[1, 32]", "n_patches": "[1, inf)",
                                              "iters": "[0, inf)", "seed": "[0, inf)"})
def kmeans(arrays: Any, *, n_centroids: int = 1600, patch: int = 6, n_patches: int = 400_000, iters: int = 50,
           subtract_mean: bool = True, whiten: str = "zca", mean_image: bool = False, seed: int = 0) -> Any:
    """Replace pixels by whitened K-means triangle features (Coates et al. 2011; doc 002), 4·n_centroids per image.

    `arrays` is anything with `x_train` and `x_test` uint8 image tensors (a copy with those replaced is returned),
    or a pair (x_train, x_test).
    """
    opts = dict(n_centroids=n_centroids, patch=patch, n_patches=n_patches, iters=iters, subtract_mean=subtract_mean,
                whiten=whiten, mean_image=mean_image, seed=seed)
    if isinstance(arrays, tuple | list) and len(arrays) == 2:
        return kmeans_features(arrays[0], arrays[1], **opts)
    if not (hasattr(arrays, "x_train") and hasattr(arrays, "x_test")):
        raise TypeError(f"kmeans needs arrays with x_train and x_test, or a pair of them; got {type(arrays).__name__}")
    f_train, f_test = kmeans_features(arrays.x_train, arrays.x_test, **opts)
    if dataclasses.is_dataclass(arrays) and not isinstance(arrays, type):
        return dataclasses.replace(arrays, x_train=f_train, x_test=f_test)
    out = copy.copy(arrays)
    out.x_train, out.x_test = f_train, f_test
    return out
