"""MNIST from the four IDX files, as 28x28 digits or on the paper's larger canvases
(translated, cluttered), or your own images from a folder, split into train / valid /
test loaders."""
import gzip
import hashlib
import os
import time
from typing import NamedTuple

import numpy as np
import paddle
from PIL import Image

from catch import FixedGames, TrainingGames
from utils import remove_orphans

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DataError(Exception):
    """A data file is missing or malformed; the message is one line for the user."""


def _read_idx(data_dir, name, magic):
    """The array stored in an IDX file (gzipped or not) and its header's dims."""
    for path in (os.path.join(data_dir, name + ".gz"), os.path.join(data_dir, name)):
        if os.path.isfile(path):
            break
    else:
        raise DataError(f"{os.path.join(data_dir, name + '.gz')}: missing. Copy the four MNIST "
                        f"IDX files into {data_dir} (see README, 'Data') or pass --data_dir.")
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: unreadable ({err}). Replace it with the original file.") from None
    ndim = magic - 2048
    header = 4 + 4 * ndim
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        raise DataError(f"{path}: not an IDX file of this kind (expected magic number {magic}). "
                        f"Replace it with the original file.")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if len(raw) != header + int(np.prod(dims)):
        raise DataError(f"{path}: truncated or padded ({len(raw) - header} data bytes, header says "
                        f"{int(np.prod(dims))}). Replace it with the original file.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims), path


def read_digits(data_dir, split):
    """The raw digits and labels of one split ("train" or "test"): uint8 (N, 28, 28)
    and int64 (N,)."""
    image_name, label_name = FILES[split]
    images, image_path = _read_idx(data_dir, image_name, IMAGE_MAGIC)
    labels, label_path = _read_idx(data_dir, label_name, LABEL_MAGIC)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{image_path} holds {'x'.join(map(str, images.shape[1:]))} images; "
                        f"MNIST's are 28x28. Replace it with the original file.")
    if len(images) == 0:
        raise DataError(f"{image_path} holds no images. Replace it with the original file.")
    if len(images) != len(labels):
        raise DataError(f"{image_path} holds {len(images)} images but {label_path} holds "
                        f"{len(labels)} labels. Replace them with the original files.")
    if labels.max() > 9:
        raise DataError(f"{label_path} holds label {labels.max()}; MNIST's are 0 to 9. "
                        f"Replace it with the original file.")
    return images, labels.astype(np.int64)


def prepare(images, dataset):
    """What the model is given for uint8 images (N, C, H, W): pixel / 255, then, for
    28x28 MNIST alone, standardised ((x - 0.1307) / 0.3081). Canvases and image
    folders are not: the retina pads with zeros, which must be their background.
    Training, testing and infer.py all prepare images here. Returns float32."""
    images = images.astype(np.float32) / 255.0
    return (images - MNIST_MEAN) / MNIST_STD if dataset == "mnist" else images


def load_mnist(data_dir, split):
    """Normalised images and labels of one split ("train" or "test").

    Returns:
        images: float32 array (N, 1, 28, 28), prepared (standardised).
        labels: int64 array (N,).
    """
    images, labels = read_digits(data_dir, split)
    return prepare(images[:, None], "mnist"), labels


IMAGE_EXTENSIONS = paddle.vision.datasets.folder.IMG_EXTENSIONS


def read_image(path, channels, size):
    """An image file (PNG, JPEG, ...) as uint8 (channels, size, size): converted to
    gray (channels 1) or RGB (3), and resized bilinearly if it is not size x size.
    A 16-bit image is scaled to 8 bits (65535 to 255), not clipped, a float one from 0 to 1
    (or 0 to 255) to 0 to 255, any other refused; an image with transparent pixels is
    refused, since they have no gray or colour to read."""
    try:
        with Image.open(path) as image:
            if image.mode.startswith("I"):  # 16- or 32-bit integer gray
                wide = np.asarray(image, np.float64) / (257 if image.mode.startswith("I;16")
                                                        else max(1, np.asarray(image).max() / 255))
                image = Image.fromarray(np.clip(np.rint(wide), 0, 255).astype(np.uint8))
            if image.mode == "F":  # 32-bit float gray: 0 to 1, or 0 to 255
                values = np.asarray(image, np.float64)
                if not (np.isfinite(values).all() and 0 <= values.min() and values.max() <= 255):
                    raise DataError(f"{path}: a float image whose values are not within 0 to 1 "
                                    f"or 0 to 255; save it as 8-bit")
                scale = 255 if values.max() <= 1 else 1
                image = Image.fromarray(np.rint(values * scale).astype(np.uint8))
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                alpha = np.asarray(image.convert("RGBA"))[..., 3]
                if alpha.min() < 255:
                    raise DataError(f"{path}: has transparent pixels, which hold no gray or "
                                    f"colour to read; flatten it onto the background you mean "
                                    f"first (e.g. white: PIL's Image.alpha_composite)")
            image = image.convert("L" if channels == 1 else "RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.BILINEAR)
            pixels = np.asarray(image, np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as err:  # missing, not an image,
        # truncated, or more pixels than PIL will decode
        raise DataError(f"{path}: not a readable image ({type(err).__name__}: {err})") from None
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def resize_images(images, size):
    """uint8 images (N, C, H, W) resized bilinearly to (N, C, size, size), each channel
    as read_image resizes an image file (unchanged if already that size)."""
    if images.shape[2:] == (size, size):
        return images
    return np.stack([[np.asarray(Image.fromarray(channel).resize((size, size), Image.BILINEAR))
                      for channel in image] for image in images])


def folder_classes(data_dir):
    """The class names of an image folder: the sub-folders of data_dir/train, sorted
    (their order is that of the model's outputs)."""
    root = os.path.join(data_dir, "train")
    if not os.path.isdir(root):
        raise DataError(f"{root}: missing. --dataset folder reads <data_dir>/train/<class>/<image> "
                        f"(see README, 'Your own images')")
    classes = class_folders(root)
    if len(classes) < 2:
        raise DataError(f"{root} holds {len(classes)} class folder(s): a classifier needs at "
                        f"least 2, as {root}/<class>/<image>")
    return classes


def class_folders(root):
    """The sorted names of root's sub-folders that are classes: not hidden ones, such as
    .ipynb_checkpoints or .git. A link that loops (x -> x) is refused: DataError."""
    classes = []
    for entry in os.scandir(root):
        try:
            if entry.is_dir() and not entry.name.startswith("."):
                classes.append(entry.name)
        except OSError as err:  # is_dir() follows links: ELOOP
            raise DataError(f"{entry.path}: {err.strerror}; a class folder must be a folder or "
                            f"a link to one") from None
    return sorted(classes)


def image_files(folder):
    """The image files below folder, sorted: links followed, but each folder and file once
    (a link that loops back is not walked again), hidden ones skipped."""
    seen_folders, seen_files, files = set(), set(), []
    for parent, subfolders, names in os.walk(folder, followlinks=True):
        seen_folders.add(os.path.realpath(parent))
        subfolders[:] = sorted(name for name in subfolders if not name.startswith(".")
                               and os.path.realpath(os.path.join(parent, name)) not in seen_folders)
        for name in names:
            path = os.path.join(parent, name)
            if (not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)
                    and os.path.realpath(path) not in seen_files and os.path.isfile(path)):
                seen_files.add(os.path.realpath(path))
                files.append(path)
    return sorted(files)


class Folder(NamedTuple):
    """Your own images: data_dir/<split>/<class>/<image>, read as `channels` channels
    and resized to image_size x image_size (see read_image)."""
    classes: list
    channels: int
    image_size: int


def load_folder(data_dir, split, folder):
    """The images of one split ("train" or "test") of an image folder, through
    paddle.vision.datasets.DatasetFolder: uint8 (N, C, S, S) and int64 labels (N,),
    class i being folder.classes[i]."""
    root = os.path.join(data_dir, split)
    if not os.path.isdir(root):
        raise DataError(f"{root}: missing. Testing on an image folder reads "
                        f"{root}/<class>/<image>, with the class folders of its train/")
    found = class_folders(root)
    if found != list(folder.classes):
        raise DataError(f"{root} holds the classes {found}, but the model's are "
                        f"{list(folder.classes)}")
    # Not paddle.vision's DatasetFolder: it walks a link that loops back again and again
    # (a class counted ~40 times) and takes hidden folders for classes.
    samples = [(path, label) for label, name in enumerate(folder.classes)
               for path in image_files(os.path.join(root, name))]
    # A link from one class folder into another (or out of the split) would give a file
    # two labels, on both sides of the split: refused, not counted twice.
    other = "test" if split == "train" else "train"
    outside = {os.path.realpath(path) for name in class_folders(os.path.join(data_dir, other))
               for path in image_files(os.path.join(data_dir, other, name))} \
        if os.path.isdir(os.path.join(data_dir, other)) else set()
    owner = {}
    for path, label in samples:
        real = os.path.realpath(path)
        if owner.setdefault(real, label) != label or real in outside:
            where = (f"{other}/ too" if real in outside
                     else f"classes {folder.classes[owner[real]]} and {folder.classes[label]}")
            raise DataError(f"{path}: the same file ({real}) is in {where}: a link between "
                            f"class or split folders; give each image one place")
    if not samples:
        raise DataError(f"{root} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    images = np.stack([read_image(path, folder.channels, folder.image_size) for path, _ in samples])
    labels = np.array([label for _, label in samples], np.int64)
    return images, labels


SPLIT_STREAMS = {"train": 0, "test": 1, "fresh": 2}  # independent random streams per purpose


class Canvases(NamedTuple):
    """The paper's larger tasks, as DeepMind's mnist-cluttered generator makes them:
    each digit at a uniform random place on a blank image_size x image_size canvas,
    fully inside it, plus num_distractors squares of distractor_size pixels cut at
    random places from random digits of the same file and pasted at random places;
    pixels summed and clipped to 1. translated is cluttered with no distractors."""
    image_size: int
    num_distractors: int
    distractor_size: int
    seed: int           # makes the canvases of a file the same in every run
    fresh: bool = False  # new training canvases every epoch (validation and test stay fixed)

    def name(self, split):
        kind = f"cluttered{self.image_size}_d{self.num_distractors}x{self.distractor_size}" \
            if self.num_distractors else f"translated{self.image_size}"
        return f"{kind}_seed{self.seed}_{split}"


def fingerprint(digits):
    """A short digest of the digits canvases are made from: a cache made from other
    files (another --data_dir) has another name."""
    return hashlib.sha1(np.ascontiguousarray(digits).tobytes()).hexdigest()[:12]


def make_canvases(digits, image_size, num_distractors, distractor_size, rng):
    """Translated or cluttered canvases from digits, every canvas at once.

    Args:
        digits: uint8 array (N, side, side). rng: a numpy Generator, the only source of chance.
    Returns:
        canvases: uint8 array (N, image_size, image_size).
        corners: int array (N, 2), the row and column of each digit's top-left pixel.
    """
    n, side = digits.shape[:2]
    if image_size < side or not 0 < distractor_size <= side:
        raise DataError(f"--image_size {image_size} must hold a {side}x{side} digit, and "
                        f"--distractor_size {distractor_size} must fit inside one")
    canvases = np.zeros((n, image_size, image_size), np.uint8)
    every = np.arange(n)[:, None, None]

    def square(top, left, size):  # (rows, cols) index arrays of a size x size square per canvas
        return (top[:, None, None] + np.arange(size)[None, :, None],
                left[:, None, None] + np.arange(size)[None, None, :])

    def paste(sprites, top, left):  # clipping after each paste clips the sum: all are >= 0
        where = (every,) + square(top, left, sprites.shape[1])
        canvases[where] = np.minimum(canvases[where] + sprites.astype(np.uint16), 255)

    for _ in range(num_distractors):
        source = rng.integers(0, n, n)
        crop = square(rng.integers(0, side - distractor_size + 1, n),
                      rng.integers(0, side - distractor_size + 1, n), distractor_size)
        paste(digits[(source[:, None, None],) + crop],
              *rng.integers(0, image_size - distractor_size + 1, (2, n)))
    corners = rng.integers(0, image_size - side + 1, (n, 2))
    paste(digits, corners[:, 0], corners[:, 1])
    return canvases, corners


def load_canvases(data_dir, split, canvases, cache_dir):
    """The canvases of one MNIST file, from cache_dir or made and cached there.

    Returns: uint8 (N, S, S) canvases, int64 (N,) labels, the file's uint8 (N, 28, 28) digits.
    """
    digits, labels = read_digits(data_dir, split)
    cache_dir = os.path.expanduser(cache_dir)  # the default is in the user's home
    path = os.path.join(cache_dir, f"{canvases.name(split)}_{fingerprint(digits)}.npy")
    if os.path.isdir(cache_dir):
        remove_orphans(os.path.join(cache_dir, "*.npy.tmp*.npy"))
    if os.path.isfile(path):
        try:
            images = np.load(path, allow_pickle=False)
            if images.shape == (len(digits), canvases.image_size, canvases.image_size) \
                    and images.dtype == np.uint8:
                return images, labels, digits
            problem = f"holds {images.dtype} {images.shape}"
        except (OSError, ValueError, EOFError) as err:  # truncated, garbage
            problem = f"is unreadable ({type(err).__name__})"
        print(f"[!] the canvas cache {path} {problem}: making it anew")
    start = time.time()
    rng = np.random.default_rng([canvases.seed, SPLIT_STREAMS[split]])
    images, _ = make_canvases(digits, canvases.image_size, canvases.num_distractors,
                              canvases.distractor_size, rng)
    seconds = time.time() - start
    tmp = f"{path}.tmp{os.getpid()}.npy"
    try:
        os.makedirs(cache_dir, exist_ok=True)
        np.save(tmp, images)
        os.replace(tmp, path)  # a run killed mid-write leaves no half cache
    except OSError as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise DataError(f"cannot write the canvas cache {path} ({err.strerror}): free some "
                        f"space or choose another --cache_dir") from None
    print(f"[*] Made {len(images)} {canvases.name(split)} canvases in {seconds:.1f} s, "
          f"cached in {path}")
    return images, labels, digits


class CanvasDataset(paddle.io.Dataset):
    """Canvases held as uint8. Item i: ((1, S, S) float32 in [0, 1], int64 label).

    Unlike 28x28 MNIST they are not standardised: the retina pads with zeros, which
    must be the canvas's own background. With canvases.fresh, set_epoch(e) draws
    new canvases of the same digits from (seed, e), so a resumed run sees the same."""

    def __init__(self, images, labels, digits=None, canvases=None):
        self.images, self.labels, self.digits, self.canvases = images, labels, digits, canvases

    def set_epoch(self, epoch):
        if self.canvases is not None and self.canvases.fresh:
            c = self.canvases
            rng = np.random.default_rng([c.seed, SPLIT_STREAMS["fresh"], epoch])
            self.images = make_canvases(self.digits, c.image_size, c.num_distractors,
                                        c.distractor_size, rng)[0]

    def __getitem__(self, index):
        return prepare(self.images[index][None], "canvas"), self.labels[index]

    def __len__(self):
        return len(self.labels)


class ArrayDataset(paddle.io.Dataset):
    """Images and labels held in memory. Item i: ((C, H, W) float32, int64 label)."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __getitem__(self, index):
        return self.images[index], self.labels[index]

    def __len__(self):
        return len(self.labels)


class EpochShuffler(paddle.io.Sampler):
    """A permutation that depends only on (seed, epoch), so a resumed run draws
    the same order for its next epoch as an uninterrupted one. Call set_epoch first.

    In a data-parallel run of `shards` processes, process `shard` takes every
    shards-th image of that order, from its shard-th: the permutation is first
    lengthened with its own start to a multiple of shards, so that every process
    makes the same number of steps of the same batch sizes."""

    def __init__(self, num_samples, seed, shard=0, shards=1):
        self.num_samples, self.seed, self.epoch = num_samples, seed, 0
        self.shard, self.shards = shard, shards

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.num_samples)
        order = np.concatenate([order, order[:len(self) * self.shards - self.num_samples]])
        return iter(order[self.shard::self.shards].tolist())

    def __len__(self):
        return -(-self.num_samples // self.shards)


class Shard(paddle.io.Sampler):
    """Every shards-th image from the shard-th, in order: one process's part of the
    validation or test images in a data-parallel run (evaluate sums over them)."""

    def __init__(self, num_samples, shard, shards):
        self.indices = range(shard, num_samples, shards)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


def train_valid_split(num_images, valid_size, seed):
    """Indices of the training and validation images, split as the PyTorch
    reference does (one shuffle with a legacy NumPy seed, validation first)."""
    indices = np.arange(num_images)
    np.random.RandomState(seed).shuffle(indices)
    split = int(np.floor(valid_size * num_images))
    return indices[split:], indices[:split]


def _loader(dataset, batch_size, num_workers, sampler=None):
    """Batches of dataset, in the sampler's order; in a data-parallel run, without a
    sampler, this process's Shard of them."""
    shards = paddle.distributed.get_world_size()
    if sampler is None and shards > 1:
        sampler = Shard(len(dataset), paddle.distributed.get_rank(), shards)
    batches = paddle.io.BatchSampler(dataset=None if sampler else dataset, sampler=sampler,
                                     batch_size=batch_size, shuffle=False, drop_last=False)
    return paddle.io.DataLoader(dataset, batch_sampler=batches, num_workers=num_workers)


def data_digest(images, labels):
    """A short digest of the images and labels a run's split is made of."""
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels).tobytes())
    return f"{len(labels)} images, sha256 {digest.hexdigest()[:16]}"


def get_train_valid_loaders(data_dir, batch_size, random_seed, valid_size=0.1, shuffle=True,
                            num_workers=0, train_subset=0, canvases=None, cache_dir=None,
                            folder=None):
    """Splits of the training file: the first `train_subset` images (0 = all), of which
    `valid_size` go to validation. With shuffle, the training order is an EpochShuffler's.
    With canvases, the digits are placed on them (see Canvases), cached in cache_dir. With
    folder, the images of data_dir/train instead (see Folder)."""
    if folder:
        images, labels = load_folder(data_dir, "train", folder)
        images = prepare(images, "folder")
    elif canvases:
        images, labels, digits = load_canvases(data_dir, "train", canvases, cache_dir)
    else:
        images, labels = load_mnist(data_dir, "train")
    if train_subset:
        images, labels = images[:train_subset], labels[:train_subset]
    # What the split is made of (the digits, for canvases made from them): a run resumed
    # on other data would train on images it had validated on (see checkpoint.fit).
    source = digits[:len(labels)] if canvases else images
    train_idx, valid_idx = train_valid_split(len(labels), valid_size, random_seed)
    if len(valid_idx) == 0 or len(train_idx) == 0:
        raise DataError(f"--valid_size {valid_size} of {len(labels)} images leaves "
                        f"{len(train_idx)} for training and {len(valid_idx)} for validation; "
                        f"training needs both")
    drawn_per_epoch = []
    if canvases:
        train = CanvasDataset(images[train_idx], labels[train_idx], digits[train_idx], canvases)
        valid = CanvasDataset(images[valid_idx], labels[valid_idx])
        drawn_per_epoch.append(train)
    else:
        train = ArrayDataset(images[train_idx], labels[train_idx])
        valid = ArrayDataset(images[valid_idx], labels[valid_idx])
    sampler = None
    if shuffle:
        sampler = EpochShuffler(len(train), random_seed, paddle.distributed.get_rank(),
                                paddle.distributed.get_world_size())
        drawn_per_epoch.append(sampler)
    return Splits(_loader(train, batch_size, num_workers, sampler),
                  _loader(valid, batch_size, num_workers), digest=data_digest(source, labels),
                  drawn_per_epoch=drawn_per_epoch)


def get_test_loader(data_dir, batch_size, num_workers=0, canvases=None, cache_dir=None,
                    folder=None):
    """Loader over the 10,000 test images, in file order; on canvases, if given; or
    over an image folder's data_dir/test."""
    if folder:
        images, labels = load_folder(data_dir, "test", folder)
        dataset = ArrayDataset(prepare(images, "folder"), labels)
    elif canvases:
        dataset = CanvasDataset(*load_canvases(data_dir, "test", canvases, cache_dir)[:2])
    else:
        dataset = ArrayDataset(*load_mnist(data_dir, "test"))
    return _loader(dataset, batch_size, num_workers)


class Splits:
    """A run's data: training, validation and test loaders (those it needs: testing only a
    test loader; training a test loader only with --test_freq), what the training split
    is made of (digest: a resumed run must train on the same) and what it draws anew
    each epoch (its order, fresh canvases or games)."""

    def __init__(self, train=None, valid=None, test=None, digest=None, drawn_per_epoch=()):
        self.train, self.valid, self.test, self.digest = train, valid, test, digest
        self.drawn_per_epoch = drawn_per_epoch

    def set_epoch(self, epoch):
        """Draw the training split of epoch (0-based) from the seed and epoch alone, so
        that a resumed run trains on what an uninterrupted one would."""
        for part in self.drawn_per_epoch:
            part.set_epoch(epoch)

    def samples_per_epoch(self):
        """What an epoch trains on: its images, or the frames of its games."""
        return getattr(self.train, "frames", None) or len(self.train.dataset)


def load_splits(config):
    """The Splits that main.py's options `config` ask for: to train or to test."""
    if config.dataset == "catch":  # games to play instead of images
        test = FixedGames(config.test_games, config.batch_size, config.dataset_seed, split=2)
        if not config.is_train:
            return Splits(test=test)
        games = TrainingGames(config.batch_size, config.epoch_frames, config.random_seed,
                              config.train_paths)
        return Splits(games, FixedGames(config.valid_games, config.batch_size, config.dataset_seed,
                                        split=1), test if config.test_freq else None,
                      drawn_per_epoch=[games])
    canvases = folder = None
    if config.dataset == "folder":
        folder = Folder(config.classes, config.channels, config.image_size)
    elif config.dataset != "mnist":
        canvases = Canvases(config.image_size, config.num_distractors, config.distractor_size,
                            config.dataset_seed, config.fresh_canvases)
    data = dict(canvases=canvases, cache_dir=config.cache_dir, folder=folder)
    test = None
    if not config.is_train or config.test_freq:
        test = get_test_loader(config.data_dir, config.batch_size, config.num_workers, **data)
    if not config.is_train:
        return Splits(test=test)
    splits = get_train_valid_loaders(config.data_dir, config.batch_size, config.random_seed,
                                     config.valid_size, config.shuffle, config.num_workers,
                                     config.train_subset, **data)
    splits.test = test
    return splits
