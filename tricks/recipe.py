"""The torch-free data model of a run: `Recipe`, `Phase`, `TrickUse`, `Augment`, `Profile`, `RunResult`, and the
version a run is stored under (`run_version`: the recipe's committed training fingerprint and the dataset's digest).

A `Recipe` is a frozen, hashable description of one published experiment arm. Its hash (`recipe.key`) is a sha256
of canonical JSON, stable across processes and Python versions; the name and description are labels and stay out
of it, so two claims naming the same recipe differently share runs. A `Profile` scales a recipe to the machine
(training subset, epochs); `paper` leaves it as published. Importing this module imports neither torch nor fastai:
the run store, the claims and the reports read and write these without the training stack.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from tricks import __version__

Params = tuple[tuple[str, Any], ...]


def kw(**kwargs: Any) -> Params:
    """Keyword arguments as a sorted tuple of pairs, so that they can live in a frozen, hashable recipe."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))


@dataclass(frozen=True)
class Augment:
    """Batched augmentation: pad `pad` pixels (mode reflect or symmetric) + random crop back to size; flip p."""

    pad: int = 4
    flip: float = 0.5
    mode: str = "reflect"  # reflect: "dcb|abcd|cba" (torchvision); symmetric: "cba|abcd|dcb" (OpenCV BORDER_REFLECT)

    def __post_init__(self) -> None:
        if self.mode not in ("reflect", "symmetric"):
            raise ValueError(f"unknown padding mode '{self.mode}' (reflect, symmetric)")
        if self.pad < 0 or not 0 <= self.flip <= 1:
            raise ValueError(f"augmentation needs pad >= 0 and 0 <= flip <= 1 (got pad {self.pad}, flip {self.flip})")


@dataclass(frozen=True)
class TrickUse:
    """A registered trick with its arguments, e.g. `TrickUse("dropout_conv", kw(p=0.2))`."""

    name: str
    params: Params = ()

    @property
    def spec(self) -> str:
        """The command-line form, `name:k=v,...`."""
        return self.name + (":" + ",".join(f"{k}={v}" for k, v in self.params) if self.params else "")


@dataclass(frozen=True)
class Phase:
    """One fit call: `schedule` is constant | one_cycle | exp_decay | sgdr (fastai v0.7 cycles), over `epochs`."""

    schedule: str
    epochs: int
    lr: float
    params: Params = ()  # schedule options, e.g. kw(pct_start=0.3) for one_cycle, kw(gamma=0.8) for exp_decay
    new_opt: bool = False  # start this phase with a fresh optimizer (doc 000's continued-training bug)


@dataclass(frozen=True)
class Recipe:
    """A published experiment arm: model, transforms, callbacks, data options, optimizer, schedule, batch size."""

    model: str  # builder name in tricks.models.MODELS
    model_kwargs: Params = ()
    transforms: tuple[TrickUse, ...] = ()  # model transforms, applied in order after the builder
    callbacks: tuple[TrickUse, ...] = ()
    opt: str = "adam"  # adam | sgd | rmsprop (fastai optimizers)
    opt_kwargs: Params = ()  # passed to the fastai optimizer (mom, sqr_mom, eps, wd, decouple_wd, ...)
    wd_bn_bias: bool = True  # PyTorch optimizers decay BN and bias; fastai's default does not
    phases: tuple[Phase, ...] = (Phase("constant", 10, 1e-3),)
    bs: int = 64
    augment: Any = False  # True: reflect-pad 4 + random crop + horizontal flip, on whole batches; or an Augment
    normalize: str | tuple | None = None  # None, "train" (training-set stats) or ((mean...), (std...))
    loss: str = "ce"  # ce on logits (log_softmax outputs give the same value) | nll on log-probabilities
    features: str | None = None  # a data-level trick that replaces pixels by features, e.g. "kmeans"
    features_kwargs: Params = ()
    name: str = field(default="", compare=False)
    description: str = field(default="", compare=False)
    # ResNet9-sized: hours a run on a CPU, and chance accuracy at a scaled profile's size there, so scaled profiles
    # train it only on a GPU (the paper profile trains it anywhere)
    heavy: bool = field(default=False, compare=False)
    # what a scaled variant of a heavy recipe changed (e.g. "ResNet9 at a quarter width"), for every report line
    scaled: str = field(default="", compare=False)

    @property
    def epochs(self) -> int:
        return sum(p.epochs for p in self.phases)

    @property
    def gpu_sized(self) -> bool:
        """A heavy recipe whose network alone is too big for a CPU at its published size (ResNet9, doc 004's base
        CNN: hours a run on one core); a heavy data trick (K-means features) trains on a CPU at full size."""
        return self.heavy and self.features is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        d = dict(d)
        d["model_kwargs"] = _params(d.get("model_kwargs", ()))
        d["opt_kwargs"] = _params(d.get("opt_kwargs", ()))
        d["features_kwargs"] = _params(d.get("features_kwargs", ()))
        d["transforms"] = tuple(TrickUse(t["name"], _params(t["params"])) for t in d.get("transforms", ()))
        d["callbacks"] = tuple(TrickUse(t["name"], _params(t["params"])) for t in d.get("callbacks", ()))
        d["phases"] = tuple(Phase(**{**p, "params": _params(p["params"])}) for p in d.get("phases", ()))
        if isinstance(d.get("augment"), dict):  # an Augment, written out by asdict
            d["augment"] = Augment(**d["augment"])
        if isinstance(d.get("normalize"), list):
            d["normalize"] = tuple(tuple(x) for x in d["normalize"])
        return cls(**d)

    @property
    def key(self) -> str:
        """sha256 of the canonical JSON of every field that changes the run (not the name or description)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.compare}
        blob = json.dumps(_canonical(d), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def with_tricks(self, *uses: TrickUse, transforms: tuple[TrickUse, ...] = ()) -> Recipe:
        """This recipe with extra callbacks (and transforms) appended."""
        return replace(self, callbacks=self.callbacks + tuple(uses), transforms=self.transforms + tuple(transforms))


def _params(x: Any) -> Params:
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in x)


def _canonical(x: Any) -> Any:
    """What a recipe's key hashes: the compared fields of dataclasses, lists, string keys, and every float as its
    repr (exact, NaN as 'nan'), so the key never moves with a platform's float printing. Not a JSON NaN cleaner
    (that is `tricks.plain.finite`): turning a float into None would change keys."""
    if hasattr(x, "__dataclass_fields__"):
        return {f.name: _canonical(getattr(x, f.name)) for f in fields(x) if f.compare}
    if isinstance(x, (list, tuple)):
        return [_canonical(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _canonical(v) for k, v in x.items()}
    if isinstance(x, float):
        return repr(x)  # exact and stable across platforms
    return x


# ------------------------------------------------------------------------------------------- scaled variants

_SCALED: dict[str, Recipe] = {}  # full-size recipe key -> its scaled variant (filled by tricks.recipes)


def scaled_variant(recipe: Recipe) -> Recipe | None:
    """The named scaled variant a CPU trains for a heavy recipe under a scaled profile, or None if it has none."""
    return _SCALED.get(recipe.key)


def add_scaled_variant(full: Recipe, variant: Recipe) -> None:
    """Register `variant` as what a CPU trains for the heavy recipe `full` under a profile that scales heavy arms."""
    _SCALED[full.key] = variant


@dataclass(frozen=True)
class Profile:
    """How a suite scales recipes to the machine: a class-balanced training subset, a test subset, fewer epochs."""

    name: str
    train_subset: float | int | None = None  # fraction (<= 1) or image count; drawn per seed
    test_subset: int | None = None  # first-k class-balanced test images, the same for every seed
    epoch_scale: float = 1.0  # each phase keeps max(1, round(epochs * scale)) epochs
    description: str = ""
    cpu_skips_heavy: bool = False  # without a GPU, recipes marked heavy are not trained (their claims say why)
    cpu_scales_heavy: bool = False  # without a GPU, a heavy recipe with a scaled variant trains as that variant
    cpu_skips_gpu_sized: bool = False  # without a GPU, GPU-sized recipes (Recipe.gpu_sized) are not trained
    curve_test: int | None = None  # epochs before the last are evaluated on the first k (class-balanced) test images
    max_seeds: int | None = None  # the suite's seed cap under this profile unless --max-seeds says otherwise
    features_kwargs: Params = ()  # overrides of a data trick's options (e.g. fewer K-means centroids)

    def scale(self, recipe: Recipe) -> Recipe:
        """The recipe's epochs as this profile trains them (data subsets are applied by `run`).

        A callback's epoch index (a parameter named `*_epoch`, e.g. WeightDecayFrom's start_epoch) scales with the
        epochs, so the trick still covers the same share of training: doc 000's wd from epoch 2 of 10 (on for 80 %)
        starts at epoch 1 of 5 under a half-epoch profile, and at epoch 0 of 1 rather than never.
        """
        if self.epoch_scale == 1.0:
            return recipe
        phases = tuple(replace(p, epochs=max(1, round(p.epochs * self.epoch_scale))) for p in recipe.phases)
        last = sum(p.epochs for p in phases) - 1
        callbacks = tuple(
            replace(use, params=tuple((k, min(last, round(v * self.epoch_scale)) if _is_epoch_index(k, v) else v)
                                      for k, v in use.params))
            for use in recipe.callbacks)
        return replace(recipe, phases=phases, callbacks=callbacks)

    def arm(self, recipe: Recipe, device_has_gpu: bool) -> Recipe:
        """The recipe this profile trains for `recipe` on this device: a heavy recipe's named scaled variant
        (`scaled_variant`, registered by `tricks.recipes`) under a profile that scales heavy arms on a CPU, else
        `recipe` itself.

        The variant is its own recipe, with its own key, so its runs are stored apart from the full-size ones.
        """
        if not recipe.heavy or device_has_gpu or not self.cpu_scales_heavy:
            return recipe
        return scaled_variant(recipe) or recipe


def _is_epoch_index(name: str, value: Any) -> bool:
    return name.endswith("_epoch") and isinstance(value, int) and not isinstance(value, bool)


PROFILES: dict[str, Profile] = {
    # cap 8: the looks at 3, 5 and 8 seeds. On the published recipes the paired SD of a difference is 0.3-2.6 pp
    # (doc 001's 3 seeds a arm), so most claims decide by 8 seeds, and a doc 001 seed of all 8 arms costs about 80 CPU
    # minutes: a 12th seed would add half again for the few claims that sit on their margin, which then say how
    # many seeds they would need
    "paper": Profile("paper", max_seeds=8, cpu_skips_gpu_sized=True,
                     description="the published recipes exactly: all 50,000 training images, the published epochs, "
                                 "up to 8 seeds per arm; ResNet9-sized recipes only on a GPU (K-means at full size "
                                 "trains on a CPU)"),
    "default": Profile(
        "default", train_subset=5_000, epoch_scale=0.5, curve_test=1_000, max_seeds=12, cpu_skips_heavy=True,
        cpu_scales_heavy=True,
        description="5,000 training images (class-balanced, drawn per seed), half the epochs, the full test set at "
                    "the end (1,000 test images for the epochs before), up to 12 seeds per arm; on a CPU the heavy "
                    "arms train as scaled variants (ResNet9 and its base CNN at a quarter width, 400 K-means "
                    "centroids), on a GPU at full size"),
    "smoke": Profile(
        "smoke", train_subset=3_000, test_subset=1_000, epoch_scale=0.1, max_seeds=3, cpu_skips_heavy=True,
        features_kwargs=kw(n_centroids=32, n_patches=10_000, iters=3),
        # not cpu_scales_heavy: at a tenth of the epochs even the scaled variants end at chance (base_cnn@w8 seed 0:
        # 10.0 %, resnet9@w16 14.8 %, measured), which the engine counts as diverged
        description="3,000 training and 1,000 test images, a tenth of the epochs (at least one a phase), one look "
                    "at 3 seeds, 32 K-means centroids: checks the whole path, decides only huge effects; "
                    "ResNet9-sized recipes only on a GPU"),
}


def get_profile(profile: Profile | str) -> Profile:
    """The named profile; an unknown name raises ValueError listing the known ones."""
    if isinstance(profile, Profile):
        return profile
    if profile not in PROFILES:
        raise ValueError(f"unknown profile '{profile}' (known: {', '.join(PROFILES)})")
    return PROFILES[profile]


@dataclass
class RunResult:
    """Everything one (recipe, seed, profile) run produced, with its provenance."""

    recipe_key: str
    recipe_name: str
    seed: int
    profile: str
    code_version: str
    acc: float  # final test accuracy in [0, 1]
    loss: float  # final test loss
    acc_per_epoch: list[float]  # before the last epoch, on the profile's curve_test images when it has them
    loss_per_epoch: list[float]
    train_loss_per_epoch: list[float]
    params_used: int | None  # parameters the forward pass uses
    wall_s: float
    img_per_s: float  # training images per second
    device: str
    threads: int
    versions: dict[str, str]
    dataset: str  # which copy of CIFAR-10 (source description and content digest)
    diverged: bool = False
    note: str = ""  # why a run diverged, or anything else worth keeping
    scaled: str = ""  # the recipe's scaled-variant note: what a CPU run of a heavy arm trained instead

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunResult:
        return cls(**json.loads(text))


# ---------------------------------------------------------------------------- the committed training fingerprints

FINGERPRINTS = Path(__file__).with_name("fingerprints.json")
# tolerance between machines (kernels, memory layouts, thread counts) for a double-precision run: measured float32
# runs of one recipe on two layouts differed by up to 3e-3, double-precision ones by far less; a changed init,
# schedule or layer moves the numbers by percents
RTOL, ATOL = 1e-6, 1e-9


@dataclass(frozen=True)
class Fingerprint:
    """A recipe's numbers on the fixed synthetic run, and the id its stored runs are keyed by."""

    name: str
    values: tuple[float, ...]
    id: str

    def matches(self, other: Sequence[float]) -> bool:
        return same_numbers(self.values, other)


def same_numbers(a: Sequence[float], b: Sequence[float], rtol: float = RTOL, atol: float = ATOL) -> bool:
    """Equal lengths and every pair within float tolerance (NaN equals NaN: a recipe that diverges on the synthetic
    data keeps diverging)."""
    if len(a) != len(b):
        return False
    return all((math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=rtol, abs_tol=atol)
               for x, y in zip(a, b, strict=True))


@lru_cache(maxsize=4)
def _load(path: Path) -> dict[str, Fingerprint]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {k: Fingerprint(v["name"], tuple(float(x) for x in v["values"]), v["id"])
            for k, v in data["recipes"].items()}


def committed(path: Path = FINGERPRINTS) -> dict[str, Fingerprint]:
    """The committed fingerprints (`tricks/fingerprints.json`, computed by `tricks.fingerprint`), by recipe key."""
    return _load(Path(path))


def fingerprint_id(recipe_key: str, path: Path = FINGERPRINTS) -> str | None:
    """The committed fingerprint id of a recipe, or None for a recipe the file does not know."""
    fp = committed(path).get(recipe_key)
    return fp.id if fp else None


def file_digest(path: Path = FINGERPRINTS) -> str:
    """A short hash of the committed file (for reports: which set of fingerprints a suite ran under)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12] if Path(path).exists() else "none"


# ---------------------------------------------------------------------------------------------- the run version

# modules whose source decides what a run computes: their hash is the provenance of every run (`versions()["code"]`),
# and the store key of a recipe that has no committed training fingerprint
_TRAINING_PATH = ("recipe", "cifar", "loaders", "models", "layers", "surgery", "transforms", "callbacks", "kmeans",
                  "train")


def _code_version() -> str:
    here = Path(__file__).parent
    h = hashlib.sha256()
    for mod in _TRAINING_PATH:
        f = here / f"{mod}.py"
        if f.exists():
            h.update(mod.encode() + b"\0" + f.read_bytes())
    return f"{__version__}+{h.hexdigest()[:12]}"


CODE_VERSION = _code_version()


def run_version(dataset_digest: str, recipe_key: str | None = None) -> str:
    """The version a run is stored under: what its training computes, plus the dataset copy it trained on (its
    digest); runs on the lossy JPEG copy and on the original PNGs never mix.

    What training computes is the recipe's committed training fingerprint (`tricks.fingerprint`), so an edit that
    changes no numbers keeps every stored run; a recipe without one (an ad-hoc recipe file, extra callbacks on the
    command line) falls back to the hash of the training modules' source, `CODE_VERSION`.
    """
    fid = fingerprint_id(recipe_key) if recipe_key is not None else None
    return f"{f'fp.{fid}' if fid else CODE_VERSION}+data.{dataset_digest[:12]}"


@dataclass(frozen=True)
class RunVersions:
    """The store version of each recipe's runs on one dataset copy: `versions(recipe_key) -> str`."""

    dataset_digest: str

    def __call__(self, recipe_key: str) -> str:
        return run_version(self.dataset_digest, recipe_key)

    def __str__(self) -> str:
        return f"fingerprints.{file_digest()}+data.{self.dataset_digest[:12]}"
