"""The published experiment arms of the five source documents, as named `Recipe`s.

Names are `<source>/<arm>`. Sources: `pal2021a` (doc 000, Sujit Pal, Jan 2021), `pal2021b` (doc 001, Pal, Mar 2021),
`he2016` (doc 002, Yihui He's cs231n slides), `fastai2018` (doc 003, fast.ai lesson 7), `jovian` (doc 004, ResNet9
tutorial). Where an original's code had a bug, the arm is what the author meant and the bugged run is its own recipe
with the suffix `@code`. The numbers below come from the source documents and their code (spec sheet §1-§6).
"""

from __future__ import annotations

from dataclasses import replace

from tricks.recipe import Augment, Phase, Recipe, TrickUse, add_scaled_variant, kw
from tricks.registry import suggestions

# PyTorch's Adam defaults expressed for fastai's Adam (fastai's own defaults: eps 1e-5, wd 0.01 decoupled)
TORCH_ADAM = kw(sqr_mom=0.999, eps=1e-8, wd=0.0, decouple_wd=False)
# PyTorch Adam with coupled L2 (`weight_decay=` in torch.optim.Adam), BN and biases decayed too
TORCH_ADAM_L2 = kw(sqr_mom=0.999, eps=1e-8, wd=1e-4, decouple_wd=False)

CIFAR_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))  # doc 000/003 (training-set mean, std)
JOVIAN_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))  # doc 004 (a widely copied, wrong std)

RECIPES: dict[str, Recipe] = {}


def _add(name: str, recipe: Recipe, description: str) -> Recipe:
    r = replace(recipe, name=name, description=description)
    RECIPES[name] = r
    return r


def recipe_source(name: str | None) -> str | None:
    """The source document of a recipe name, its part before the "/" ("pal2021b/baseline" -> "pal2021b"); None for a
    nameless recipe."""
    return name.split("/", 1)[0] if name else None


def get_recipe(name: str) -> Recipe:
    """The named recipe; an unknown name raises ValueError suggesting the closest names."""
    if name in RECIPES:
        return RECIPES[name]
    close = suggestions(name, list(RECIPES))
    hint = f"; did you mean {' or '.join(close)}?" if close else "; `python -m tricks.apply --list` lists them"
    raise ValueError(f"unknown recipe '{name}'{hint}")


# ------------------------------------------------------------------ doc 000: pal2021a (10 epochs, Adam, batch 64)
# The text's net: the TensorFlow tutorial CNN (3 valid convs, 122,570 params). The code ran a 2-conv net whose third
# conv is defined but never called; those runs are the `@code` recipes.
_A_NET = dict(model="tf_cnn", model_kwargs=kw(padding=0))
_A_CODE_NET = dict(model="pal2021_code_net", model_kwargs=())
_A_BASE = Recipe(**_A_NET, opt="adam", opt_kwargs=TORCH_ADAM, phases=(Phase("constant", 10, 1e-3),), bs=64)
_A_SCHED = (Phase("exp_decay", 10, 2e-3, kw(gamma=0.8)),)  # ExponentialLR(0.8) stepped after each epoch
# the author meant every later step to keep normalized inputs (cell 30 rebinds the datasets); the code never did
_A_LR = replace(_A_BASE, normalize="train", phases=_A_SCHED)
_A_WD = replace(_A_LR, opt_kwargs=TORCH_ADAM_L2)
_DROP = {"dense": "dropout_dense", "conv": "dropout_conv", "both": "dropout_both"}


def _pal_a(code: bool) -> None:
    net, sfx = (_A_CODE_NET, "@code") if code else (_A_NET, "")
    norm = None if code else "train"  # the bug: no experiment ever saw normalized inputs
    base = replace(_A_BASE, **net)
    lr = replace(_A_LR, **net, normalize=norm)
    wd = replace(_A_WD, **net, normalize=norm)
    _add(f"pal2021a/baseline{sfx}", base, "Adam 1e-3 constant, raw pixels /255")
    _add(f"pal2021a/norm_inputs{sfx}", replace(base, normalize=norm),
         "baseline + per-channel input normalization" + (" (not applied: the original's bug)" if code else ""))
    _add(f"pal2021a/lr_schedule{sfx}", lr, "Adam 2e-3, learning rate x0.8 after each epoch")
    _add(f"pal2021a/weight_decay{sfx}",
         replace(lr, callbacks=(TrickUse("WeightDecayFrom", kw(wd=1e-4, start_epoch=2)),)),
         "lr_schedule + coupled L2 1e-4 switched on after epoch 2")
    _add(f"pal2021a/init_weights{sfx}",
         replace(wd, transforms=(TrickUse("dropout_dense", kw(p=0.2)), TrickUse("kaiming_uniform"))),
         "lr_schedule + L2 1e-4 + dense dropout 0.2 + Kaiming-uniform init")
    for arm, t in _DROP.items():
        if code and arm == "conv":
            continue
        _add(f"pal2021a/dropout_{arm}{sfx}", replace(wd, transforms=(TrickUse(t, kw(p=0.2)),)),
             f"lr_schedule + L2 1e-4 + {t.replace('_', ' ')} 0.2")


_pal_a(code=False)
_pal_a(code=True)
# the original's dropout_conv run trained the dense-dropout model on for 10 more epochs with a new optimizer
_add("pal2021a/dropout_conv@code",
     replace(RECIPES["pal2021a/dropout_dense@code"], phases=_A_SCHED + (replace(_A_SCHED[0], new_opt=True),)),
     "the original's bugged dropout_conv: dropout_dense trained 10 more epochs (20 in all), no spatial dropout")

# ------------------------------------------------------------------ doc 001: pal2021b (10 epochs, Adam 1e-3, bs 64)
_B_BASE = Recipe(model="tf_cnn", model_kwargs=kw(padding=1), opt="adam", opt_kwargs=TORCH_ADAM,
                 phases=(Phase("constant", 10, 1e-3),), bs=64)
_add("pal2021b/baseline", _B_BASE, "TF-tutorial CNN (pad 1), head 64, Adam 1e-3, raw pixels /255")
_add("pal2021b/wider", replace(_B_BASE, transforms=(TrickUse("widen_head", kw(width=512)),)), "head 512 (586,250)")
_add("pal2021b/deeper", replace(_B_BASE, transforms=(TrickUse("deepen_head", kw(widths=(512, 256))),)),
     "head 512-256 (715,018)")
_add("pal2021b/bn_before_relu", replace(_B_BASE, transforms=(TrickUse("bn_before_relu"),)),
     "Conv -> BatchNorm -> ReLU (122,890)")
_add("pal2021b/bn_after_relu", replace(_B_BASE, transforms=(TrickUse("bn_after_relu"),)),
     "Conv -> ReLU -> BatchNorm (122,890)")
_add("pal2021b/residual", replace(_B_BASE, model_kwargs=kw(padding=1, residual=True)),
     "three residual blocks with 1x1 projection shortcuts (212,714)")
_add("pal2021b/grad_clip", replace(_B_BASE, callbacks=(TrickUse("GradientClip", kw(max_norm=1.0)),)),
     "gradient norm clipped at 1.0")
_add("pal2021b/batch128", replace(_B_BASE, bs=128), "batch 128 at the same learning rate")

# ------------------------------------------------------------------ doc 003: fastai2018 (SGD momentum 0.9, bs 256)
# fit(lr, n) = n constant epochs; fit(lr, n, cycle_len=1) = n one-epoch cosine cycles (v0.7's warm-up included).
# v0.7's pad=4 is cv2.copyMakeBorder(BORDER_REFLECT), which repeats the edge pixel: the symmetric mode, not reflect
_C_AUG = Augment(pad=4, flip=0.5, mode="symmetric")
_C_BASE = Recipe(model="simple_net", opt="sgd", opt_kwargs=kw(mom=0.9, wd=0.0, decouple_wd=False), bs=256,
                 augment=_C_AUG, normalize=CIFAR_STATS, loss="nll")


def _fit(lr1: float, n1: int, lr2: float, n2: int) -> tuple[Phase, ...]:
    return (Phase("constant", n1, lr1), Phase("sgdr", n2, lr2, kw(cycle_len=1)))


_add("fastai2018/simple_net", replace(_C_BASE, phases=_fit(1e-2, 2, 1e-2, 2)), "Linear 3072-40-10 (123,330), 4 ep")
_add("fastai2018/conv_net", replace(_C_BASE, model="conv_net", phases=_fit(1e-1, 2, 1e-1, 4)),
     "3 stride-2 valid convs 20-40-80 + max pool (37,490), 6 epochs")
_add("fastai2018/conv_net2", replace(_C_BASE, model="conv_net", model_kwargs=kw(padding=1),
                                     phases=_fit(1e-1, 2, 1e-1, 2)), "ConvNet with padding 1, 4 epochs")
_add("fastai2018/conv_bn_net", replace(_C_BASE, model="conv_bn_net", phases=_fit(3e-2, 2, 1e-1, 4)),
     "5x5 conv + 4 BnLayers (BN after ReLU, last-batch stats in eval; 155,970), 6 epochs")
_add("fastai2018/conv_bn_net_k3", replace(_C_BASE, model="conv_bn_net", model_kwargs=kw(first_k=3),
                                          phases=_fit(3e-2, 2, 1e-1, 4)),
     "ConvBnNet with a 3x3 first conv instead of 5x5 (155,490)")
_add("fastai2018/conv_bn_net2", replace(_C_BASE, model="conv_bn_net", model_kwargs=kw(deeper=True),
                                        phases=_fit(1e-2, 2, 1e-2, 2)), "ConvBnNet + stride-1 BnLayers (462,570)")
# BN placement under this document's own recipe (it advises BN after the ReLU; doc 001 found before >= after)
_C_PLACE = replace(_C_BASE, model="tf_cnn", model_kwargs=kw(padding=1), phases=_fit(1e-1, 2, 1e-1, 4))
_add("fastai2018/bn_after_relu", replace(_C_PLACE, transforms=(TrickUse("bn_after_relu"),)),
     "doc 001's CNN with BN after each ReLU, trained with doc 003's recipe")
_add("fastai2018/bn_before_relu", replace(_C_PLACE, transforms=(TrickUse("bn_before_relu"),)),
     "doc 001's CNN with BN before each ReLU, trained with doc 003's recipe")

# ------------------------------------------------------------------ doc 004: jovian (ResNet9, 8 epochs one-cycle)
# PyTorch's OneCycleLR ends at max_lr / (div_factor · final_div_factor) = 0.01 / (25 · 1e4) = 4e-8; fastai's
# div_final divides lr_max itself, so the same end is div_final = 25 · 1e4
_ONE_CYCLE_DIV_FINAL = 25.0 * 1e4
_add("jovian/base_cnn", Recipe(model="jovian_cnn", opt="adam", opt_kwargs=TORCH_ADAM,
                               phases=(Phase("constant", 5, 1e-3),), bs=128, heavy=True),
     "the tutorial's starting CNN (5,851,338), Adam 1e-3, 5 epochs (a copy's value), no normalization")
_D_RESNET = Recipe(model="resnet9", opt="adam", opt_kwargs=TORCH_ADAM_L2, bs=400, augment=True,
                   normalize=JOVIAN_STATS, callbacks=(TrickUse("ClipGradValue", kw(clip=0.1)),),
                   phases=(Phase("one_cycle", 8, 1e-2, kw(pct_start=0.3, div=25.0, div_final=_ONE_CYCLE_DIV_FINAL,
                                                         moms=(0.95, 0.85, 0.95))),), heavy=True)
_add("jovian/resnet9", _D_RESNET, "ResNet9 + normalization, augmentation, one-cycle 0.01, L2 1e-4, value clip 0.1")
# one technique removed at a time (the ablation the tutorial proposes and never ran)
_add("jovian/resnet9-no_norm", replace(_D_RESNET, normalize=None), "ResNet9 recipe without input normalization")
_add("jovian/resnet9-no_aug", replace(_D_RESNET, augment=False), "ResNet9 recipe without augmentation")
_add("jovian/resnet9-no_wd", replace(_D_RESNET, opt_kwargs=TORCH_ADAM), "ResNet9 recipe without weight decay")
_add("jovian/resnet9-no_clip", replace(_D_RESNET, callbacks=()), "ResNet9 recipe without gradient value clipping")
_add("jovian/resnet9-no_one_cycle", replace(_D_RESNET, phases=(Phase("constant", 8, 1e-3),)),
     "ResNet9 recipe at a constant Adam 1e-3 instead of one-cycle")

# ------------------------------------------------------------------ doc 000 extras: the remarks the notebook never ran
_add("pal2021a/l2_from_start", _A_WD,
     "lr_schedule + coupled L2 1e-4 from the first epoch: the dropout arms' recipe without dropout")
_add("pal2021a/kaiming_only", replace(_A_BASE, transforms=(TrickUse("kaiming_uniform"),)),
     "baseline + Kaiming-uniform init alone (for the convergence remark)")
# decouple_wd=False: coupled L2 like the Adam arms (fastai's SGD decouples by default; at wd 0 both are the same)
_add("pal2021a/sgd", replace(_A_BASE, opt="sgd", opt_kwargs=kw(mom=0.9, wd=0.0, decouple_wd=False),
                             phases=(Phase("constant", 10, 5e-2),)),
     "baseline with SGD (momentum 0.9) at 5e-2 instead of Adam (LeCun's remark; never run in the notebook)")

# ------------------------------------------------------------------ doc 002: he2016 (cs231n TwoLayerNet, numpy)
# Raw 0-255 pixels minus the training mean image, weights 1e-4·N(0,1), L2 0.5·reg·|W|² on weights only (coupled, no
# biases), batch 100, learning rate x decay once per epoch. Iterations become epochs of 50,000 images (1e4 iterations
# at batch 100 = 20 epochs). The original drew batches with replacement and kept the best-validation weights; here
# batches are a shuffled pass and the last epoch's weights are tested (on the 10,000 test images, not its 1,000).
_E_INIT = (TrickUse("small_normal", kw(std=1e-4)),)


def _he(hidden: int, lr: float, decay: float, reg: float, epochs: int, opt: str = "sgd", mom: float = 0.0,
        act: str = "relu", dropout: float = 0.0, mask: str = "bernoulli", init: tuple[TrickUse, ...] = _E_INIT,
        **more: object) -> Recipe:
    # every arm coupled (decouple_wd=False): fastai's SGD and RMSProp decouple by default, which at momentum 0.9 is
    # about ten-fold less regularization than the original's gradient term reg·W
    opt_kwargs = {"sgd": kw(mom=mom, wd=reg, decouple_wd=False), "nesterov": kw(mom=mom, wd=reg, decouple_wd=False),
                  "rmsprop": kw(sqr_mom=0.99, mom=0.0, eps=1e-8, wd=reg, decouple_wd=False)}[opt]
    model = dict(hidden=hidden, act=act, dropout=dropout, dropout_mask=mask, **more)
    return Recipe(model="two_layer_net", model_kwargs=kw(**model), transforms=init, opt=opt, opt_kwargs=opt_kwargs,
                  wd_bn_bias=False, phases=(Phase("exp_decay", epochs, lr, kw(gamma=decay)),), bs=100,
                  normalize="mean_image")


_E_NAIVE = _he(350, 1e-3, 0.95, 0.05, 20)
_add("he2016/naive", _E_NAIVE, "H 350, SGD 1e-3, decay 0.95, L2 0.05, 20 epochs (1e4 iterations)")
for h in (150, 500):
    _add(f"he2016/hidden{h}", _he(h, 1e-3, 0.95, 0.05, 20), f"the naive recipe with {h} hidden units")
for act in ("leaky_relu", "tanh"):
    _add(f"he2016/naive_{act}", _he(350, 1e-3, 0.95, 0.05, 20, act=act), f"the naive recipe with {act} units")
# update methods: H 500, lr 1e-4, decay 0.95, reg 0.8, 1000 iterations (2 epochs), momentum 0.9 (report/parameters)
for name, opt, mom in (("sgd", "sgd", 0.0), ("momentum", "sgd", 0.9), ("nesterov", "nesterov", 0.9),
                       ("rmsprop", "rmsprop", 0.0)):
    _add(f"he2016/{name}_1k", _he(500, 1e-4, 0.95, 0.8, 2, opt, mom), f"H 500, {name}, 1000 iterations (2 epochs)")
# momentum 0.9 at the tuned SGD's lr 1e-3 takes ten-fold steps on these raw-pixel inputs and diverges (loss > 1e4
# by epoch 4 on every seed, measured); lr 1e-4 is the update-methods experiment's own momentum setting, and its
# effective step lr / (1 - mom) is the tuned SGD's 1e-3
_add("he2016/momentum_long", _he(350, 1e-4, 0.95, 0.05, 20, "sgd", 0.9),
     "the naive (tuned SGD) recipe with momentum 0.9 at lr 1e-4 (the same effective step), trained as long "
     "(1e4 iterations)")
# dropout: H 500, lr 1e-4, decay 0.95, leaky ReLU, momentum 0.9, 1e4 iterations, no L2 (the original dropout.py
# runs with reg 0: dropout is the regularizer); the slide's p is the keep probability of cs231n's inverted dropout,
# so p = 0.5 is nn.Dropout(0.5) and p = 0.3 is nn.Dropout(0.7)
_E_DROP = dict(hidden=500, lr=1e-4, decay=0.95, reg=0.0, epochs=20, opt="sgd", mom=0.9, act="leaky_relu")
_add("he2016/no_dropout", _he(**_E_DROP), "the dropout recipe (H 500, momentum, leaky ReLU, no L2) without dropout")
for keep in (0.3, 0.5, 0.7):
    _add(f"he2016/dropout_p{int(keep * 10)}", _he(**_E_DROP, dropout=round(1 - keep, 2)),
         f"the dropout recipe, keep probability {keep} (nn.Dropout({round(1 - keep, 2)}))")
    _add(f"he2016/dropout_p{int(keep * 10)}@code", _he(**_E_DROP, dropout=keep, mask="randn"),
         f"the original's mask (randn < {keep}) / {keep}: keeps a unit with probability Phi({keep}), not {keep}")
# init schemes on the dropout recipe (p = 0.5), as the report ran them
for name in ("lecun_normal", "xavier_normal", "kaiming_normal"):
    _add(f"he2016/init_{name}", _he(**_E_DROP, dropout=0.5, init=(TrickUse(name),)),
         f"the dropout recipe (keep 0.5) with {name.replace('_', '-')} init instead of 1e-4·N(0,1)")
# K-means features (Coates et al. 2011, the mean-subtraction fix on) into H 200; 7e4 iterations at batch 128 = 179
# epochs; dropout "0.3" is the keep probability. As the original script, the training set's mean image is subtracted
# from the pixels before the patches are drawn (`mean_image=True`; Coates' reference code does not), in both arms.
# The net's input width follows the features (6,400 = 4 x 1,600 centroids here; scaled profiles use fewer centroids)
# Heavy: on a CPU its feature extraction takes minutes a run even at the default profile's size, and at the smoke
# profile's the net stays at chance (from its 1e-4 init, a few hundred steps on 128-d features do not leave zero)
_E_KMEANS = replace(_he(200, 5e-4, 0.99, 0.0, 179, "sgd", 0.95, dropout=0.7), bs=128, normalize=None,
                    features="kmeans", features_kwargs=kw(subtract_mean=True, mean_image=True), heavy=True)
_add("he2016/kmeans", _E_KMEANS, "whitened K-means triangle features (1,600 centroids, 6,400-d) into H 200, 179 epochs")
_add("he2016/kmeans@code", replace(_E_KMEANS, features_kwargs=kw(subtract_mean=False, mean_image=True)),
     "the original pipeline: ZCA applied without subtracting the patch mean first")

# ------------------------------------------------------------------ doc 004 extras: the rest of the proposed ablation
_add("jovian/resnet9-no_residual", replace(_D_RESNET, model_kwargs=kw(residual=False)),
     "ResNet9 recipe without its two identity shortcuts (same layers and parameters)")
_add("jovian/resnet9-no_bn", replace(_D_RESNET, model_kwargs=kw(bn=False)), "ResNet9 recipe without BatchNorm")
_add("jovian/resnet9-sgd", replace(_D_RESNET, opt="sgd", opt_kwargs=kw(mom=0.9, wd=1e-4, decouple_wd=False)),
     "ResNet9 recipe with SGD (momentum 0.9, cycled 0.95-0.85 by one-cycle) in place of Adam, coupled L2 1e-4 as "
     "the Adam arm")

# ------------------------------------------------------------------ scaled variants of the heavy arms (CPU only)
# Under the default and smoke profiles a CPU trains each heavy recipe as the variant below (`Profile.arm`): its own
# named recipe with its own key, so its runs never mix with full-size ones, and a `scaled` note that every report
# line carries. The paper profile, and any profile on a GPU, train the published sizes. Quarter width keeps
# ResNet9's shape (4 stages, 2 residual stages, the same recipe) at about 1/16 of its multiply-adds.
RESNET9_CPU_WIDTH = 16  # 16-32-[32]-64-128-[128]: 413,514 parameters (64 as published: 6,575,370)
BASE_CNN_CPU_WIDTH = 8  # 8-16, 32-32, 64-64, 1024-256-128-10: 367,290 parameters (32 as published: 5,851,338)
KMEANS_CPU = kw(n_centroids=400, n_patches=100_000, iters=20)  # 1,600-d features into H 200 (6,400-d as published)


def _scale(name: str, tag: str, note: str, **changes: object) -> None:
    full = RECIPES[name]
    variant = _add(f"{name}@{tag}", replace(full, heavy=False, scaled=note, **changes),
                   f"{full.description} [scaled for a CPU: {note}]")
    add_scaled_variant(full, variant)


for _name, _r9 in list(RECIPES.items()):
    if _r9.model == "resnet9" and _r9.heavy:
        _scale(_name, f"w{RESNET9_CPU_WIDTH}", f"ResNet9 at a quarter of the width ({RESNET9_CPU_WIDTH}-"
               f"{2 * RESNET9_CPU_WIDTH}-{4 * RESNET9_CPU_WIDTH}-{8 * RESNET9_CPU_WIDTH} channels)",
               model_kwargs=kw(**dict(_r9.model_kwargs), width=RESNET9_CPU_WIDTH))
_scale("jovian/base_cnn", f"w{BASE_CNN_CPU_WIDTH}",
       "the base CNN at a quarter of the width (8-16-32-32-64-64 channels, 1024-256-128 head)",
       model_kwargs=kw(width=BASE_CNN_CPU_WIDTH))
for _name in ("he2016/kmeans", "he2016/kmeans@code"):
    _scale(_name, "k400", "400 K-means centroids from 100,000 patches, 20 iterations (1,600-d features)",
           features_kwargs=kw(**dict(RECIPES[_name].features_kwargs), **dict(KMEANS_CPU)))
