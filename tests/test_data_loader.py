"""Reading the IDX files, the split, the order of each epoch and refusing bad files."""
import gzip
import os

import numpy as np
import pytest

from data_loader import (CanvasDataset, Canvases, DataError, EpochShuffler, folder_classes, get_test_loader,
                         get_train_valid_loaders, load_canvases, load_mnist, make_canvases,
                         train_valid_split)
from tests.helpers import MNIST_DIR, write_fake_mnist, write_idx


def test_real_mnist_is_bundled_and_normalised():
    images, labels = load_mnist(MNIST_DIR, "test")
    assert images.shape == (10000, 1, 28, 28) and images.dtype == np.float32
    assert labels.shape == (10000,) and labels.dtype == np.int64 and set(labels) == set(range(10))
    pixels = images * 0.3081 + 0.1307
    assert pixels.min() == pytest.approx(0, abs=1e-6) and pixels.max() == pytest.approx(1, abs=1e-6)


def test_loaders_split_and_batch(tmp_path):
    folder = write_fake_mnist(tmp_path / "mnist", num_train=200, num_test=50)
    splits = get_train_valid_loaders(folder, 32, random_seed=1, valid_size=0.1)
    train, valid = splits.train, splits.valid
    assert (len(train.dataset), len(valid.dataset)) == (180, 20)
    x, y = next(iter(train))
    assert x.shape == [32, 1, 28, 28] and y.shape == [32] and str(y.dtype) == "paddle.int64"
    assert len(get_test_loader(folder, 16).dataset) == 50
    splits = get_train_valid_loaders(folder, 32, 1, 0.25, train_subset=100)
    assert (len(splits.train.dataset), len(splits.valid.dataset)) == (75, 25)


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


def digits_of(rng, n, side=28):
    return rng.integers(0, 256, size=(n, side, side)).astype(np.uint8)


def test_translated_canvas_is_the_digit_fully_inside_on_black():
    digits = digits_of(np.random.default_rng(0), 300)
    canvases, corners = make_canvases(digits, 60, 0, 8, np.random.default_rng(1))
    assert canvases.shape == (300, 60, 60) and canvases.dtype == np.uint8
    assert corners.min() == 0 and corners.max() == 60 - 28  # every place is drawn, none outside
    for canvas, digit, (row, col) in zip(canvases, digits, corners):
        np.testing.assert_array_equal(canvas[row:row + 28, col:col + 28], digit)
        canvas[row:row + 28, col:col + 28] = 0
        assert not canvas.any()


@pytest.mark.parametrize("size,num_distractors,distractor_size", [(60, 4, 8), (100, 8, 8),
                                                                  (40, 3, 5)])
def test_cluttered_canvas_holds_the_digit_and_each_distractor_once(size, num_distractors,
                                                                   distractor_size):
    # Digits of ones: the canvas's sum counts the digit's pixels and each distractor's.
    ones = np.ones((500, 28, 28), np.uint8)
    canvases, corners = make_canvases(ones, size, num_distractors, distractor_size,
                                      np.random.default_rng(2))
    assert (canvases.reshape(500, -1).sum(axis=1) == 784 + num_distractors * distractor_size ** 2).all()
    assert corners.min() >= 0 and corners.max() <= size - 28
    # The digit stays whole under the clutter.
    digits = digits_of(np.random.default_rng(3), 500)
    cluttered, corners = make_canvases(digits, size, num_distractors, distractor_size,
                                       np.random.default_rng(2))
    for canvas, digit, (row, col) in zip(cluttered, digits, corners):
        assert (canvas[row:row + 28, col:col + 28] >= digit).all()
    # Where pieces of 200 overlap, the sum clips at 255 rather than wrapping round.
    overlapped = make_canvases(np.full((500, 28, 28), 200, np.uint8), size, num_distractors,
                               distractor_size, np.random.default_rng(2))[0]
    assert set(np.unique(overlapped)) == {0, 200, 255}


def test_canvases_depend_only_on_the_seed():
    digits = digits_of(np.random.default_rng(0), 200)
    a, b, c = (make_canvases(digits, 60, 4, 8, np.random.default_rng(seed))[0] for seed in (7, 7, 8))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_bad_canvas_sizes_are_refused():
    digits = digits_of(np.random.default_rng(0), 4)
    with pytest.raises(DataError, match="--image_size 20 must hold a 28x28 digit"):
        make_canvases(digits, 20, 0, 8, np.random.default_rng(0))
    with pytest.raises(DataError, match="--distractor_size 30 must fit"):
        make_canvases(digits, 60, 4, 30, np.random.default_rng(0))


def test_test_canvases_are_the_same_in_every_run_and_cached(tmp_path):
    folder = write_fake_mnist(tmp_path / "mnist", num_train=120, num_test=40)
    canvases = Canvases(50, 3, 8, seed=5)
    first, labels, _ = load_canvases(folder, "test", canvases, tmp_path / "cache_a")
    [cache] = os.listdir(tmp_path / "cache_a")
    assert cache.startswith("cluttered50_d3x8_seed5_test_") and cache.endswith(".npy")
    again, _, _ = load_canvases(folder, "test", canvases, tmp_path / "cache_b")  # made afresh
    cached, _, _ = load_canvases(folder, "test", canvases, tmp_path / "cache_a")
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, cached)
    np.testing.assert_array_equal(labels, load_mnist(folder, "test")[1])
    loader = get_test_loader(folder, 16, canvases=canvases, cache_dir=tmp_path / "cache_a")
    x, y = next(iter(loader))
    assert x.shape == [16, 1, 50, 50] and float(x.min()) == 0 and float(x.max()) <= 1
    np.testing.assert_allclose(x.numpy()[:, 0], first[:16] / 255, rtol=1e-6)


def test_fresh_canvases_change_each_epoch_and_only_for_training(tmp_path):
    folder = write_fake_mnist(tmp_path / "mnist", num_train=100, num_test=10)
    loaders = [get_train_valid_loaders(folder, 25, 1, 0.2, canvases=Canvases(40, 2, 8, 0, fresh),
                                       cache_dir=tmp_path / "cache") for fresh in (False, True)]
    fixed_train, fixed_valid = loaders[0].train, loaders[0].valid
    fresh_train, fresh_valid = loaders[1].train, loaders[1].valid
    assert isinstance(fresh_train.dataset, CanvasDataset)
    fixed = fixed_train.dataset.images.copy()
    seen = []
    for epoch in (0, 1, 0):
        for splits in loaders:
            splits.set_epoch(epoch)
        seen.append(fresh_train.dataset.images.copy())
        np.testing.assert_array_equal(fixed_train.dataset.images, fixed)
    assert (seen[0] != seen[1]).any()
    np.testing.assert_array_equal(seen[0], seen[2])  # a resumed run draws the same canvases
    np.testing.assert_array_equal(fresh_valid.dataset.images, fixed_valid.dataset.images)


@pytest.mark.parametrize("num_samples,shards", [(10, 2), (11, 2), (7, 3), (5, 1)])
def test_epoch_shards_are_equal_and_cover_the_epoch_order(num_samples, shards):
    whole = EpochShuffler(num_samples, seed=4)
    whole.set_epoch(3)
    order = list(whole)
    parts = []
    for shard in range(shards):
        sampler = EpochShuffler(num_samples, seed=4, shard=shard, shards=shards)
        sampler.set_epoch(3)
        parts.append(list(sampler))
        assert len(parts[-1]) == len(sampler) == -(-num_samples // shards)
    # Interleaved back, the shards are the epoch's order, lengthened with its own start.
    interleaved = [index for step in zip(*parts) for index in step]
    assert interleaved[:num_samples] == order
    assert interleaved[num_samples:] == order[:len(interleaved) - num_samples]


def test_a_float_image_is_read_as_its_values_mean(tmp_path):
    """N12: a 32-bit float TIFF of values 0 to 1 was clipped to black."""
    from PIL import Image

    from data_loader import read_image

    digit = np.zeros((8, 8), np.float32)
    digit[2:6, 3:5] = 1.0
    Image.fromarray(digit, mode="F").save(tmp_path / "one.tif")
    Image.fromarray(digit * 255, mode="F").save(tmp_path / "two.tif")
    Image.fromarray(digit * 300, mode="F").save(tmp_path / "bad.tif")
    for name in ("one.tif", "two.tif"):
        assert read_image(str(tmp_path / name), 1, 8)[0].tolist() == (digit * 255).astype(np.uint8).tolist()
    with pytest.raises(DataError, match="not within 0 to 1 or 0 to 255"):
        read_image(str(tmp_path / "bad.tif"), 1, 8)


def test_a_link_between_class_or_split_folders_is_refused_not_counted_twice(tmp_path):
    """N11: a link from one class folder into another gave its files two labels."""
    from data_loader import Folder, load_folder
    from tests.helpers import write_image_folder

    root = write_image_folder(tmp_path / "shapes", per_class=(4, 2))
    folder = Folder(["bar", "dot"], 3, 16)
    assert len(load_folder(root, "train", folder)[1]) == 8
    os.symlink(os.path.join(root, "train", "dot"), os.path.join(root, "train", "bar", "also"))
    with pytest.raises(DataError, match="the same file .* is in classes bar and dot"):
        load_folder(root, "train", folder)
    os.remove(os.path.join(root, "train", "bar", "also"))
    os.symlink(os.path.join(root, "test", "dot"), os.path.join(root, "train", "dot", "more"))
    with pytest.raises(DataError, match="is in test/ too"):
        load_folder(root, "train", folder)


def test_a_class_folder_link_that_loops_is_refused_in_one_line(tmp_path):
    """N8: os.scandir's is_dir() raised ELOOP out of class_folders as a traceback."""
    (tmp_path / "train").mkdir()
    os.symlink("x", tmp_path / "train" / "x")
    with pytest.raises(DataError, match="Too many levels of symbolic links; a class folder"):
        folder_classes(str(tmp_path))
