"""CIFAR-10 from any of its real sources, decoded once into uint8 tensors and cached, verified when read.

Sources (`load_cifar10(source)`; `source` None reads `$TRICKS_DATA`, and without it fastai's `untar_data(URLs.CIFAR)`
downloads the dataset):

- a folder or `.tgz`/`.tar` in the class-folder layout `train/<class>/*`, `test/<class>/*` (fastai's `URLs.CIFAR`
  archive, the offline JPEG copy), any image format PIL reads;
- torchvision's `cifar-10-batches-py` folder, or its `cifar-10-python.tar.gz`.

The decoded arrays are cached under `$TRICKS_CACHE` (default `tricks/` in the user cache folder: `$XDG_CACHE_HOME`,
else `~/.cache`, on Linux), keyed by the source's content: an archive by the sha256 of its bytes, a folder by its
listing (paths, sizes, modification times). `CifarArrays.digest` is the sha256 of the decoded pixels and labels, so
two packagings of the same images (the archive and its extracted folder) are the same copy of the dataset in a
report. A cache entry is verified when read: its tensors must hash to its digest and its labels name its classes, else
it is decoded again from the source. The batched loaders over these tensors are in `tricks.loaders`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import pickle
import re
import tarfile
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tricks.plain import cache_dir, one_line, write_atomic

__all__ = ["DataError", "CifarArrays", "load_cifar10", "dataset_digest", "channel_stats", "CIFAR10_CLASSES",
           "arrays_digest"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}
CACHE_FORMAT = 1  # bump when the cache file's contents change meaning
MAX_MEMBER_BYTES = 64 << 20  # an archive member larger than this is no CIFAR-10 file (a batches file is 31 MB)


class DataError(Exception):
    """A user-facing problem with a CIFAR-10 source: the message is one sentence naming the path or file."""


@dataclass(frozen=True, eq=False)
class CifarArrays:
    """CIFAR-10 as tensors: images uint8 (N, 3, 32, 32), labels int64, class names, and where they came from."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]
    source: str  # what the copy is, for reports: e.g. "class folders (JPEG) /data/cifar10-jpeg.tgz"
    digest: str  # sha256 of the decoded pixels and labels
    stats: tuple[tuple[float, ...], tuple[float, ...]] = field(default=((), ()))  # training mean, std per channel

    def __repr__(self) -> str:
        return (f"CifarArrays({len(self.x_train)} train, {len(self.x_test)} test, {len(self.classes)} classes, "
                f"{self.source}, sha256 {self.digest[:12]})")


# --------------------------------------------------------------------------------------------------- sources


def _default_source() -> Path:
    """fastai's download of `URLs.CIFAR` (class folders of PNGs), for users with internet access."""
    from fastai.data.external import URLs, untar_data

    try:
        return Path(untar_data(URLs.CIFAR))
    except Exception as e:
        raise DataError(f"CIFAR-10 could not be downloaded ({_short(e)}); set TRICKS_DATA (or --data) to a local "
                        "copy") from None


def _short(e: BaseException) -> str:
    return one_line(e, typed=False, limit=200)


def _resolve(source: str | os.PathLike | None) -> Path:
    if source is None or str(source) == "":
        source = os.environ.get("TRICKS_DATA") or None
    if source is None:
        return _default_source()
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"CIFAR-10 source {path} does not exist")
    return path.resolve()


def _is_archive(path: Path) -> bool:
    return path.is_file() and (path.name.endswith((".tgz", ".tar.gz", ".tar", ".tar.bz2", ".tar.xz")))


def _source_key(path: Path) -> str:
    """The cache key: sha256 of an archive's bytes, or of a folder's listing (relative paths, sizes, mtimes)."""
    h = hashlib.sha256(f"cifar10-cache-v{CACHE_FORMAT}\0".encode())
    if path.is_file():
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        return h.hexdigest()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            p = Path(root) / name
            st = p.stat()
            h.update(f"{p.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------- decoding


class _Files:
    """The files of a folder or an archive, by relative path, readable as bytes (an archive is read in one pass)."""

    def __init__(self, path: Path):
        self.path = path
        self.archive = path.is_file()
        self._blobs: dict[str, bytes] = {}
        if self.archive:
            if not _is_archive(path):
                raise DataError(f"{path} is neither a folder nor a .tgz/.tar archive")
            try:
                with tarfile.open(path) as tar:
                    for m in tar:  # in archive order: a compressed tar cannot seek back cheaply
                        if m.isfile() and m.size > MAX_MEMBER_BYTES:
                            raise DataError(f"{path}:{m.name.removeprefix('./')} is {m.size:,} bytes, more than any "
                                            f"CIFAR-10 file ({MAX_MEMBER_BYTES:,} at most)")
                        f = tar.extractfile(m) if m.isfile() else None
                        if f is not None:
                            self._blobs[m.name.removeprefix("./")] = f.read(MAX_MEMBER_BYTES + 1)
            except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
                raise DataError(f"{path} is not a readable tar archive ({_short(e)})") from None
            self.names = sorted(self._blobs)
        else:
            self.names = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
        self.name_set = set(self.names)

    def read(self, name: str) -> bytes:
        if self.archive:
            return self._blobs[name]
        try:
            return (self.path / name).read_bytes()
        except OSError as e:
            raise DataError(f"{self.where(name)} could not be read ({_short(e)})") from None

    def where(self, name: str) -> str:
        return f"{self.path}:{name}" if self.archive else str(self.path / name)


_SPLIT_RE = re.compile(r"^(?P<prefix>(?:.*/)?)(?P<split>train|test)/(?P<cls>[^/]+)/(?P<file>[^/]+)$")
_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")


def _layout(files: _Files) -> tuple[str, str]:
    """('batches', prefix) for torchvision's layout, ('folders', prefix) for train/<class>/ + test/<class>/."""
    for name in files.names:
        if name.endswith("/data_batch_1") or name == "data_batch_1":
            prefix = name[: -len("data_batch_1")]
            if all(prefix + b in files.name_set for b in (*_BATCHES, "test_batch")):
                return "batches", prefix
            raise DataError(f"{files.where(prefix or '.')} holds data_batch_1 but not all of data_batch_1..5 and "
                            "test_batch")
    prefixes = {m.group("prefix") for n in files.names if (m := _SPLIT_RE.match(n))}
    if not prefixes:
        raise DataError(f"{files.path} is neither class folders (train/<class>/*, test/<class>/*) nor torchvision's "
                        "cifar-10-batches-py")
    prefix = min(prefixes, key=len)  # the shallowest train/ and test/ pair
    return "folders", prefix


def _as_tensor(blob: bytes) -> torch.Tensor:
    with warnings.catch_warnings():  # read-only bytes: the decoders only read them
        warnings.simplefilter("ignore", UserWarning)
        return torch.frombuffer(blob, dtype=torch.uint8)


def _decode_one(where: str, blob: bytes) -> torch.Tensor | str:
    """One image as uint8 (3, H, W) by torchvision's decoders, PIL for other formats; or why it cannot be read."""
    from torchvision.io import ImageReadMode, decode_image

    try:
        return decode_image(_as_tensor(blob), mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError):
        pass
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(blob)) as im:
            return torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1).copy())
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        return f"{where} is not a readable image ({_short(e)})"


def _png_or_jpeg_size(blob: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR or a JPEG's first SOF marker; None for other formats or an odd header."""
    if blob[:8] == b"\x89PNG\r\n\x1a\n" and blob[12:16] == b"IHDR":
        return int.from_bytes(blob[16:20], "big"), int.from_bytes(blob[20:24], "big")
    if blob[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(blob) and blob[i] == 0xFF:
        marker = blob[i + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame: height, then width
            return int.from_bytes(blob[i + 7:i + 9], "big"), int.from_bytes(blob[i + 5:i + 7], "big")
        i += 2 + int.from_bytes(blob[i + 2:i + 4], "big")
    return None


def _header_problem(where: str, blob: bytes) -> str | None:
    """Why an image is refused from its header alone (a size other than 32x32, a decompression bomb), before any
    decoder allocates its pixels; None when the header is fine or not one PIL reads (the decoders then say why)."""
    size = _png_or_jpeg_size(blob)  # the common formats read directly: 3 µs an image, PIL's open 150 µs
    if size is not None:
        return None if size == (32, 32) else f"{where} is {size[0]}x{size[1]}, not 32x32"
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(blob)) as im:  # reads the header only
                w, h = im.size
        except Image.DecompressionBombError:
            return f"{where} claims an image of over {2 * Image.MAX_IMAGE_PIXELS:,} pixels, not 32x32"
        except Exception:  # not an image PIL knows: left to the decoders, which name the problem
            return None
    return None if (w, h) == (32, 32) else f"{where} is {w}x{h}, not 32x32"


def _decode_all(items: list[tuple[str, bytes]]) -> np.ndarray:
    """Decode images into one uint8 array (N, 3, 32, 32); the first bad or wrongly sized image raises DataError.

    JPEGs go through torchvision's batched libjpeg-turbo decoder (about 5x PIL here, the same pixels); the rest, and
    any JPEG the batch decoder rejects, one by one.
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                            category=DeprecationWarning)  # still there in the pinned torchvision 0.29
    for where, blob in items:  # sizes from the headers first: a 12000x12000 PNG is never decoded
        problem = _header_problem(where, blob)
        if problem is not None:
            raise DataError(problem)
    out: list[torch.Tensor | str | None] = [None] * len(items)
    jpegs = [i for i, (_, blob) in enumerate(items) if blob[:3] == b"\xff\xd8\xff"]
    if jpegs:
        try:
            for i, img in zip(jpegs, decode_jpeg([_as_tensor(items[i][1]) for i in jpegs], mode=ImageReadMode.RGB),
                              strict=True):
                out[i] = img
        except (RuntimeError, ValueError):
            pass  # a damaged JPEG among them: decode one by one to name it
    for i, o in enumerate(out):
        if o is None:
            out[i] = _decode_one(*items[i])
    for (where, _), o in zip(items, out, strict=True):
        if isinstance(o, str):
            raise DataError(o)
        assert o is not None
        if tuple(o.shape[1:]) != (32, 32):
            raise DataError(f"{where} is {o.shape[2]}x{o.shape[1]}, not 32x32")
    return torch.stack(out).numpy() if out else np.zeros((0, 3, 32, 32), np.uint8)  # type: ignore[arg-type]


def _read_folders(files: _Files, prefix: str) -> dict[str, Any]:
    by_split: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    for name in files.names:
        m = _SPLIT_RE.match(name)
        if m is None or m.group("prefix") != prefix or m.group("file").startswith("."):
            continue
        if os.path.splitext(m.group("file"))[1].lower() not in IMAGE_EXTS:
            continue
        by_split[m.group("split")].setdefault(m.group("cls"), []).append(name)
    for split in ("train", "test"):
        if not by_split[split]:
            raise DataError(f"{files.where(prefix + split)} holds no images")
    train_cls, test_cls = sorted(by_split["train"]), sorted(by_split["test"])
    if train_cls != test_cls:
        only = sorted(set(train_cls) ^ set(test_cls))
        raise DataError(f"{files.path}: train/ and test/ name different classes ({', '.join(only)} in one only)")
    if len(train_cls) != 10:
        raise DataError(f"{files.where(prefix + 'train')} has {len(train_cls)} class folders; CIFAR-10 has 10")
    out: dict[str, Any] = {"classes": tuple(train_cls)}
    for split in ("train", "test"):
        items, labels = [], []
        for c, cls in enumerate(train_cls):
            names = sorted(by_split[split][cls])
            items += [(files.where(n), files.read(n)) for n in names]
            labels += [c] * len(names)
        out[f"x_{split}"] = _decode_all(items)
        out[f"y_{split}"] = np.asarray(labels, dtype=np.int64)
    return out


def _numpy_global(module: str, name: str) -> Any:
    """numpy's array and dtype rebuilders, under the module names of numpy 1 (`numpy.core`) and 2 (`numpy._core`)."""
    core = getattr(np, "_core", None) or np.core
    return {"multiarray._reconstruct": core.multiarray._reconstruct, "multiarray.scalar": core.multiarray.scalar,
            "numeric._frombuffer": getattr(core.numeric, "_frombuffer", None)}.get(f"{module.rsplit('.', 1)[1]}.{name}")


class _BatchesUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR-10's batches files hold: dicts, lists, bytes, ints and numpy arrays.

    A pickle can name any importable callable and have it run; these files need numpy's array rebuilders alone, so
    every other global is refused before anything is called (a crafted `batches.meta` cannot run code).
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
            return getattr(np, name)
        if module in ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric"):
            found = _numpy_global(module, name)
            if found is not None:
                return found
        if (module, name) == ("_codecs", "encode"):  # how protocol 2 writes Python 3 bytes
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR-10 batches file never holds")


def _unpickle(files: _Files, name: str) -> dict:
    try:
        d = _BatchesUnpickler(io.BytesIO(files.read(name)), encoding="bytes").load()
        if not isinstance(d, dict):
            raise ValueError("not a dict")
        return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    except (pickle.UnpicklingError, ValueError, EOFError, TypeError, AttributeError, IndexError) as e:
        raise DataError(f"{files.where(name)} is not a CIFAR-10 batches file ({_short(e)})") from None


def _read_batches(files: _Files, prefix: str) -> dict[str, Any]:
    meta = _unpickle(files, prefix + "batches.meta") if prefix + "batches.meta" in files.name_set else {}
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta.get("label_names", CIFAR10_CLASSES))
    if len(classes) != 10:
        raise DataError(f"{files.where(prefix + 'batches.meta')} names {len(classes)} classes; CIFAR-10 has 10")
    out: dict[str, Any] = {"classes": classes}
    for split, names in (("train", _BATCHES), ("test", ("test_batch",))):
        xs, ys = [], []
        for n in names:
            d = _unpickle(files, prefix + n)
            try:
                x = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                y = np.asarray(d["labels"], dtype=np.int64)
            except (KeyError, ValueError) as e:
                raise DataError(f"{files.where(prefix + n)} is not a CIFAR-10 batches file ({_short(e)})") from None
            if len(x) != len(y) or len(x) == 0 or y.min() < 0 or y.max() > 9:
                raise DataError(f"{files.where(prefix + n)} has {len(x)} images, {len(y)} labels in "
                                f"[{y.min() if len(y) else '-'}, {y.max() if len(y) else '-'}]; not CIFAR-10")
            xs.append(x)
            ys.append(y)
        out[f"x_{split}"], out[f"y_{split}"] = np.concatenate(xs), np.concatenate(ys)
        if len(np.unique(out[f"y_{split}"])) < 2:  # the class-folder layout needs 10 folders; this is its twin
            raise DataError(f"{files.where(prefix + names[0])}: every {split} label is one class "
                            f"({int(out[f'y_{split}'][0])}); CIFAR-10 has 10")
    return out


def _decode(path: Path) -> dict[str, Any]:
    files = _Files(path)
    kind, prefix = _layout(files)
    d = _read_batches(files, prefix) if kind == "batches" else _read_folders(files, prefix)
    if kind == "batches":
        d["source"] = f"torchvision batches {path}"
    else:
        suffixes = {os.path.splitext(n)[1].lower() for n in files.names}
        exts = sorted({e.lstrip(".").upper().replace("JPG", "JPEG") for e in suffixes & IMAGE_EXTS})
        d["source"] = f"class folders ({'/'.join(exts)}) {path}"
    d["digest"] = arrays_digest(d["x_train"], d["y_train"], d["x_test"], d["y_test"], d["classes"])
    d["stats"] = channel_stats(d["x_train"])
    return d


def arrays_digest(x_train: Any, y_train: Any, x_test: Any, y_test: Any, classes: Sequence[str]) -> str:
    """The dataset copy's digest: sha256 of the pixels and labels (as uint8 and int64 bytes) and the class names."""
    h = hashlib.sha256()
    for a, dtype in ((x_train, np.uint8), (y_train, np.int64), (x_test, np.uint8), (y_test, np.int64)):
        h.update(np.ascontiguousarray(np.asarray(a), dtype=dtype).tobytes())
    h.update("\0".join(classes).encode())
    return h.hexdigest()


def channel_stats(x: np.ndarray | torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images (N, C, H, W), in [0, 1] units, exact, from histograms."""
    x = np.asarray(x)
    v = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(x.shape[1]):
        h = np.bincount(np.ascontiguousarray(x[:, c]).ravel(), minlength=256).astype(np.float64)
        n = h.sum()
        m = float((h * v).sum() / n)
        means.append(m)
        stds.append(float(np.sqrt(max((h * v * v).sum() / n - m * m, 0.0))))
    return tuple(means), tuple(stds)


# --------------------------------------------------------------------------------------------------- cache


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive lock across processes (two suites decode a source once, not twice)."""
    import fcntl

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


_MEMO: dict[str, CifarArrays] = {}  # per process: a worker loads a source once for all its runs


def _arrays(d: dict[str, Any]) -> CifarArrays:
    t = {k: torch.as_tensor(d[k]) for k in ("x_train", "y_train", "x_test", "y_test")}
    return CifarArrays(**t, classes=tuple(d["classes"]), source=d["source"], digest=d["digest"],
                       stats=(tuple(d["stats"][0]), tuple(d["stats"][1])))


def load_cifar10(source: str | os.PathLike | None = None, *, cache: bool = True) -> CifarArrays:
    """CIFAR-10 from `source` (a folder, an archive, None for `$TRICKS_DATA` or the download), decoded once and cached.

    Raises DataError, with one sentence naming the path or file, for a missing path, an unknown layout, a number of
    classes other than 10, train and test classes that differ, an unreadable or non-32x32 image, or an empty split.
    """
    path = _resolve(source)
    return _load(path, _source_key(path), cache)


def dataset_digest(source: str | os.PathLike | None = None) -> str:
    """The digest of `source`'s decoded copy (`CifarArrays.digest`) without loading its 184 MB of tensors where the
    cache holds it: the digest recorded next to the cache entry of this source's content. Else the source is loaded
    (decoded and cached once, so that workers started next find it), as `load_cifar10` does."""
    path = _resolve(source)
    key = _source_key(path)
    if key in _MEMO:
        return _MEMO[key].digest
    recorded = _read_digest(_entry(key))
    return recorded if recorded is not None else _load(path, key, True).digest


def _entry(key: str) -> Path:
    return cache_dir() / f"cifar10-{key[:32]}.pt"


def _load(path: Path, key: str, cache: bool) -> CifarArrays:
    if key in _MEMO:
        return _MEMO[key]
    if not cache:
        return _arrays(_decode(path))
    entry = _entry(key)
    d = None
    try:
        with _locked(entry.with_suffix(".lock")):
            d = _read_cache(entry)
            if d is None:
                d = _decode(path)
                _write_cache(entry, d)
            if _read_digest(entry) != d["digest"]:
                _write_digest(entry, d)
    except OSError as e:
        if getattr(e, "errno", None) in _DISK_FULL:  # the next write (the run store's) would fail too: stop here
            raise DataError(f"the cache folder {entry.parent} is full: CIFAR-10's decoded copy could not be written "
                            f"({e.strerror or e}); free some space or set TRICKS_CACHE to another folder") from None
        if d is None:  # a read-only cache folder: decode without caching
            d = _decode(path)
    arrays = _arrays(d)
    _MEMO[key] = arrays
    return arrays


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _read_cache(entry: Path) -> dict[str, Any] | None:
    if not entry.exists():
        return None
    try:
        d = torch.load(entry, map_location="cpu", weights_only=True)  # tensors, strings and numbers: nothing to run
        if d.get("format") != CACHE_FORMAT or _cache_fault(d) is not None:
            return None
        return d
    except Exception:  # a damaged entry is decoded again and replaced
        return None


def _cache_fault(d: dict[str, Any]) -> str | None:
    """Why a cache entry's tensors are not the dataset its digest names (changed on disk, a bad label), or None.

    The digest is recomputed from the tensors (sha256, about 0.1 s for CIFAR-10's 184 MB): a run must never be
    stored under the digest of data it did not train on."""
    n_classes = len(d["classes"])
    for split in ("train", "test"):
        x, y = d[f"x_{split}"], d[f"y_{split}"]
        if x.dtype != torch.uint8 or x.dim() != 4 or tuple(x.shape[1:]) != (3, 32, 32) or y.dtype != torch.int64:
            return f"{split} tensors of the wrong type or shape"
        if len(x) != len(y) or len(y) == 0 or int(y.min()) < 0 or int(y.max()) >= n_classes:
            return f"{split} labels out of range"
    digest = arrays_digest(*(d[k].numpy() for k in ("x_train", "y_train", "x_test", "y_test")), d["classes"])
    return None if digest == d["digest"] else "tensors that do not match their digest"


def _write_cache(entry: Path, d: dict[str, Any]) -> None:
    """Write atomically: a temporary file renamed into place, removed if anything (Ctrl-C included) interrupts."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    payload = {**{k: torch.as_tensor(np.ascontiguousarray(d[k])) for k in ("x_train", "y_train", "x_test", "y_test")},
               "classes": list(d["classes"]), "source": d["source"], "digest": d["digest"],
               "stats": d["stats"], "format": CACHE_FORMAT}
    try:
        try:
            torch.save(payload, tmp)
        except RuntimeError as e:  # torch's zip writer reports a failed write as a RuntimeError: on a full disk,
            # "PytorchStreamWriter failed writing file data/0: file write failed"
            code = errno.ENOSPC if "write failed" in str(e) else errno.EIO
            raise OSError(code, f"{os.strerror(code)}: {_short(e)}") from None
        os.replace(tmp, entry)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _read_digest(entry: Path) -> str | None:
    """The digest recorded next to a cache entry (a small JSON file written after the entry itself), or None."""
    try:
        meta = json.loads(entry.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    if not entry.exists() or not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        return None
    digest = meta.get("digest")
    return digest if isinstance(digest, str) and len(digest) == 64 else None


def _write_digest(entry: Path, d: dict[str, Any]) -> None:
    """Record the entry's digest and source beside it, atomically, for `dataset_digest`."""
    write_atomic(entry.with_suffix(".json"),
                 json.dumps({"format": CACHE_FORMAT, "digest": d["digest"], "source": d["source"]}))
