"""The published numbers: each test accuracy a source document published for a recipe, where it comes from, the
original's own runs where the source gives them, and what explains a miss. Data, read by `claims.reproduce`, which
sets our paper-profile runs beside them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    """One published test accuracy of a recipe, where it comes from, and what explains a miss."""

    recipe: str  # a name in tricks.recipes; its runs are found by the recipe's key
    value: float  # accuracy in [0, 1]
    source: str
    reruns: tuple[float, float] | None = None  # the original's own runs of (nearly) the same recipe: lowest, highest
    # each of the original's runs of the recipe, where the source gives them all (the published run among them, but
    # for doc 003, whose number comes from a rerun not found): the seed noise check compares our mean with their mean
    runs: tuple[float, ...] = ()
    over: bool = False  # the source states a lower bound ("over 90 %"): a miss is only a mean below it
    note: str = ""  # always shown: which experiment of the original this recipe corresponds to
    why: str = ""  # the registered explanation, shown when our mean misses by more than MISS_PP

    def __post_init__(self) -> None:
        if self.reruns is None and len(self.runs) >= 2:  # the range of the original's runs, when they are all given
            object.__setattr__(self, "reruns", (min(self.runs), max(self.runs)))


_B = "doc 001 (notebook 48595ed)"
_A = "doc 000 (notebook 3c63915, §1.4; micro-F1 = accuracy)"
_A_CODE = "the published run: the code's 2-conv net (its third conv never called), inputs never normalized"
_A_TEXT = ("not the published experiment: the intended arm on the text's 3-conv TF-tutorial net (122,570 parameters, "
           "against the code's 167,562)")
_A_NORM = _A_TEXT + ", with inputs normalized (the code never applied its normalization)"
_A_OTHER = "the published number comes from another experiment (the differences named first in this note)"
# doc 000's baseline@code and norm_inputs@code are one recipe: its four runs in the two notebook versions
_A_BASE_RUNS = (0.667, 0.671, 0.686, 0.675)
_C = "doc 003 (Kaggle rerun, not found); range: notebook runs 7616a77 / daa11a8 / 57b885c"
_C_WHY = ("the document's percentages come from a Kaggle rerun that was not found; the lesson's own three runs give "
          "the range shown, on fastai 0.7")
_E = "doc 002 (slides),"
_E_WHY = ("the original is one run of its own NumPy net on the PNG originals (its seed noise unknown; the check uses "
          "ours), and ours trains on the lossy JPEG copy")
_D_WHY = ("recipe details the copies leave open: whether the classifier has Dropout(0.2) is undetermined, and the "
          "original's val accuracy is a mean of per-batch accuracies (batches of 800, the last of 400)")

PUBLISHED: tuple[Published, ...] = (
    # doc 001: the eight arms of the final notebook; the original's runs: it and the two earlier (head-bug, +110
    # params: an extra ReLU + Linear(10, 10)) runs 1137b21 and 3a688a4 (seeds.md §2.3)
    Published("pal2021b/baseline", 0.705, _B, (0.662, 0.733), (0.7045, 0.662, 0.733)),
    Published("pal2021b/wider", 0.742, _B, (0.704, 0.742), (0.7419, 0.704, 0.737)),
    Published("pal2021b/deeper", 0.732, _B, (0.708, 0.732), (0.7320, 0.729, 0.708)),
    Published("pal2021b/bn_before_relu", 0.752, _B, (0.716, 0.7525), (0.7525, 0.746, 0.716)),
    Published("pal2021b/bn_after_relu", 0.745, _B, (0.745, 0.751), (0.7454, 0.746, 0.751)),
    Published("pal2021b/residual", 0.810, _B, (0.807, 0.8104), (0.8104, 0.809, 0.807)),
    Published("pal2021b/grad_clip", 0.728, _B, (0.706, 0.728), (0.7276, 0.706, 0.723)),
    Published("pal2021b/batch128", 0.707, _B, (0.664, 0.724), (0.7068, 0.664, 0.724)),
    # doc 000: every published number came from the bugged code, so the `@code` recipe is the published experiment
    Published("pal2021a/baseline@code", 0.667, _A + "; first version ff7ac12: 0.671", runs=_A_BASE_RUNS,
              note=_A_CODE + "; its runs include norm_inputs@code's two, the same recipe"),
    Published("pal2021a/norm_inputs@code", 0.686, _A + "; first version ff7ac12: 0.675", runs=_A_BASE_RUNS,
              note=_A_CODE + ": the same recipe (and runs) as baseline@code, so 0.686 against 0.667 is two runs of "
                             "one recipe",
              why="one published run of the same recipe as baseline@code (0.667): the two published runs alone "
                  "differ by 1.9 pp"),
    Published("pal2021a/lr_schedule@code", 0.697, _A + "; first version ff7ac12: 0.688",
              runs=(0.697, 0.688), note=_A_CODE,
              why="the original's own weight_decay runs (0.666, 0.676) are this recipe plus coupled L2 1e-4 from "
                  "epoch 3, a change that barely moves ours (compare the weight_decay@code row): the original's two "
                  "lr_schedule runs sit 2.2 pp above its own near-identical arm, and our weight_decay@code matches "
                  "its published value"),
    Published("pal2021a/weight_decay@code", 0.666, _A + "; first version ff7ac12: 0.676",
              runs=(0.666, 0.676), note=_A_CODE),
    Published("pal2021a/init_weights@code", 0.694, _A, note=_A_CODE),
    Published("pal2021a/dropout_dense@code", 0.668, _A + "; first version ff7ac12: 0.641",
              runs=(0.668, 0.641), note=_A_CODE),
    Published("pal2021a/dropout_conv@code", 0.694, _A,
              note=_A_CODE + "; and `model_6 = model_5`: dropout_dense trained 10 more epochs (20 in all), no "
                             "spatial dropout"),
    Published("pal2021a/dropout_both@code", 0.669, _A + "; first version ff7ac12: 0.651",
              runs=(0.669, 0.651), note=_A_CODE),
    # the same numbers beside the arms the suite's claims test (what the author meant)
    Published("pal2021a/baseline", 0.667, _A, note=_A_TEXT + "; the published run is baseline@code",
              why=_A_OTHER),
    Published("pal2021a/norm_inputs", 0.686, _A, note=_A_NORM + "; the published run is norm_inputs@code",
              why=_A_OTHER),
    Published("pal2021a/lr_schedule", 0.697, _A, note=_A_NORM + "; the published run is lr_schedule@code",
              why=_A_OTHER),
    Published("pal2021a/weight_decay", 0.666, _A, note=_A_NORM + "; the published run is weight_decay@code",
              why=_A_OTHER),
    Published("pal2021a/init_weights", 0.694, _A, note=_A_NORM + "; the published run is init_weights@code",
              why=_A_OTHER),
    Published("pal2021a/dropout_dense", 0.668, _A, note=_A_NORM + "; the published run is dropout_dense@code",
              why=_A_OTHER),
    Published("pal2021a/dropout_conv", 0.694, _A,
              note=_A_NORM + ", with real Dropout2d(0.2) after each conv; the published run (dropout_conv@code) "
                             "trained the dense-dropout model 10 more epochs",
              why=_A_OTHER),
    Published("pal2021a/dropout_both", 0.669, _A, note=_A_NORM + "; the published run is dropout_both@code",
              why=_A_OTHER),
    # doc 003: the document's percentages, with the lesson notebook's three runs as the original's range
    Published("fastai2018/simple_net", 0.4724, _C, (0.46924, 0.47519), (0.46924, 0.47353, 0.47519), why=_C_WHY),
    Published("fastai2018/conv_net", 0.5817, _C, (0.58428, 0.60117), (0.59922, 0.58428, 0.60117), why=_C_WHY),
    Published("fastai2018/conv_net2", 0.51787, "doc 003 gives no number ('doesn't improve much'); value: notebook "
              "7616a77 (Howard); range: notebook runs", (0.51787, 0.56123), (0.51787, 0.54356, 0.56123),
              why="the lesson's own three runs spread over 4.3 pp"),
    Published("fastai2018/conv_bn_net", 0.7016, _C, (0.68135, 0.70234), (0.68135, 0.6957, 0.70234), why=_C_WHY),
    Published("fastai2018/conv_bn_net2", 0.664, _C, (0.64609, 0.66856), (0.64609, 0.66856, 0.65488), why=_C_WHY),
    # doc 002: the slide's summary table (test accuracy) and the K-means slide; each row is the recipe the original's
    # code ran for that column
    Published("he2016/naive", 0.52, _E + " summary table ('Naive'; the report .tex: 0.516)", runs=(0.52, 0.516),
              why=_E_WHY),
    Published("he2016/dropout_p5@code", 0.55, _E + " summary table ('Dropout')",
              note="the original's mask randn < 0.5 keeps a unit with probability 0.69, not 0.5", why=_E_WHY),
    Published("he2016/kmeans@code", 0.74, _E + " summary table ('Preprocessed'; 75 % val)",
              note="the original pipeline: ZCA without subtracting the patch mean", why=_E_WHY),
    Published("he2016/kmeans", 0.77, _E + " K-means slide: 'after fix this bug, accuracy increases to 77%'",
              note="the fixed pipeline (mean subtracted before whitening)", why=_E_WHY),
    # doc 004: the tutorial's statements and a third-party rerun of its recipe
    Published("jovian/resnet9", 0.90, "doc 004 text: 'over 90% accuracy'", over=True, why=_D_WHY),
    Published("jovian/resnet9", 0.9055, "doc 004: a third-party rerun of the recipe (final val_acc after 8 epochs; "
              "the original's was not found)", why=_D_WHY),
    Published("jovian/base_cnn", 0.75, "doc 004 text: 'approximately 75%'",
              why="the base recipe comes from a third-party copy (5 epochs, trained on a 45,000-image split); the "
                  "original's epochs and accuracy were not found; ours trains on all 50,000 images"),
)
