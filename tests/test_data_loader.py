"""Reading the IDX files, the split, the order of each epoch and refusing bad files."""
import gzip
import os

import numpy as np
import pytest

from data_loader import (DataError, EpochShuffler, get_test_loader, get_train_valid_loaders,
                         load_mnist, train_valid_split)
from tests.helpers import MNIST_DIR, write_fake_mnist, write_idx


def test_real_mnist_is_bundled_and_normalised():
    images, labels = load_mnist(MNIST_DIR, "test")
    assert images.shape == (10000, 1, 28, 28) and images.dtype == np.float32
    assert labels.shape == (10000,) and labels.dtype == np.int64 and set(labels) == set(range(10))
    pixels = images * 0.3081 + 0.1307
    assert pixels.min() == pytest.approx(0, abs=1e-6) and pixels.max() == pytest.approx(1, abs=1e-6)


def test_loaders_split_and_batch(tmp_path):
    folder = write_fake_mnist(tmp_path / "mnist", num_train=200, num_test=50)
    train, valid = get_train_valid_loaders(folder, 32, random_seed=1, valid_size=0.1)
    assert (len(train.dataset), len(valid.dataset)) == (180, 20)
    x, y = next(iter(train))
    assert x.shape == [32, 1, 28, 28] and y.shape == [32] and str(y.dtype) == "paddle.int64"
    assert len(get_test_loader(folder, 16).dataset) == 50
    train, valid = get_train_valid_loaders(folder, 32, 1, 0.25, train_subset=100)
    assert (len(train.dataset), len(valid.dataset)) == (75, 25)


def test_split_is_the_references_and_disjoint():
    train_idx, valid_idx = train_valid_split(100, 0.1, seed=1)
    indices = np.arange(100)
    np.random.seed(1)  # what the PyTorch reference does
    np.random.shuffle(indices)
    np.testing.assert_array_equal(valid_idx, indices[:10])
    assert sorted(np.concatenate([train_idx, valid_idx])) == list(range(100))


def test_epoch_order_depends_only_on_seed_and_epoch():
    a, b = EpochShuffler(50, seed=3), EpochShuffler(50, seed=3)
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b) and sorted(a) == list(range(50))
    b.set_epoch(5)
    assert list(a) != list(b)


def test_missing_file(tmp_path):
    folder = write_fake_mnist(tmp_path / "mnist")
    os.remove(folder / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: missing"):
        load_mnist(str(folder), "test")


def test_uncompressed_files_are_read_too(tmp_path):
    folder = write_fake_mnist(tmp_path / "mnist", num_test=7)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(folder / (name + ".gz")) as f, open(folder / name, "wb") as out:
            out.write(f.read())
        os.remove(folder / (name + ".gz"))
    assert len(load_mnist(str(folder), "test")[1]) == 7


@pytest.mark.parametrize("damage,message", [
    ("truncate", "truncated or padded"),
    ("magic", "expected magic number 2051"),
    ("not_gzip", "unreadable"),
    ("count", "holds 50 images but .* holds 49 labels"),
])
def test_malformed_files_are_refused_and_left_alone(tmp_path, damage, message):
    folder = write_fake_mnist(tmp_path / "mnist", num_test=50)
    images = folder / "t10k-images-idx3-ubyte.gz"
    if damage == "truncate":
        with gzip.open(images) as f:
            raw = f.read()
        with gzip.open(images, "wb") as f:
            f.write(raw[:-100])
    elif damage == "magic":
        write_idx(images, np.zeros((50, 28, 28)), 2049)
    elif damage == "not_gzip":
        images.write_bytes(b"<html>not found</html>")
    else:
        write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(49), 2049)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(DataError, match=message) as err:
        load_mnist(str(folder), "test")
    assert "\n" not in str(err.value)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_split_without_validation_images_is_refused(tmp_path):
    folder = write_fake_mnist(tmp_path / "mnist")
    with pytest.raises(DataError, match="training needs both"):
        get_train_valid_loaders(folder, 32, 1, valid_size=0.0)
