"""tricks.cifar against faults: a cache entry whose tensors were changed on disk, images whose header claims a huge
size, archive members larger than any CIFAR-10 file, and a batches file whose labels are one class."""

from __future__ import annotations

import pickle
import tarfile
import warnings
from pathlib import Path

import pytest
import torch

import tricks.cifar as data
from tests.test_data import cache_entries, count_decodes, write_batches, write_class_folders
from tricks.cifar import DataError, load_cifar10

warnings.filterwarnings("ignore", category=UserWarning)
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_MEMO", {})
    monkeypatch.setenv("TRICKS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TRICKS_DATA", raising=False)


def _tamper(entry: Path, how: str) -> None:
    d = torch.load(entry, weights_only=True)
    if how == "pixels":
        d["x_train"][: len(d["x_train"]) // 2] = 7
    elif how == "labels":
        d["y_train"] = (d["y_train"] + 1) % 10
    elif how == "label out of range":
        d["y_test"][0] = 10
    torch.save(d, entry)


@pytest.mark.parametrize("how", ["pixels", "labels", "label out of range"])
def test_a_cache_entry_whose_tensors_changed_is_decoded_again_and_keeps_the_clean_digest(tmp_path, monkeypatch, how):
    write_batches(tmp_path / "src")
    clean = load_cifar10(tmp_path / "src")
    (entry,) = cache_entries()
    _tamper(entry, how)
    data._MEMO.clear()
    decodes = count_decodes(monkeypatch)
    again = load_cifar10(tmp_path / "src")
    assert len(decodes) == 1  # rebuilt from the source, not trusted
    assert again.digest == clean.digest
    assert torch.equal(again.x_train, clean.x_train) and torch.equal(again.y_train, clean.y_train)
    assert torch.equal(again.y_test, clean.y_test)
    data._MEMO.clear()
    decodes.clear()
    assert load_cifar10(tmp_path / "src").digest == clean.digest and not decodes  # the replaced entry is good


def test_flipped_bytes_inside_the_cache_file_are_detected(tmp_path, monkeypatch):
    write_batches(tmp_path / "src", per_batch=200)
    clean = load_cifar10(tmp_path / "src")
    (entry,) = cache_entries()
    raw = bytearray(entry.read_bytes())
    start = len(raw) // 3
    for i in range(start, start + 2000):
        raw[i] ^= 0xFF
    entry.write_bytes(bytes(raw))
    data._MEMO.clear()
    again = load_cifar10(tmp_path / "src")
    assert again.digest == clean.digest and torch.equal(again.x_train, clean.x_train)


def test_a_digest_is_always_that_of_the_arrays_served(tmp_path):
    write_batches(tmp_path / "src")
    a = load_cifar10(tmp_path / "src")
    assert a.digest == data.arrays_digest(a.x_train, a.y_train, a.x_test, a.y_test, a.classes)


# ------------------------------------------------------------------------------------------------ oversized images


def test_a_ppm_whose_header_claims_20000x20000_is_one_data_error(tmp_path):
    write_class_folders(tmp_path / "src")
    bomb = tmp_path / "src" / "train" / "cat" / "9999.ppm"
    bomb.write_bytes(b"P6\n20000 20000\n255\n" + b"\0" * 1000)
    with pytest.raises(DataError) as e:
        load_cifar10(tmp_path / "src")
    assert str(bomb) in str(e.value) and "not 32x32" in str(e.value) and "\n" not in str(e.value)


def test_an_oversized_png_is_refused_from_its_header_without_being_decoded(tmp_path, monkeypatch):
    from PIL import Image

    write_class_folders(tmp_path / "src")
    big = tmp_path / "src" / "train" / "dog" / "9999.png"
    Image.new("RGB", (2000, 1500)).save(big)
    decoded: list[str] = []
    real = data._decode_one
    monkeypatch.setattr(data, "_decode_one", lambda where, blob: decoded.append(where) or real(where, blob))
    with pytest.raises(DataError) as e:
        load_cifar10(tmp_path / "src")
    assert str(e.value) == f"{big} is 2000x1500, not 32x32"
    assert str(big) not in decoded  # refused from its header, never decoded


def test_an_archive_member_larger_than_any_cifar10_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    write_class_folders(tmp_path / "src")
    (tmp_path / "src" / "train" / "cat" / "huge.png").write_bytes(b"\0" * 5000)
    archive = tmp_path / "src.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / "src", arcname="src")
    monkeypatch.setattr(data, "MAX_MEMBER_BYTES", 4096)
    with pytest.raises(DataError) as e:
        load_cifar10(archive)
    assert "src/train/cat/huge.png" in str(e.value) and "5,000 bytes" in str(e.value)


def test_a_batches_source_whose_labels_are_all_one_class_is_refused(tmp_path):
    write_batches(tmp_path / "src")
    folder = tmp_path / "src" / "cifar-10-batches-py"
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"):
        d = pickle.loads((folder / name).read_bytes())
        d[b"labels"] = [3] * len(d[b"labels"])
        (folder / name).write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(DataError) as e:
        load_cifar10(tmp_path / "src")
    assert "one class" in str(e.value) and "\n" not in str(e.value)
