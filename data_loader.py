"""MNIST from the four IDX files, normalised and split into train / valid / test loaders."""
import gzip
import os

import numpy as np
import paddle

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


def load_mnist(data_dir, split):
    """Normalised images and labels of one split ("train" or "test").

    Returns:
        images: float32 array (N, 1, 28, 28), (pixel / 255 - 0.1307) / 0.3081.
        labels: int64 array (N,).
    """
    image_name, label_name = FILES[split]
    images, image_path = _read_idx(data_dir, image_name, IMAGE_MAGIC)
    labels, label_path = _read_idx(data_dir, label_name, LABEL_MAGIC)
    if len(images) != len(labels):
        raise DataError(f"{image_path} holds {len(images)} images but {label_path} holds "
                        f"{len(labels)} labels. Replace them with the original files.")
    images = (images.astype(np.float32) / 255.0 - MNIST_MEAN) / MNIST_STD
    return images[:, None], labels.astype(np.int64)


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
    the same order for its next epoch as an uninterrupted one. Call set_epoch first."""

    def __init__(self, num_samples, seed):
        self.num_samples, self.seed, self.epoch = num_samples, seed, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        return iter(rng.permutation(self.num_samples).tolist())

    def __len__(self):
        return self.num_samples


def train_valid_split(num_images, valid_size, seed):
    """Indices of the training and validation images, split as the PyTorch
    reference does (one shuffle with a legacy NumPy seed, validation first)."""
    indices = np.arange(num_images)
    np.random.RandomState(seed).shuffle(indices)
    split = int(np.floor(valid_size * num_images))
    return indices[split:], indices[:split]


def _loader(dataset, batch_size, num_workers, sampler=None):
    batches = paddle.io.BatchSampler(dataset=None if sampler else dataset, sampler=sampler,
                                     batch_size=batch_size, shuffle=False, drop_last=False)
    return paddle.io.DataLoader(dataset, batch_sampler=batches, num_workers=num_workers)


def get_train_valid_loaders(data_dir, batch_size, random_seed, valid_size=0.1, shuffle=True,
                            num_workers=0, train_subset=0):
    """Loaders over the training file: the first `train_subset` images (0 = all),
    of which `valid_size` go to validation. With shuffle, the training loader's
    sampler is an EpochShuffler (set its epoch before each epoch)."""
    images, labels = load_mnist(data_dir, "train")
    if train_subset:
        images, labels = images[:train_subset], labels[:train_subset]
    train_idx, valid_idx = train_valid_split(len(labels), valid_size, random_seed)
    if len(valid_idx) == 0 or len(train_idx) == 0:
        raise DataError(f"--valid_size {valid_size} of {len(labels)} images leaves "
                        f"{len(train_idx)} for training and {len(valid_idx)} for validation; "
                        f"training needs both")
    train = ArrayDataset(images[train_idx], labels[train_idx])
    valid = ArrayDataset(images[valid_idx], labels[valid_idx])
    sampler = EpochShuffler(len(train), random_seed) if shuffle else None
    return (_loader(train, batch_size, num_workers, sampler),
            _loader(valid, batch_size, num_workers))


def get_test_loader(data_dir, batch_size, num_workers=0):
    """Loader over the 10,000 test images, in file order."""
    return _loader(ArrayDataset(*load_mnist(data_dir, "test")), batch_size, num_workers)
