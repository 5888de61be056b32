"""Synthetic IDX files and tiny configs for the tests."""
import gzip
import os

import numpy as np
import pytest

from config import get_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_DIR = os.path.join(ROOT, "data", "MNIST")


def write_idx(path, array, magic):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fake_mnist(folder, num_train=200, num_test=50, seed=0):
    """Four gzipped IDX files of random 28x28 digits, like MNIST's."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for split, n in (("train", num_train), ("t10k", num_test)):
        write_idx(os.path.join(folder, f"{split}-images-idx3-ubyte.gz"),
                  rng.integers(0, 256, size=(n, 28, 28)), 2051)
        write_idx(os.path.join(folder, f"{split}-labels-idx1-ubyte.gz"),
                  rng.integers(0, 10, size=n), 2049)
    return folder


def tiny_args(tmp_path, *extra):
    """main.py's options for a small, fast model writing everything under tmp_path, on one
    thread: a model this small gains nothing from two, and the suite runs two tests at once.
    The run is named as its model (ram_3_4x4_2 and the like), without the recipe's digest."""
    args = ["--num_threads", "1", "--num_glimpses", "3", "--patch_size", "4", "--num_patches", "2",
            "--glimpse_scale", "2", "--glimpse_hidden", "16", "--loc_hidden", "16",
            "--hidden_size", "32", "--batch_size", "32", "--M", "2", "--use_gpu=False", "--data_dir", MNIST_DIR,
            "--train_subset", "320", "--valid_size", "0.2", "--ckpt_dir", str(tmp_path / "ckpt"),
            "--logs_dir", str(tmp_path / "logs"), "--plot_dir", str(tmp_path / "plots"), *extra]
    if "--run_name" in extra:
        return args
    from config import fill_task_defaults, model_name, parser
    return args + ["--run_name", model_name(fill_task_defaults(parser.parse_args(args)))]


def tiny_config(tmp_path, *extra):
    """The config of tiny_args."""
    return get_config(tiny_args(tmp_path, *extra))


def refusal(tool_main, *argv):
    """The one-line message with which a tool's main (plot_glimpses.main, align.main)
    refuses argv."""
    with pytest.raises(SystemExit) as exit_info:
        tool_main(list(argv))
    message = str(exit_info.value.code)
    assert message.startswith("[!] ") and "\n" not in message
    return message


def write_image_folder(root, per_class=(30, 10), seed=0):
    """A tiny image folder of two classes, as --dataset folder reads it: RGB PNGs of
    several sizes, root/train/<class>/ and root/test/<class>/ with per_class images
    each; "bar" holds a horizontal bar, "dot" a square, at random places."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    for split, count in zip(("train", "test"), per_class):
        for name in ("bar", "dot"):
            os.makedirs(os.path.join(root, split, name), exist_ok=True)
            for i in range(count):
                side = int(rng.integers(20, 41))
                image = np.zeros((side, side, 3), np.uint8)
                top, left = rng.integers(0, side - 8, 2)
                colour = rng.integers(128, 256, 3)
                if name == "bar":
                    image[top:top + 2, 2:side - 2] = colour
                else:
                    image[top:top + 6, left:left + 6] = colour
                Image.fromarray(image).save(os.path.join(root, split, name, f"{i}.png"))
    return str(root)
