"""Claims that several source documents make, or dispute, about the same trick (spec sheet §7, X-1 to X-8).

Each is the intersection of the documents' own comparisons, each under its own document's recipe: it holds only
if the trick does what they say everywhere it was said. The arms are the per-document ones, so these claims add no
training; they do add to the Holm family, as separate statements should.
"""

import pytest

from claims.declare import check, compound, part
from claims.spec import Form

SRC = "spec sheet §7 (cross-document)"
S, N = Form.SUPERIORITY, Form.NONINFERIORITY

X_1 = compound(
    "X-1", SRC + ": doc 001 'BN before the ReLU is the better setup'; doc 003 'put it after the ReLU'",
    "BatchNorm placement: each document's advice holds under its own recipe",
    [part("X-1/001", N, "pal2021b/bn_before_relu", "pal2021b/bn_after_relu"),
     part("X-1/003", N, "fastai2018/bn_after_relu", "fastai2018/bn_before_relu")],
    note="Both parts can hold at once only if placement matters little; a refuted part names the document that "
         "was wrong under its own recipe.")
X_2 = compound(
    "X-2", SRC + ": docs 001, 003, 004", "residual connections help",
    [part("X-2/001", S, "pal2021b/residual", "pal2021b/baseline"),
     part("X-2/004", S, "jovian/resnet9", "jovian/resnet9-no_residual")])
X_3 = compound(
    "X-3", SRC + ": docs 000, 002, 004", "input normalization helps",
    [part("X-3/000", S, "pal2021a/norm_inputs", "pal2021a/baseline"),
     part("X-3/004", S, "jovian/resnet9", "jovian/resnet9-no_norm")],
    note="Doc 002 subtracts the mean image in every arm and never ablates it.")
X_4 = compound(
    "X-4", SRC + ": doc 000 found no gain (0.666, its worst); doc 004 uses it",
    "weight decay: each document's statement holds under its own recipe (doc 000: it does not help; doc 004: it "
    "helps)",
    [part("X-4/000", N, "pal2021a/lr_schedule", "pal2021a/weight_decay"),
     part("X-4/004", S, "jovian/resnet9", "jovian/resnet9-no_wd")],
    note="Doc 000's part is its own finding: the arm without weight decay is at least as good (weight decay gains "
         "less than Δ); doc 004's part is its use of it as a gain.")
X_5 = compound(
    "X-5", SRC + ": doc 000 (conv yes, dense no), doc 002 (+3%), mp2 (little)", "dropout helps",
    [part("X-5/000", S, "pal2021a/dropout_conv", "pal2021a/l2_from_start"),
     part("X-5/002", S, "he2016/dropout_p5", "he2016/no_dropout")])
X_6 = compound(
    "X-6", SRC + ": doc 001 (modest), doc 004 (used)", "gradient clipping helps",
    [part("X-6/001", S, "pal2021b/grad_clip", "pal2021b/baseline"),
     part("X-6/004", S, "jovian/resnet9", "jovian/resnet9-no_clip")])
X_7 = compound(
    "X-7", SRC + ": doc 000 (yes), doc 002 (only for deep nets)",
    "Kaiming initialization: each document's statement holds under its own recipe (doc 000: it helps; doc 002: no "
    "difference in the two-layer net)",
    [part("X-7/000", S, "pal2021a/kaiming_only", "pal2021a/baseline"),
     part("X-7/002", Form.EQUIVALENCE, "he2016/init_kaiming_normal", "he2016/dropout_p5")],
    note="Doc 002 says the difference 'can't be seen from our two layers shallow neural net' and expects it only in "
         "deep nets (mp2, not runnable here), so its part is an equivalence.")
X_8 = compound(
    "X-8", SRC + ": docs 000, 002, 004", "adaptive optimizers train faster than SGD",
    [part("X-8/000", S, "pal2021a/baseline", "pal2021a/sgd", metric="acc_auc"),
     part("X-8/002", S, "he2016/rmsprop_1k", "he2016/sgd_1k", metric="acc_auc"),
     part("X-8/004", S, "jovian/resnet9", "jovian/resnet9-sgd", metric="acc_auc")])

CROSS = (X_1, X_2, X_3, X_4, X_5, X_6, X_7, X_8)


@pytest.mark.parametrize("claim", [pytest.param(c, marks=pytest.mark.claims(c), id=c.id) for c in CROSS])
def test_cross_document_claim(claim, claim_decision):
    check(claim, claim_decision)
