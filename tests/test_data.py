"""tricks.cifar, tricks.loaders: CIFAR-10 sources (class folders, archives, torchvision batches), the content-keyed
decode cache, one-line DataErrors, the seeded tensor-resident fastai loaders, the batched pad/crop/flip augmentation.

Everything runs on tiny synthetic sources written into tmp_path (PNG/JPEG class folders, fake pickled batches, their
archives) with `$TRICKS_CACHE` redirected there too; only the test marked `integration` reads the real dataset from
`$TRICKS_DATA` (skipped when unset, failed when unset under CI).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
import warnings
from pathlib import Path

import fastai.callback.schedule  # noqa: F401  (puts fit_one_cycle, fit_sgdr and lr_find on Learner)
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastai.callback.progress import ProgressCallback
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import accuracy
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from torch import nn

import tricks.cifar as data
from tricks.cifar import CIFAR10_CLASSES, CifarArrays, DataError, channel_stats, dataset_digest, load_cifar10
from tricks.loaders import TensorImageDL, cifar_dls, class_balanced, subsets
from tricks.plain import cache_dir
from tricks.recipe import Augment

torch.set_num_threads(1)
warnings.filterwarnings("ignore", category=UserWarning)
# torchvision 0.29 deprecates the image decoders tricks.cifar uses; known, otherwise repeated for every image decoded
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")

CLASSES = CIFAR10_CLASSES  # alphabetical already: the order class folders are read in
PROPS = settings(max_examples=40, deadline=None)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


@pytest.fixture(autouse=True)
def _isolated(request, tmp_path, monkeypatch):
    """A fresh in-process memo for every test; the unit tests cache into tmp_path and never read $TRICKS_DATA."""
    monkeypatch.setattr(data, "_MEMO", {})
    if request.node.get_closest_marker("integration") is None:
        monkeypatch.setenv("TRICKS_CACHE", str(tmp_path / "cache"))
        monkeypatch.delenv("TRICKS_DATA", raising=False)


# ------------------------------------------------------------------------------------------ synthetic sources


def noise_images(n: int, rng: np.random.Generator, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    return rng.integers(0, 256, (n, 3, *size), dtype=np.uint8)


def smooth_images(n: int, rng: np.random.Generator, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """Colour gradients: JPEG at quality 95 without chroma subsampling keeps them within a few levels."""
    h, w = size
    base = rng.uniform(60, 190, (n, 3, 1, 1))
    gy, gx = rng.uniform(-1.5, 1.5, (2, n, 3, 1, 1))
    img = base + gy * (np.arange(h)[:, None] - h / 2) + gx * (np.arange(w)[None, :] - w / 2)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def save_image(path: Path, img: np.ndarray) -> None:
    """A (3, H, W) uint8 image as PNG (lossless) or JPEG (quality 95, 4:4:4), by the file's extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0)))
    if path.suffix.lower() in (".jpg", ".jpeg"):
        im.save(path, quality=95, subsampling=0)
    else:
        im.save(path)


def write_class_folders(root: Path, *, train: int = 3, test: int = 2, classes=CLASSES, test_classes=None,
                        exts=("png",), seed: int = 0) -> dict[str, np.ndarray]:
    """`root/train/<class>/NNNN.<ext>` and `root/test/<class>/...` (exts cycled per file); returns what the loader
    must give: arrays in sorted-class then file order, and which images are JPEG (lossy) in each split."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for split, per, names in (("train", train, classes), ("test", test, test_classes or classes)):
        xs, ys, jpeg = [], [], []
        for label, cls in enumerate(sorted(names)):
            for i in range(per):
                ext = exts[i % len(exts)]
                lossy = ext in ("jpg", "jpeg")
                img = (smooth_images if lossy else noise_images)(1, rng)[0]
                save_image(root / split / cls / f"{i:04d}.{ext}", img)
                xs.append(img)
                ys.append(label)
                jpeg.append(lossy)
        out[f"x_{split}"] = np.stack(xs) if xs else np.zeros((0, 3, 32, 32), np.uint8)
        out[f"y_{split}"] = np.asarray(ys, dtype=np.int64)
        out[f"jpeg_{split}"] = np.asarray(jpeg, dtype=bool)
    return out


BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")


def write_batches(root: Path, *, per_batch: int = 12, seed: int = 0, meta=CLASSES,
                  names=BATCHES) -> dict[str, np.ndarray]:
    """torchvision's `root/cifar-10-batches-py/` with fake pickles keyed by bytes, like the real ones."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    xs: dict[str, np.ndarray] = {}
    ys: dict[str, list[int]] = {}
    for name in names:
        xs[name] = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        ys[name] = [int(v) for v in rng.integers(0, 10, per_batch)]
        d = {b"batch_label": name.encode(), b"labels": ys[name], b"data": xs[name],
             b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(d, protocol=2))
    if meta is not None:
        m = {b"num_cases_per_batch": per_batch, b"label_names": [c.encode() for c in meta], b"num_vis": 3072}
        (folder / "batches.meta").write_bytes(pickle.dumps(m, protocol=2))
    train = [n for n in names if n.startswith("data_batch")]
    return {"x_train": np.concatenate([xs[n] for n in train]).reshape(-1, 3, 32, 32),
            "y_train": np.asarray(sum((ys[n] for n in train), []), dtype=np.int64),
            "x_test": xs.get("test_batch", np.zeros((0, 3072), np.uint8)).reshape(-1, 3, 32, 32),
            "y_test": np.asarray(ys.get("test_batch", []), dtype=np.int64)}


def make_tar(folder: Path, archive: Path) -> Path:
    """`folder` as one top-level entry of a tar (gzipped for .tgz/.tar.gz), as the real archives are packed."""
    mode = "w:gz" if archive.name.endswith(("gz", ".tgz")) else "w"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, mode) as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def count_decodes(monkeypatch) -> list[Path]:
    calls: list[Path] = []
    real = data._decode

    def counting(path: Path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(data, "_decode", counting)
    return calls


def cache_entries() -> list[Path]:
    return sorted(cache_dir().glob("cifar10-*.pt"))


def assert_same_arrays(a: CifarArrays, b: CifarArrays) -> None:
    for k in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k
    assert (a.classes, a.source, a.digest, a.stats) == (b.classes, b.source, b.digest, b.stats)


def synthetic_arrays(train_per_class: int = 20, test_per_class: int = 6, seed: int = 0,
                     noise: int = 60) -> CifarArrays:
    """In-memory CIFAR-like arrays: each class a random colour plus noise (learnable, channels unlike each other),
    labels in shuffled order, every image distinct."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.randint(40, 216, (10, 3), generator=g)

    def split(per: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(10).repeat_interleave(per)
        y = y[torch.randperm(len(y), generator=g)]
        x = colours[y][:, :, None, None] + torch.randint(-noise, noise + 1, (len(y), 3, 32, 32), generator=g)
        return x.clamp(0, 255).to(torch.uint8), y

    x_train, y_train = split(train_per_class)
    x_test, y_test = split(test_per_class)
    return CifarArrays(x_train, y_train, x_test, y_test, classes=CLASSES, source="synthetic", digest="0" * 64,
                       stats=channel_stats(x_train))


def epoch(dl) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*list(dl), strict=True)
    return torch.cat(xs), torch.cat(ys)


# --------------------------------------------------------------------------------------------------- sources


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_class_folders_of_png_and_jpeg_decode_to_uint8_arrays_in_class_then_file_order(tmp_path, nested):
    root = tmp_path / "src"
    want = write_class_folders(root / "cifar10" if nested else root, train=4, test=3, exts=("png", "jpg"))
    a = load_cifar10(root)
    assert a.x_train.shape == (40, 3, 32, 32) and a.x_test.shape == (30, 3, 32, 32)
    assert a.x_train.dtype == a.x_test.dtype == torch.uint8
    assert a.y_train.dtype == a.y_test.dtype == torch.int64
    assert a.classes == CLASSES
    assert "class folders (JPEG/PNG)" in a.source and str(root.resolve()) in a.source
    for split in ("train", "test"):
        x, lossy = getattr(a, f"x_{split}").numpy(), want[f"jpeg_{split}"]
        assert np.array_equal(getattr(a, f"y_{split}").numpy(), want[f"y_{split}"])
        assert np.array_equal(x[~lossy], want[f"x_{split}"][~lossy])  # PNG: exact
        err = np.abs(x[lossy].astype(int) - want[f"x_{split}"][lossy].astype(int))
        assert err.mean() < 1.0 and err.max() <= 8  # JPEG (quality 95, 4:4:4): within a few levels
    assert len(a.digest) == 64 and int(a.digest, 16) >= 0


def test_the_shallowest_train_test_pair_is_read_when_a_deeper_copy_also_exists(tmp_path):
    want = write_class_folders(tmp_path / "src", train=2, test=1, seed=1)
    write_class_folders(tmp_path / "src" / "old", train=1, test=1, seed=2)  # e.g. src/old/train/<class>/*
    a = load_cifar10(tmp_path / "src")
    assert np.array_equal(a.x_train.numpy(), want["x_train"]) and np.array_equal(a.x_test.numpy(), want["x_test"])


@pytest.mark.parametrize("suffix", [".tgz", ".tar.gz", ".tar"])
def test_class_folder_archive_and_its_extracted_folder_give_the_same_arrays_and_digest(tmp_path, suffix):
    folder = tmp_path / "src" / "cifar10"
    want = write_class_folders(folder, exts=("png", "jpg", "jpeg"))
    archive = make_tar(folder, tmp_path / f"cifar10{suffix}")
    from_archive, from_folder = load_cifar10(archive), load_cifar10(folder)
    assert from_archive.digest == from_folder.digest
    for k in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(from_archive, k), getattr(from_folder, k)), k
    assert from_archive.stats == from_folder.stats and from_archive.classes == from_folder.classes
    assert np.array_equal(from_archive.y_test.numpy(), want["y_test"])
    assert str(archive.resolve()) in from_archive.source


def test_torchvision_batches_round_trip_pixels_labels_and_class_names_exactly(tmp_path):
    want = write_batches(tmp_path / "src", per_batch=7)
    a = load_cifar10(tmp_path / "src" / "cifar-10-batches-py")
    assert a.x_train.shape == (35, 3, 32, 32) and a.x_test.shape == (7, 3, 32, 32)
    assert a.x_train.dtype == torch.uint8 and a.y_train.dtype == torch.int64 and a.y_test.dtype == torch.int64
    for k in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(a, k).numpy(), want[k]), k
    assert a.classes == CLASSES and all(isinstance(c, str) for c in a.classes)
    assert a.source.startswith("torchvision batches ")


def test_torchvision_batches_take_their_class_names_from_batches_meta(tmp_path):
    names = tuple(f"class{i}" for i in range(10))
    write_batches(tmp_path / "src", meta=names)
    assert load_cifar10(tmp_path / "src").classes == names


def test_torchvision_batches_without_batches_meta_use_the_cifar10_class_names(tmp_path):
    write_batches(tmp_path / "src", meta=None)
    assert load_cifar10(tmp_path / "src").classes == CIFAR10_CLASSES


def test_torchvision_batches_archive_and_its_folder_give_the_same_digest(tmp_path):
    want = write_batches(tmp_path / "src")
    archive = make_tar(tmp_path / "src" / "cifar-10-batches-py", tmp_path / "cifar-10-python.tar.gz")
    from_archive, from_folder = load_cifar10(archive), load_cifar10(tmp_path / "src" / "cifar-10-batches-py")
    assert from_archive.digest == from_folder.digest
    assert np.array_equal(from_archive.x_train.numpy(), want["x_train"])
    assert np.array_equal(from_archive.y_test.numpy(), want["y_test"])


def test_dataset_digest_reads_a_cached_copy_without_loading_its_tensors(tmp_path, monkeypatch):
    write_batches(tmp_path / "src")
    decodes = count_decodes(monkeypatch)
    first = dataset_digest(tmp_path / "src")  # an empty cache: decoded and cached once
    assert len(decodes) == 1 and len(cache_entries()) == 1
    data._MEMO.clear()
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("the tensors were loaded"))
    assert dataset_digest(tmp_path / "src") == first and len(decodes) == 1
    monkeypatch.undo()
    assert load_cifar10(tmp_path / "src").digest == first


def test_digest_is_the_sha256_of_the_decoded_pixels_labels_and_class_names(tmp_path):
    write_batches(tmp_path / "src")
    a = load_cifar10(tmp_path / "src")
    h = hashlib.sha256()
    for t in (a.x_train, a.y_train, a.x_test, a.y_test):
        h.update(t.numpy().tobytes())
    h.update("\0".join(a.classes).encode())
    assert a.digest == h.hexdigest()


def test_stats_are_the_exact_per_channel_training_mean_and_population_std(tmp_path):
    write_class_folders(tmp_path / "src", train=5)
    a = load_cifar10(tmp_path / "src")
    x = a.x_train.double() / 255
    np.testing.assert_allclose(a.stats[0], x.mean(dim=(0, 2, 3)).numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.stats[1], x.std(dim=(0, 2, 3), unbiased=False).numpy(), rtol=0, atol=1e-12)


def test_source_none_reads_tricks_data(tmp_path, monkeypatch):
    want = write_class_folders(tmp_path / "src")
    monkeypatch.setenv("TRICKS_DATA", str(tmp_path / "src"))
    a = load_cifar10()
    assert np.array_equal(a.x_train.numpy(), want["x_train"]) and str((tmp_path / "src").resolve()) in a.source
    assert load_cifar10("") is a  # an empty source means the same


def test_source_none_without_tricks_data_reports_a_failed_download_as_a_data_error(monkeypatch):
    import fastai.data.external

    def offline(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(fastai.data.external, "untar_data", offline)
    with pytest.raises(DataError, match=r"could not be downloaded \(no route to host\); set TRICKS_DATA"):
        load_cifar10()


def test_cache_dir_is_tricks_cache_else_xdg_cache_home_else_home_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRICKS_CACHE", str(tmp_path / "tc"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "tc"
    monkeypatch.delenv("TRICKS_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "tricks"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "tricks"


# ----------------------------------------------------------------------------------------------------- cache


def test_second_load_comes_from_the_cache_without_decoding(tmp_path, monkeypatch):
    write_class_folders(tmp_path / "src", exts=("png", "jpg"))
    first = load_cifar10(tmp_path / "src")
    assert len(cache_entries()) == 1
    assert load_cifar10(tmp_path / "src") is first  # the in-process memo

    def no_decode(path):
        raise AssertionError(f"{path} decoded again")

    monkeypatch.setattr(data, "_decode", no_decode)
    data._MEMO.clear()
    second = load_cifar10(tmp_path / "src")
    assert second is not first
    assert_same_arrays(first, second)


def test_memo_answers_without_reading_the_cache(tmp_path, monkeypatch):
    write_batches(tmp_path / "src")
    first = load_cifar10(tmp_path / "src")

    def no_read(entry):
        raise AssertionError(f"{entry} read again")

    monkeypatch.setattr(data, "_read_cache", no_read)
    assert load_cifar10(tmp_path / "src") is first


def test_archive_replaced_by_another_of_the_same_name_is_decoded_afresh(tmp_path, monkeypatch):
    archive = tmp_path / "cifar10.tgz"
    write_class_folders(tmp_path / "a" / "cifar10", seed=1)
    make_tar(tmp_path / "a" / "cifar10", archive)
    old = load_cifar10(archive)
    want = write_class_folders(tmp_path / "b" / "cifar10", seed=2)
    make_tar(tmp_path / "b" / "cifar10", archive)  # same path, new content (same memo, same cache folder)
    decodes = count_decodes(monkeypatch)
    new = load_cifar10(archive)
    assert decodes == [archive.resolve()]
    assert new.digest != old.digest
    assert np.array_equal(new.x_train.numpy(), want["x_train"])
    assert len(cache_entries()) == 2


def test_folder_with_a_changed_file_is_decoded_afresh(tmp_path, monkeypatch):
    want = write_class_folders(tmp_path / "src")
    old = load_cifar10(tmp_path / "src")
    changed = tmp_path / "src" / "train" / "bird" / "0001.png"
    before = changed.stat().st_mtime_ns
    img = 255 - want["x_train"][7]  # bird is class 2: 3 per class, file 0001 is item 2*3 + 1
    save_image(changed, img)
    os.utime(changed, ns=(before + 2_000_000_000, before + 2_000_000_000))  # a later edit, even on coarse clocks
    decodes = count_decodes(monkeypatch)
    new = load_cifar10(tmp_path / "src")
    assert len(decodes) == 1 and new.digest != old.digest
    assert np.array_equal(new.x_train[7].numpy(), img)
    assert np.array_equal(np.delete(new.x_train.numpy(), 7, 0), np.delete(want["x_train"], 7, 0))


def test_interrupted_cache_write_leaves_no_entry_and_no_temporary_file(tmp_path, monkeypatch):
    write_class_folders(tmp_path / "src")
    real_save = torch.save

    def interrupted(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a cache entr")  # part written, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_cifar10(tmp_path / "src")
    left = sorted(p.name for p in cache_dir().iterdir())
    assert all(name.endswith(".lock") for name in left), left  # the lock file may stay; no .pt, no tmp
    assert data._MEMO == {}
    monkeypatch.setattr(torch, "save", real_save)
    decodes = count_decodes(monkeypatch)
    load_cifar10(tmp_path / "src")
    assert len(decodes) == 1 and len(cache_entries()) == 1


@pytest.mark.parametrize("damage", ["garbage", "truncated", "old format"])
def test_damaged_cache_entry_is_decoded_again_and_replaced(tmp_path, monkeypatch, damage):
    write_batches(tmp_path / "src")
    first = load_cifar10(tmp_path / "src")
    (entry,) = cache_entries()
    if damage == "garbage":
        entry.write_bytes(os.urandom(1000))
    elif damage == "truncated":
        entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    else:
        torch.save({**torch.load(entry, weights_only=False), "format": data.CACHE_FORMAT - 1}, entry)
    data._MEMO.clear()
    decodes = count_decodes(monkeypatch)
    again = load_cifar10(tmp_path / "src")
    assert len(decodes) == 1
    assert_same_arrays(first, again)
    assert torch.load(entry, weights_only=False)["format"] == data.CACHE_FORMAT  # replaced by a good entry


def test_unwritable_cache_folder_falls_back_to_decoding(tmp_path, monkeypatch):
    want = write_batches(tmp_path / "src")
    (tmp_path / "not-a-folder").write_text("a file where the cache folder should be")
    monkeypatch.setenv("TRICKS_CACHE", str(tmp_path / "not-a-folder"))
    a = load_cifar10(tmp_path / "src")
    assert np.array_equal(a.x_train.numpy(), want["x_train"])


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"),
                                     RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter "
                                                  "failed writing file data/0: file write failed")])
def test_a_full_cache_disk_is_one_data_error_sentence_and_leaves_no_partial_entry(tmp_path, monkeypatch, failure):
    write_batches(tmp_path / "src")

    def full(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"the first bytes")  # the disk filled up mid-write
        raise failure

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(DataError) as e:
        load_cifar10(tmp_path / "src")
    msg = str(e.value)
    assert msg.startswith(f"the cache folder {cache_dir()} is full") and "TRICKS_CACHE" in msg and "\n" not in msg
    assert all(p.name.endswith(".lock") for p in cache_dir().iterdir())  # no entry, no temporary file


def test_a_read_only_cache_after_decoding_keeps_the_decoded_arrays_without_decoding_twice(tmp_path, monkeypatch):
    want = write_batches(tmp_path / "src")
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    decodes = count_decodes(monkeypatch)
    a = load_cifar10(tmp_path / "src")
    assert np.array_equal(a.x_train.numpy(), want["x_train"]) and len(decodes) == 1


class _Payload:
    """Unpickled, it writes a file: what a crafted CIFAR-10 batches file can do to a plain `pickle.loads`."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (exec, (f"open({str(self.target)!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("victim", ["batches.meta", "data_batch_1", "test_batch"])
def test_a_malicious_batches_pickle_is_refused_before_its_payload_runs(tmp_path, victim):
    write_batches(tmp_path / "src")
    target = tmp_path / "pwned.txt"
    evil = {b"label_names": [c.encode() for c in CLASSES], b"data": _Payload(target), b"labels": [0]}
    (tmp_path / "src" / "cifar-10-batches-py" / victim).write_bytes(pickle.dumps(evil, protocol=2))
    pickle.loads(pickle.dumps(_Payload(tmp_path / "control.txt")))  # the payload is live: plain pickle runs it
    assert (tmp_path / "control.txt").read_text() == "pwned"
    with pytest.raises(DataError, match=rf"{victim} is not a CIFAR-10 batches file \(it names \S*builtin\S*\.exec,"):
        load_cifar10(tmp_path / "src")
    assert not target.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_batches_pickled_with_any_protocol_still_load(tmp_path, protocol):
    want = write_batches(tmp_path / "src")
    folder = tmp_path / "src" / "cifar-10-batches-py"
    for f in folder.iterdir():
        f.write_bytes(pickle.dumps(pickle.loads(f.read_bytes(), encoding="bytes"), protocol=protocol))
    a = load_cifar10(tmp_path / "src")
    assert np.array_equal(a.x_train.numpy(), want["x_train"]) and np.array_equal(a.y_test.numpy(), want["y_test"])


def test_cache_false_neither_reads_nor_writes_the_cache(tmp_path, monkeypatch):
    write_batches(tmp_path / "src")
    monkeypatch.setattr(data, "_read_cache", lambda entry: pytest.fail("cache read"))
    a = load_cifar10(tmp_path / "src", cache=False)
    assert a.x_train.shape == (60, 3, 32, 32)
    assert not cache_dir().exists() or not any(cache_dir().iterdir())


# ---------------------------------------------------------------------------------------------------- errors


def _missing(tmp: Path) -> tuple[Path, Path, str]:
    return tmp / "nowhere", tmp / "nowhere", r"CIFAR-10 source .*nowhere does not exist"


def _random_files(tmp: Path) -> tuple[Path, Path, str]:
    (tmp / "junk" / "sub").mkdir(parents=True)
    (tmp / "junk" / "a.txt").write_text("hello")
    (tmp / "junk" / "sub" / "b.bin").write_bytes(os.urandom(64))
    return tmp / "junk", tmp / "junk", r"is neither class folders \(train/<class>/\*, test/<class>/\*\) nor torchvision"


def _not_an_archive(tmp: Path) -> tuple[Path, Path, str]:
    (tmp / "notes.txt").write_text("not a dataset")
    return tmp / "notes.txt", tmp / "notes.txt", r"is neither a folder nor a \.tgz/\.tar archive"


def _three_classes(tmp: Path) -> tuple[Path, Path, str]:
    write_class_folders(tmp / "src", classes=CLASSES[:3])
    return tmp / "src", tmp / "src" / "train", r"train has 3 class folders; CIFAR-10 has 10$"


def _eleven_classes(tmp: Path) -> tuple[Path, Path, str]:
    write_class_folders(tmp / "src", classes=(*CLASSES, "zebra"), train=1, test=1)
    return tmp / "src", tmp / "src" / "train", r"train has 11 class folders; CIFAR-10 has 10$"


def _different_classes(tmp: Path) -> tuple[Path, Path, str]:
    write_class_folders(tmp / "src", test_classes=(*CLASSES[:9], "lorry"), train=1, test=1)
    return tmp / "src", tmp / "src", r": train/ and test/ name different classes \(lorry, truck in one only\)$"


def _unreadable_png(tmp: Path) -> tuple[Path, Path, str]:
    write_class_folders(tmp / "src")
    (tmp / "src" / "train" / "cat" / "0001.png").write_bytes(os.urandom(200))
    return tmp / "src", tmp / "src" / "train" / "cat" / "0001.png", r"0001\.png is not a readable image \("


def _damaged_jpeg(tmp: Path) -> tuple[Path, Path, str]:
    write_class_folders(tmp / "src", exts=("jpg",))
    (tmp / "src" / "test" / "dog" / "0000.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(300))
    return tmp / "src", tmp / "src" / "test" / "dog" / "0000.jpg", r"0000\.jpg is not a readable image \("


def _wrong_size(tmp: Path) -> tuple[Path, Path, str]:
    write_class_folders(tmp / "src")
    bad = tmp / "src" / "test" / "ship" / "0001.png"
    save_image(bad, noise_images(1, np.random.default_rng(0), size=(32, 24))[0])
    return tmp / "src", bad, r"0001\.png is 24x32, not 32x32$"


def _empty_split(tmp: Path) -> tuple[Path, Path, str]:
    write_class_folders(tmp / "src", test=0)
    for cls in CLASSES:
        (tmp / "src" / "test" / cls).mkdir(parents=True, exist_ok=True)
    (tmp / "src" / "test" / "cat" / "README.txt").write_text("not an image")
    return tmp / "src", tmp / "src" / "test", r"test holds no images$"


def _corrupt_archive(tmp: Path) -> tuple[Path, Path, str]:
    (tmp / "cifar10.tgz").write_bytes(os.urandom(4096))
    return tmp / "cifar10.tgz", tmp / "cifar10.tgz", r"cifar10\.tgz is not a readable tar archive \("


def _truncated_archive(tmp: Path) -> tuple[Path, Path, str]:
    write_class_folders(tmp / "src" / "cifar10")
    archive = make_tar(tmp / "src" / "cifar10", tmp / "cifar10.tgz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    return archive, archive, r"cifar10\.tgz is not a readable tar archive \("


def _unreadable_png_in_archive(tmp: Path) -> tuple[Path, Path, str]:
    write_class_folders(tmp / "src" / "cifar10")
    (tmp / "src" / "cifar10" / "train" / "frog" / "0002.png").write_bytes(b"\x89PNG garbage")
    archive = make_tar(tmp / "src" / "cifar10", tmp / "cifar10.tgz")
    return archive, Path(f"{archive}:cifar10/train/frog/0002.png"), r"\.tgz:cifar10/train/frog/0002\.png is not a"


def _batches_missing_test_batch(tmp: Path) -> tuple[Path, Path, str]:
    write_batches(tmp / "src", names=BATCHES[:-1])
    return tmp / "src", tmp / "src" / "cifar-10-batches-py", r"holds data_batch_1 but not all of data_batch_1\.\.5"


def _batches_not_a_pickle(tmp: Path) -> tuple[Path, Path, str]:
    write_batches(tmp / "src")
    bad = tmp / "src" / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(os.urandom(500))
    return tmp / "src", bad, r"data_batch_3 is not a CIFAR-10 batches file \("


def _batches_labels_out_of_range(tmp: Path) -> tuple[Path, Path, str]:
    write_batches(tmp / "src")
    bad = tmp / "src" / "cifar-10-batches-py" / "test_batch"
    bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 10]}))
    return tmp / "src", bad, r"test_batch has 2 images, 2 labels in \[3, 10\]; not CIFAR-10$"


def _batches_meta_with_nine_classes(tmp: Path) -> tuple[Path, Path, str]:
    write_batches(tmp / "src", meta=CLASSES[:9])
    return tmp / "src", tmp / "src" / "cifar-10-batches-py" / "batches.meta", r"names 9 classes; CIFAR-10 has 10$"


ERRORS = [_missing, _random_files, _not_an_archive, _three_classes, _eleven_classes, _different_classes,
          _unreadable_png, _damaged_jpeg, _wrong_size, _empty_split, _corrupt_archive, _truncated_archive,
          _unreadable_png_in_archive, _batches_missing_test_batch, _batches_not_a_pickle,
          _batches_labels_out_of_range, _batches_meta_with_nine_classes]


@pytest.mark.parametrize("make", ERRORS, ids=[f.__name__.strip("_") for f in ERRORS])
def test_a_bad_source_raises_a_one_line_data_error_naming_the_path(tmp_path, make):
    source, named, pattern = make(tmp_path)
    with pytest.raises(DataError, match=pattern) as info:
        load_cifar10(source)
    message = str(info.value)
    assert "\n" not in message
    assert str(named) in message, (str(named), message)
    assert not cache_entries()  # nothing cached from a failed decode


# --------------------------------------------------------------------------------------------------- loaders


@pytest.mark.parametrize("device", DEVICES)
def test_cifar_dls_gives_fastai_dataloaders_of_float32_batches_on_the_device(device):
    a = synthetic_arrays()
    dls = cifar_dls(a, bs=32, val_bs=16, augment=True, normalize="train", device=device)
    assert isinstance(dls, DataLoaders) and len(dls.loaders) == 2
    assert isinstance(dls.train, TensorImageDL) and isinstance(dls.valid, TensorImageDL)
    assert (dls.train.bs, dls.valid.bs, dls.train.shuffle, dls.valid.shuffle) == (32, 16, True, False)
    assert dls.c == 10 and dls.vocab == list(CLASSES)
    for dl, n in ((dls.train, 200), (dls.valid, 60)):
        x, y = dl.one_batch()
        assert x.device.type == y.device.type == device
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (3, 32, 32)
        xs, ys = epoch(dl)
        assert xs.shape == (n, 3, 32, 32) and len(ys) == n


def test_cifar_dls_augments_only_the_training_set_with_reflect_pad_4_crop_and_flip():
    a = synthetic_arrays()
    dls = cifar_dls(a, bs=32, augment=True)
    assert dls.train.augment == Augment(pad=4, flip=0.5, mode="reflect") and dls.valid.augment is None
    assert cifar_dls(a, bs=32).train.augment is None
    custom = Augment(pad=2, flip=0.0, mode="symmetric")
    assert cifar_dls(a, bs=32, augment=custom).train.augment is custom


@pytest.mark.parametrize("normalize", ["train", True])
def test_training_set_normalization_gives_zero_mean_unit_std_per_channel_over_the_training_set(normalize):
    a = synthetic_arrays()
    assert max(a.stats[0]) - min(a.stats[0]) > 0.02  # the channels differ: per-channel stats matter
    x, _ = epoch(cifar_dls(a, bs=64, normalize=normalize).train)
    assert x.shape == a.x_train.shape
    torch.testing.assert_close(x.double().mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.double), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.double().std(dim=(0, 2, 3), unbiased=False), torch.ones(3, dtype=torch.double),
                               atol=1e-5, rtol=0)


def test_given_normalization_stats_are_applied_to_both_splits():
    a = synthetic_arrays()
    mean, std = (0.1, 0.5, 0.9), (0.5, 0.25, 0.2)
    dls = cifar_dls(a, bs=64, normalize=(mean, std))
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    x, _ = epoch(dls.valid)
    torch.testing.assert_close(x, (a.x_test.float() / 255 - m) / s, atol=1e-5, rtol=0)
    x, _ = epoch(dls.train)  # shuffled: compare the sorted per-image sums, which do not depend on the order
    want = (a.x_train.float() / 255 - m) / s
    torch.testing.assert_close(torch.sort(x.sum(dim=(1, 2, 3))).values, torch.sort(want.sum(dim=(1, 2, 3))).values,
                               atol=1e-3, rtol=0)


@pytest.mark.parametrize("normalize", [None, False])
def test_no_normalization_scales_pixels_to_0_1(normalize):
    a = synthetic_arrays()
    dls = cifar_dls(a, bs=64, augment=True, normalize=normalize)
    x, _ = epoch(dls.valid)
    torch.testing.assert_close(x, a.x_test.float() / 255, atol=1e-6, rtol=0)
    x, _ = epoch(dls.train)
    assert x.min() >= 0 and x.max() <= 1


@pytest.mark.parametrize("bad", ["imagenet", ((0.5, 0.5), (0.2, 0.2, 0.2)), ((0.5,) * 3, (0.2, 0.0, 0.2)), 3.5])
def test_a_malformed_normalize_raises_value_error(bad):
    with pytest.raises(ValueError, match="normalize"):
        cifar_dls(synthetic_arrays(2, 1), normalize=bad)


def test_same_seed_gives_identical_batches_and_augmentations_across_constructions():
    a = synthetic_arrays()

    def two_epochs(seed: int) -> list[torch.Tensor]:
        dls = cifar_dls(a, bs=48, augment=True, normalize="train", seed=seed, train_subset=0.5)
        return [t for _ in range(2) for b in dls.train for t in b]

    first, again = two_epochs(7), two_epochs(7)
    assert len(first) == len(again) == 2 * 2 * 3  # 100 images in batches of 48: 3 batches of (x, y), 2 epochs
    assert all(torch.equal(u, v) for u, v in zip(first, again, strict=True))


def test_different_seeds_give_different_orders_and_augmentations():
    a = synthetic_arrays()
    orders = [epoch(cifar_dls(a, bs=50, augment=True, seed=seed).train)[1] for seed in (0, 1)]
    assert not torch.equal(*orders)
    x = a.x_train[:50]  # the same images in the same order, augmented under two seeds
    assert not torch.equal(augmented(x, Augment(), seed=0), augmented(x, Augment(), seed=1))
    assert torch.equal(augmented(x, Augment(), seed=0), augmented(x, Augment(), seed=0))


def test_successive_epochs_draw_a_new_order_and_new_augmentations():
    dl = cifar_dls(synthetic_arrays(), bs=50, augment=True, seed=3).train
    (x1, y1), (x2, y2) = epoch(dl), epoch(dl)
    assert not torch.equal(y1, y2) and not torch.equal(x1, x2)
    assert torch.equal(torch.bincount(y1), torch.bincount(y2))


def test_validation_loader_is_in_dataset_order_and_unaugmented_for_every_seed():
    a = synthetic_arrays()
    for seed in (0, 1):
        x, y = epoch(cifar_dls(a, bs=16, augment=True, seed=seed).valid)
        assert torch.equal(y, a.y_test)
        torch.testing.assert_close(x, a.x_test.float() / 255, atol=1e-6, rtol=0)


def _row_index(whole: torch.Tensor, part: torch.Tensor) -> list[int]:
    """Where each image of `part` sits in `whole` (the synthetic images are all distinct)."""
    where = {bytes(img.numpy().tobytes()): i for i, img in enumerate(whole)}
    return [where[bytes(img.numpy().tobytes())] for img in part]


@pytest.mark.parametrize(("subset", "per_class"), [(0.5, 10), (0.25, 5), (30, 3), (35, 3), (10, 1)])
def test_train_subset_is_class_balanced_and_drawn_per_seed(subset, per_class):
    a = synthetic_arrays(train_per_class=20)

    def chosen(seed: int) -> list[int]:
        dl = cifar_dls(a, bs=64, train_subset=subset, seed=seed).train
        assert len(dl.x) == 10 * per_class and torch.equal(torch.bincount(dl.y, minlength=10),
                                                           torch.full((10,), per_class))
        idx = _row_index(a.x_train, dl.x)
        assert torch.equal(a.y_train[idx], dl.y)  # each image keeps its own label
        return idx

    s0, s0_again, s1 = chosen(0), chosen(0), chosen(1)
    assert s0 == s0_again and s0 == sorted(s0)  # the same subset for a seed, kept in dataset order
    assert s0 != s1  # another subset for another seed


@pytest.mark.parametrize("subset", [None, 1.0, 200, 10_000])
def test_train_subset_of_everything_keeps_the_whole_training_set(subset):
    a = synthetic_arrays(train_per_class=20)
    dl = cifar_dls(a, train_subset=subset).train
    assert torch.equal(dl.x, a.x_train) and torch.equal(dl.y, a.y_train)


@pytest.mark.parametrize("bad", [0.0, -0.5, 0, -3])
def test_a_non_positive_train_subset_raises_value_error(bad):
    with pytest.raises(ValueError, match="positive"):
        cifar_dls(synthetic_arrays(2, 1), train_subset=bad)


def test_test_subset_is_the_first_k_per_class_in_dataset_order_for_every_seed():
    a = synthetic_arrays(test_per_class=6)
    want = sorted(i for c in range(10) for i in torch.nonzero(a.y_test == c).flatten()[:4].tolist())
    for seed in (0, 1, 2):
        x, y = epoch(cifar_dls(a, bs=16, test_subset=40, train_subset=0.5, seed=seed).valid)
        assert torch.equal(y, a.y_test[want])
        torch.testing.assert_close(x, a.x_test[want].float() / 255, atol=1e-6, rtol=0)


def test_subsets_are_the_tensors_the_loaders_serve():
    a = synthetic_arrays(train_per_class=20, test_per_class=6)
    for seed in (0, 5):
        x_tr, y_tr, x_te, y_te = subsets(a, seed, train_subset=0.3, test_subset=20)
        dls = cifar_dls(a, bs=64, seed=seed, train_subset=0.3, test_subset=20)
        assert torch.equal(dls.train.x, x_tr) and torch.equal(dls.train.y, y_tr)
        assert torch.equal(dls.valid.x, x_te) and torch.equal(dls.valid.y, y_te)
    assert all(t is u for t, u in zip(subsets(a, 0), (a.x_train, a.y_train, a.x_test, a.y_test), strict=True))


def test_mean_image_normalization_subtracts_the_whole_training_sets_mean_image_from_raw_pixels():
    a = synthetic_arrays(train_per_class=20, test_per_class=6)
    mean_image = a.x_train.double().mean(0).float()  # of all 200 training images, though 100 are served
    dls = cifar_dls(a, bs=64, normalize="mean_image", train_subset=0.5)
    x, _ = epoch(dls.valid)
    torch.testing.assert_close(x, a.x_test.float() - mean_image, atol=1e-4, rtol=0)
    x, _ = epoch(dls.train)
    assert x.shape == (100, 3, 32, 32) and x.dtype == torch.float32


def test_class_balanced_takes_the_first_items_without_a_generator_and_random_ones_with():
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 2, 2, 2, 2])
    assert class_balanced(labels, 6).tolist() == [0, 1, 2, 3, 6, 7]
    g = torch.Generator().manual_seed(0)
    picks = [tuple(class_balanced(labels, 3, g).tolist()) for _ in range(20)]
    assert len(set(picks)) > 1 and all(sorted(labels[list(p)].tolist()) == [0, 1, 2] for p in picks)
    with pytest.raises(ValueError, match="at least one item of each of 3 classes"):
        class_balanced(labels, 2)


# ---------------------------------------------------------------------------------------- tensor loader itself


def test_tensor_image_dl_new_keeps_tensors_augmentation_normalization_and_generator_state():
    a = synthetic_arrays(5, 1)
    dl = TensorImageDL(a.x_train, a.y_train, bs=16, shuffle=True, augment=Augment(), mean=(0.5,) * 3,
                       std=(0.25,) * 3, seed=11)
    epoch(dl)  # advance the generator
    copy = dl.new()
    assert (copy.augment, copy.mean, copy.std, copy.bs, copy.shuffle) == (dl.augment, dl.mean, dl.std, 16, True)
    for u, v in zip(epoch(copy), epoch(dl), strict=True):  # both continue from the same generator state
        assert torch.equal(u, v)
    plain = dl.new(shuffle=False, augment=None)
    x, y = epoch(plain)
    assert torch.equal(y, a.y_train)
    torch.testing.assert_close(x, (a.x_train.float() / 255 - 0.5) / 0.25, atol=1e-5, rtol=0)


def test_tensor_image_dl_passes_float_features_through_and_honours_drop_last():
    x, y = torch.randn(10, 5), torch.arange(10)
    dl = TensorImageDL(x, y, bs=4, augment=Augment(), mean=(0.5,), std=(2.0,))
    assert torch.equal(epoch(dl)[0], x)
    dropped = TensorImageDL(x, y, bs=4, drop_last=True)
    assert len(dropped) == 2 and [len(b[1]) for b in dropped] == [4, 4]


# ------------------------------------------------------------------------------------- augmentation properties


@st.composite
def image_batches(draw, min_side: int = 1, max_side: int = 9) -> torch.Tensor:
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    h, w = draw(st.integers(min_side, max_side)), draw(st.integers(min_side, max_side))
    return torch.from_numpy(draw(hnp.arrays(np.uint8, (n, c, h, w))))


def augmented(x: torch.Tensor, augment: Augment | None, seed: int = 0, bs: int = 3) -> torch.Tensor:
    """One unshuffled epoch of `x` through TensorImageDL, back in uint8 (the loader scales by 1/255)."""
    dl = TensorImageDL(x, torch.zeros(len(x), dtype=torch.long), bs=bs, shuffle=False, augment=augment, seed=seed)
    out = epoch(dl)[0]
    assert out.dtype == torch.float32 and out.shape == x.shape
    u8 = (out * 255).round()
    torch.testing.assert_close(out * 255, u8, atol=1e-3, rtol=0)  # whole pixel levels, nothing interpolated
    return u8.to(torch.uint8)


def _windows(padded: torch.Tensor, h: int, w: int) -> list[torch.Tensor]:
    """Every (h, w) window of a padded (C, H + 2p, W + 2p) image."""
    ph, pw = padded.shape[-2:]
    return [padded[:, i:i + h, j:j + w] for i in range(ph - h + 1) for j in range(pw - w + 1)]


@PROPS
@given(x=image_batches(), pad=st.integers(0, 6), flip=st.floats(0, 1), mode=st.sampled_from(["reflect", "symmetric"]),
       seed=st.integers(0, 2**31 - 1), bs=st.integers(1, 4))
def test_augmentation_keeps_shape_and_dtype_and_only_copies_pixels_of_the_same_image_and_channel(x, pad, flip, mode,
                                                                                              seed, bs):
    out = augmented(x, Augment(pad=pad, flip=flip, mode=mode), seed, bs)
    for i in range(len(x)):
        for c in range(x.shape[1]):
            assert torch.isin(out[i, c], x[i, c]).all()
    assert out.min() >= x.min() and out.max() <= x.max()


@PROPS
@given(x=image_batches(), seed=st.integers(0, 2**31 - 1))
def test_flip_mirrors_the_columns_and_flipping_twice_is_the_identity(x, seed):
    once = augmented(x, Augment(pad=0, flip=1.0), seed)
    assert torch.equal(once, torch.flip(x, dims=[-1]))
    assert torch.equal(augmented(once, Augment(pad=0, flip=1.0), seed + 1), x)


@PROPS
@given(x=image_batches(), seed=st.integers(0, 2**31 - 1), mode=st.sampled_from(["reflect", "symmetric"]))
def test_no_padding_and_no_flip_is_the_identity(x, seed, mode):
    assert torch.equal(augmented(x, Augment(pad=0, flip=0.0, mode=mode), seed), x)
    assert torch.equal(augmented(x, None, seed), x)


@PROPS
@given(x=image_batches(min_side=2), data_=st.data(), flip=st.sampled_from([0.0, 0.5, 1.0]),
       seed=st.integers(0, 2**31 - 1))
def test_every_reflect_crop_is_a_window_of_the_reflect_padded_image_maybe_mirrored(x, data_, flip, seed):
    h, w = x.shape[-2:]
    pad = data_.draw(st.integers(0, min(4, h - 1, w - 1)), label="pad")  # torch's reflect needs pad < side
    out = augmented(x, Augment(pad=pad, flip=flip, mode="reflect"), seed)
    padded = F.pad(x.float(), (pad, pad, pad, pad), mode="reflect").to(torch.uint8)
    for i in range(len(x)):
        windows = _windows(padded[i], h, w)
        candidates = windows + ([torch.flip(win, dims=[-1]) for win in windows] if flip > 0 else [])
        assert any(torch.equal(out[i], win) for win in candidates)


@PROPS
@given(x=image_batches(), data_=st.data(), flip=st.sampled_from([0.0, 0.5, 1.0]), seed=st.integers(0, 2**31 - 1))
def test_every_symmetric_crop_is_a_window_of_the_symmetric_padded_image_maybe_mirrored(x, data_, flip, seed):
    h, w = x.shape[-2:]
    pad = data_.draw(st.integers(0, min(4, h, w)), label="pad")
    out = augmented(x, Augment(pad=pad, flip=flip, mode="symmetric"), seed)
    padded = torch.from_numpy(np.pad(x.numpy(), ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="symmetric"))
    for i in range(len(x)):
        windows = _windows(padded[i], h, w)
        candidates = windows + ([torch.flip(win, dims=[-1]) for win in windows] if flip > 0 else [])
        assert any(torch.equal(out[i], win) for win in candidates)


def test_crop_offsets_are_uniform_over_every_window_and_flips_follow_their_probability():
    n, pad, p = 3000, 1, 0.3
    x = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4).repeat(n, 1, 1, 1)  # every window is distinct
    out = augmented(x, Augment(pad=pad, flip=p), seed=5, bs=512)
    padded = F.pad(x[0].float(), (pad,) * 4, mode="reflect").to(torch.uint8)
    windows = _windows(padded, 4, 4)
    seen = torch.zeros(2, len(windows))
    for img in out:
        hits = [(f, k) for f in (0, 1) for k, win in enumerate(windows)
                if torch.equal(img, torch.flip(win, dims=[-1]) if f else win)]
        assert len(hits) == 1
        seen[hits[0]] += 1
    assert seen.sum() == n
    per_window = seen.sum(0) / n
    assert torch.all((per_window - 1 / 9).abs() < 0.03), per_window  # 9 offsets, each about 1/9
    assert abs(seen[1].sum().item() / n - p) < 0.04


@pytest.mark.parametrize(("kwargs", "message"), [({"mode": "wrap"}, "unknown padding mode 'wrap'"),
                                                 ({"pad": -1}, "pad >= 0"), ({"flip": 1.5}, "0 <= flip <= 1")])
def test_augment_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Augment(**kwargs)


# ---------------------------------------------------------------------------------------------- stock fastai


def tiny_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 10))


def test_stock_fastai_learner_fits_finds_lr_validates_and_predicts_without_a_loss_func(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # lr_find saves the model under the learner's path, '.' by default
    a = synthetic_arrays(train_per_class=30, test_per_class=10, noise=25)
    dls = cifar_dls(a, bs=50, augment=True, normalize="train", seed=0)
    learn = Learner(dls, tiny_cnn(), metrics=accuracy)
    assert isinstance(learn.loss_func, CrossEntropyLossFlat)  # named by the dataset
    assert any(isinstance(cb, ProgressCallback) for cb in learn.cbs)  # stock callbacks, bar silenced below
    epochs = []
    with learn.no_bar(), learn.no_logging():
        suggestion = learn.lr_find(show_plot=False)
        assert np.isfinite(suggestion.valley) and suggestion.valley > 0
        learn.fit(1, lr=0.05)
        epochs.append(len(learn.recorder.values))
        learn.fit_one_cycle(3, lr_max=0.05)
        epochs.append(len(learn.recorder.values))
        learn.fit_sgdr(1, 1, lr_max=0.02)
        epochs.append(len(learn.recorder.values))
        loss, acc = learn.validate()
        preds, targs = learn.get_preds()
        inputs, _, train_targs = learn.get_preds(ds_idx=0, with_input=True)
        shuffled = learn.get_preds(dl=dls.train)[1]
    assert epochs == [1, 3, 1] and all(np.isfinite(v).all() for v in learn.recorder.values) and np.isfinite(loss)
    assert acc > 0.8  # far above chance (0.1): the class colours are learnable
    assert preds.shape == (100, 10) and torch.equal(targs, a.y_test)  # dataset order
    torch.testing.assert_close(preds.sum(1), torch.ones(100))  # softmax from the inferred loss
    assert abs((preds.argmax(1) == targs).float().mean().item() - acc) < 1e-6
    assert torch.equal(train_targs, a.y_train) and torch.equal(shuffled, a.y_train)  # a shuffled loader too
    assert inputs.shape == (300, 3, 32, 32)


# ----------------------------------------------------------------------------------------------- integration


def real_source() -> str:
    """$TRICKS_DATA; without it the real-data test skips, except under CI, where a skip would pass unnoticed."""
    source = os.environ.get("TRICKS_DATA")
    if source:
        return source
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail("TRICKS_DATA is not set under CI: the integration test needs the real CIFAR-10 (e.g. "
                    "TRICKS_DATA=../shared/data/cifar10-jpeg.tgz)", pytrace=False)
    pytest.skip("TRICKS_DATA is not set: no real CIFAR-10 to load")


def test_real_source_skips_when_tricks_data_is_unset_but_fails_under_ci(monkeypatch):
    monkeypatch.setenv("TRICKS_DATA", "/some/cifar10.tgz")
    monkeypatch.setenv("CI", "true")
    assert real_source() == "/some/cifar10.tgz"
    monkeypatch.delenv("TRICKS_DATA")
    with pytest.raises(pytest.fail.Exception, match="TRICKS_DATA is not set under CI"):
        real_source()
    for local in ("", "false"):
        monkeypatch.setenv("CI", local)
        with pytest.raises(pytest.skip.Exception):
            real_source()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        real_source()


@pytest.mark.integration
def test_real_cifar10_has_60000_images_in_the_official_split():
    a = load_cifar10(real_source())  # the real cache folder: decoded once (~15 s), then read back
    assert a.x_train.shape == (50_000, 3, 32, 32) and a.x_test.shape == (10_000, 3, 32, 32)
    assert a.x_train.dtype == torch.uint8 and a.y_train.dtype == a.y_test.dtype == torch.int64
    assert a.classes == CIFAR10_CLASSES
    assert torch.bincount(a.y_train, minlength=10).tolist() == [5_000] * 10
    assert torch.bincount(a.y_test, minlength=10).tolist() == [1_000] * 10
    official_mean, official_std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    np.testing.assert_allclose(a.stats[0], official_mean, atol=0.005)  # lossy copies stay this close
    np.testing.assert_allclose(a.stats[1], official_std, atol=0.005)
    x, y = cifar_dls(a, bs=256, augment=True, normalize="train", test_subset=1000).one_batch()
    assert x.shape == (256, 3, 32, 32) and y.shape == (256,)


# ------------------------------------------------------------------------------------------ layout, host reads


@pytest.mark.parametrize("augment", [False, True])
def test_channels_last_loaders_hand_out_the_same_batches_in_channels_last_layout(augment):
    a = synthetic_arrays()
    kw = dict(bs=16, augment=augment, normalize="train", seed=3)
    nchw = cifar_dls(a, **kw)
    cl = cifar_dls(a, memory_format=torch.channels_last, **kw)
    for dl_n, dl_c in ((nchw.train, cl.train), (nchw.valid, cl.valid)):
        for (xn, yn), (xc, yc) in zip(dl_n, dl_c, strict=True):
            assert xc.is_contiguous(memory_format=torch.channels_last) and not xc.is_contiguous()
            assert xn.is_contiguous() and torch.equal(xn, xc) and torch.equal(yn, yc)
    again = cl.train.new()  # fastai's copies keep the layout
    assert again.one_batch()[0].is_contiguous(memory_format=torch.channels_last)


def test_loader_to_detach_keeps_a_0_dim_value_on_its_device_and_moves_the_rest_as_fastai_does():
    from tests.test_callbacks import SyncSpy, host_reads

    dl = cifar_dls(synthetic_arrays()).train
    scalar, preds = torch.tensor(2.5).as_subclass(SyncSpy), torch.randn(4, 10).as_subclass(SyncSpy)
    assert host_reads(lambda: dl.to_detach(scalar)) == 0
    assert host_reads(lambda: dl.to_detach(preds)) == 1  # get_preds still gathers predictions on the host
    assert float(dl.to_detach(scalar)) == 2.5 and not dl.to_detach(scalar).requires_grad
