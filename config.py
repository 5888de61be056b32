"""Every option of main.py, with the PyTorch reference's names and defaults."""
import argparse
import math
import os
import sys

import paddle

from data_loader import DataError, folder_classes
from utils import check_pickle

ROOT = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(ROOT, "results")  # published results: no run writes there

# Options that change the network's shapes or what it computes: a checkpoint
# made with other values cannot be loaded under these.
MODEL_OPTIONS = ["model", "fc_hidden", "random_glimpses", "patch_size", "glimpse_scale",
                 "num_patches", "channels", "loc_hidden", "glimpse_hidden", "core", "num_glimpses",
                 "hidden_size", "std"]
# The task a model was trained on: testing or resuming it on another is refused too.
# classes is no option: the names of the classes, in the order of the model's outputs
# (MNIST's digits, or an image folder's class folders; see get_config).
DATA_OPTIONS = ["dataset", "image_size", "num_distractors", "distractor_size", "dataset_seed",
                "classes"]
DIGITS = [str(digit) for digit in range(10)]
# The largest value of each option that this project's machine (2 cores, 24 GiB) can
# run; past these a run ends in a MemoryError or an overflow rather than a result.
LIMITS = {"patch_size": 64, "num_patches": 8, "glimpse_scale": 8, "loc_hidden": 4096,
          "glimpse_hidden": 4096, "hidden_size": 8192, "num_glimpses": 64, "M": 100,
          "batch_size": 4096, "epochs": 100_000, "num_distractors": 64, "num_workers": 64,
          "num_threads": 1024, "channels": 4, "fc_hidden": 65536, "train_paths": 100}
MAX_PATCH = 1024  # pixels on a side of the widest patch, g * s^(k - 1)
MAX_EVAL_BATCH = 16384  # images in one evaluation batch, M * batch_size
MAX_CANVAS = 200  # pixels on a side: 70,000 canvases of 200x200 take 2.8 GB
MAX_SEED = 2**32 - 1  # NumPy's seeds

# What checkpoints made before an option existed were made with.
OPTION_DEFAULTS = {"dataset": "mnist", "image_size": 28, "num_distractors": 0, "distractor_size": 8,
                   "dataset_seed": 0, "lr_schedule": "plateau", "channels": 1, "classes": DIGITS,
                   "model": "ram", "fc_hidden": 64, "random_glimpses": False, "core": "rnn",
                   "train_paths": 1, "clip_grad_norm": 0.0}


def str2bool(value):
    if isinstance(value, bool):
        return value
    if value.lower() in ("true", "t", "yes", "y", "1"):
        return True
    if value.lower() in ("false", "f", "no", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got '{value}'")


class OneLineParser(argparse.ArgumentParser):
    """Refuses bad options with one line instead of the full usage text, and
    abbreviated ones (`--num_glimpse 4`) as unknown."""

    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, **{"formatter_class": HelpFormatter, **kwargs})

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(2)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help, unless it has none (its help says what
    stands in for it); the epilog as written."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


EXAMPLES = """examples:
  python main.py --lr_schedule cosine --init_lr 1e-3 --epochs 100 --std 0.1   # the tuned recipe
  python main.py --resume=True --best=False          # continue the last checkpoint of that run
  python main.py --is_train=False                    # test ckpt/<model_name>_model_best.pdparams
  python main.py --is_train=False --checkpoint results/mnist/ram_6_8x8_1/model.pdparams
  python main.py --dataset cluttered --image_size 60 --num_distractors 4 --patch_size 12 \\
      --num_patches 3 --glimpse_scale 2 --num_glimpses 8 --std 0.1 --fresh_canvases

docs/options.md explains the options; README.md has the quick start."""

parser = OneLineParser(description="Recurrent Attention Model (Mnih et al., 2014) in PaddlePaddle.",
                       epilog=EXAMPLES)


def add(group, name, type, default, help):
    if type is str2bool:  # `--resume` alone means True; `--resume=False` and `--resume False` work too
        group.add_argument(name, type=str2bool, default=default, nargs="?", const=True,
                           metavar="BOOL", help=help)
    else:
        group.add_argument(name, type=type, default=default, help=help)


models = parser.add_argument_group("model")
models.add_argument("--model", choices=["ram", "fc", "conv"], default="ram",
                    help="ram: the Recurrent Attention Model; the paper's baselines, which see "
                         "the whole image: fc, two rectifier layers of --fc_hidden units; conv, "
                         "8 filters of 10x10 at stride 5, then 256 rectifier units")
add(models, "--fc_hidden", int, 64, "width of each of --model fc's two hidden layers")
add(models, "--random_glimpses", str2bool, False,
    "RAM looking at uniformly random places instead of where its policy says (the paper's "
    "'RAM, random glimpses' baseline)")

glimpse = parser.add_argument_group("glimpse network")
add(glimpse, "--patch_size", int, 8, "side g of the smallest (sharpest) patch, in pixels")
add(glimpse, "--glimpse_scale", int, 1, "each patch is this many times wider than the previous one")
add(glimpse, "--num_patches", int, 1, "patches per glimpse, k")
add(glimpse, "--loc_hidden", int, 128, "width of the location layer (fc2)")
add(glimpse, "--glimpse_hidden", int, 128, "width of the patch layer (fc1)")
add(glimpse, "--channels", int, 1,
    "channels of the images: 1 (gray) or 3 (RGB, --dataset folder only; its images are "
    "converted to this)")
glimpse.add_argument("--retina_method", choices=["auto", "numpy", "paddle", "loop"], default="auto",
                     help="how the retina cuts patches, all giving the same glimpses; auto: numpy "
                          "on the CPU (fastest there), paddle on a GPU")

core = parser.add_argument_group("core network")
core.add_argument("--core", choices=["rnn", "lstm"], default="rnn",
                  help="rnn: the paper's rectifier core, h_t = relu(i2h(g_t) + h2h(h_{t-1})); "
                       "lstm: an LSTM cell (paddle.nn.LSTMCell), beyond the paper, as tfRAM")
add(core, "--num_glimpses", int, 6, "glimpses per image, T")
add(core, "--hidden_size", int, 256, "width of the recurrent state h_t")

reinforce = parser.add_argument_group("reinforce")
add(reinforce, "--std", float, 0.05, "standard deviation of the location policy")
add(reinforce, "--M", int, 10, "Monte-Carlo repeats per image at validation and test")

data = parser.add_argument_group("data")
data.add_argument("--dataset", choices=["mnist", "translated", "cluttered", "folder"],
                  default="mnist",
                  help="28x28 MNIST, or each digit at a random place on a larger canvas, "
                       "with --num_distractors clutter for cluttered; folder: your own images "
                       "in --data_dir/train/<class>/ (and --data_dir/test/<class>/), resized to "
                       "--image_size")
add(data, "--image_size", int, None,
    "side of the images: 28 for mnist (the default there and for folder), 60 by default for "
    "the canvases")
add(data, "--num_distractors", int, None,
    "clutter pieces per canvas: 4 by default for cluttered, 0 (and only 0) otherwise")
add(data, "--distractor_size", int, 8, "side of each clutter piece, cut from another digit")
add(data, "--dataset_seed", int, 0,
    "seed of the canvases: the same test set for every run and implementation")
add(data, "--fresh_canvases", str2bool, False,
    "draw new training canvases every epoch (validation and test canvases stay fixed)")
add(data, "--cache_dir", str, "data/cache", "where generated canvases are kept between runs")
add(data, "--valid_size", float, 0.1, "fraction of the training images held out for validation")
add(data, "--batch_size", int, 128, "images per batch")
add(data, "--num_workers", int, 0, "DataLoader worker processes (0: load in the main process)")
add(data, "--shuffle", str2bool, True, "shuffle the training images every epoch")
add(data, "--train_subset", int, 0, "use only the first N training images, for smoke runs (0: all)")

training = parser.add_argument_group("training")
add(training, "--is_train", str2bool, True, "train; False evaluates a checkpoint on the test set")
add(training, "--checkpoint", str, None,
    "with --is_train=False: test this checkpoint file (its model and task options are the "
    "defaults) instead of the one in --ckpt_dir; e.g. a published one under results/")
add(training, "--epochs", int, 200, "epochs to train (a resumed run stops at the same total)")
add(training, "--init_lr", float, 3e-4, "Adam's initial learning rate")
training.add_argument("--lr_schedule", choices=["plateau", "cosine"], default="plateau",
                      help="plateau: drop by --lr_factor after --lr_patience epochs without "
                           "validation gain (the reference's); cosine: anneal to zero over --epochs")
add(training, "--lr_factor", float, 0.1, "factor of a learning-rate drop on a validation plateau")
add(training, "--train_paths", int, 1,
    "glimpse paths per training image and step; with more than 1, REINFORCE centres each "
    "path's reward on the mean reward of the image's other paths (tfRAM trains on 10)")
add(training, "--clip_grad_norm", float, 0.0,
    "clip the gradients' global norm to this before each step (0: no clipping; tfRAM clips at 5)")
add(training, "--lr_patience", int, 20, "epochs without validation gain before the rate drops")
add(training, "--train_patience", int, 50,
    "epochs without validation gain before training stops (plateau schedule: a cosine run "
    "always trains its --epochs)")

misc = parser.add_argument_group("misc")
add(misc, "--use_gpu", str2bool, None,
    "run on a GPU; by default True exactly when this Paddle was built with CUDA")
add(misc, "--num_threads", int, 0,
    "CPU threads for Paddle's maths in a CPU run; 0: every core this process may use "
    "(Paddle alone takes 1)")
add(misc, "--best", str2bool, True, "load the best checkpoint (False: the last one)")
add(misc, "--random_seed", int, 1, "seed of the weights, the split, the data order and the policy")
add(misc, "--data_dir", str, "data/MNIST",
    "folder of the four MNIST IDX files; with --dataset folder, the image folder")
add(misc, "--ckpt_dir", str, "./ckpt", "folder of the checkpoints")
add(misc, "--logs_dir", str, "./logs", "folder of the epoch logs, test results and VisualDL scalars")
add(misc, "--plot_dir", str, "./plots", "folder of the glimpse plots")
add(misc, "--resume", str2bool, False, "continue training from a checkpoint (see --best)")
add(misc, "--print_freq", int, 10, "refresh the progress bar's figures every N batches")
add(misc, "--plot_freq", int, 1, "save the glimpses of the first validation batch every N epochs")
add(misc, "--test_freq", int, 0,
    "also test every N epochs and log test_err and selected_test_err (of the best-validation "
    "checkpoint), never used to choose the best model (0: never)")


def check(config):
    """The first reason the options cannot work, or None."""
    canvas = config.dataset in ("translated", "cluttered")
    if config.image_size is None:
        config.image_size = 60 if canvas else 28
    if config.num_distractors is None:
        config.num_distractors = 4 if config.dataset == "cluttered" else 0
    if config.dataset == "mnist" and config.image_size != 28:
        return f"--image_size {config.image_size} needs --dataset translated, cluttered or folder"
    if config.dataset == "folder" and not 4 <= config.image_size <= MAX_CANVAS:
        return f"--image_size must be 4 to {MAX_CANVAS} for --dataset folder, got {config.image_size}"
    if config.channels not in (1, 3) or (config.channels == 3 and config.dataset != "folder"):
        return (f"--channels must be 1, or 3 with --dataset folder (MNIST is gray), "
                f"got {config.channels}")
    if config.dataset != "cluttered" and config.num_distractors:
        return "--num_distractors needs --dataset cluttered"
    if canvas and not 28 <= config.image_size <= MAX_CANVAS:
        return f"--image_size must hold a 28x28 digit (28 to {MAX_CANVAS}), got {config.image_size}"
    if not 1 <= config.distractor_size <= 28:
        return f"--distractor_size must be 1 to 28, got {config.distractor_size}"
    positive = ["train_paths", "fc_hidden", "patch_size", "glimpse_scale", "num_patches", "channels", "loc_hidden",
                "glimpse_hidden", "num_glimpses", "hidden_size", "M", "batch_size", "epochs",
                "print_freq", "plot_freq"]
    for name in positive:
        if getattr(config, name) < 1:
            return f"--{name} must be at least 1, got {getattr(config, name)}"
    for name, limit in LIMITS.items():
        if getattr(config, name) > limit:
            return f"--{name} must be at most {limit} on this machine, got {getattr(config, name)}"
    if config.patch_size * config.glimpse_scale ** (config.num_patches - 1) > MAX_PATCH:
        return (f"the widest patch, --patch_size x --glimpse_scale^(--num_patches - 1), must be "
                f"at most {MAX_PATCH} pixels, got {config.patch_size} x "
                f"{config.glimpse_scale}^{config.num_patches - 1}")
    if config.train_paths * config.batch_size > MAX_EVAL_BATCH:
        return (f"--train_paths x --batch_size, the episodes of one training step, must be at "
                f"most {MAX_EVAL_BATCH}, got {config.train_paths} x {config.batch_size}")
    if not (config.clip_grad_norm >= 0 and math.isfinite(config.clip_grad_norm)):
        return f"--clip_grad_norm must be 0 (off) or positive, got {config.clip_grad_norm}"
    if config.M * config.batch_size > MAX_EVAL_BATCH:
        return (f"--M x --batch_size, the images of one evaluation batch, must be at most "
                f"{MAX_EVAL_BATCH}, got {config.M} x {config.batch_size}")
    if config.hidden_size < 2:
        return "--hidden_size must be at least 2 (the location network is half as wide)"
    if not (config.std > 0 and math.isfinite(config.std)):
        return f"--std must be positive and finite, got {config.std}"
    if not 0 <= config.valid_size < 1:
        return f"--valid_size must be in [0, 1), got {config.valid_size}"
    if not (config.init_lr > 0 and math.isfinite(config.init_lr)):
        return f"--init_lr must be positive and finite, got {config.init_lr}"
    if not 0 < config.lr_factor < 1:
        return f"--lr_factor must be in (0, 1), got {config.lr_factor}"
    for name in ["num_workers", "lr_patience", "train_patience", "train_subset", "num_threads",
                 "test_freq", "num_distractors", "dataset_seed"]:
        if getattr(config, name) < 0:
            return f"--{name} must not be negative, got {getattr(config, name)}"
    for name in ["ckpt_dir", "logs_dir", "plot_dir", "cache_dir"]:
        if inside(getattr(config, name), RESULTS_DIR):
            return (f"--{name} {getattr(config, name)} is inside results/, which holds the "
                    f"published results: write runs elsewhere")
    for name in ["random_seed", "dataset_seed"]:
        if not 0 <= getattr(config, name) <= MAX_SEED:
            return f"--{name} must be 0 to {MAX_SEED}, got {getattr(config, name)}"
    if paddle.distributed.get_world_size() > 1 and not config.shuffle:
        return ("--shuffle=False in a data-parallel run: its processes take shards of each "
                "epoch's shuffled order")
    if config.model == "conv" and config.image_size < 10:
        return f"--model conv's 10x10 filters need --image_size 10 or more, got {config.image_size}"
    if config.random_glimpses and config.model != "ram":
        return "--random_glimpses is RAM's (--model ram)"
    if config.use_gpu is None:
        config.use_gpu = paddle.device.is_compiled_with_cuda()
    if config.use_gpu and not paddle.device.is_compiled_with_cuda():
        return ("--use_gpu=True but this Paddle has no CUDA: install paddlepaddle-gpu "
                "(see README) or pass --use_gpu=False")
    return None


def inside(path, folder):
    """Whether path is folder or lies below it, links resolved."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def checkpoint_options(path):
    """The model and task options a checkpoint was made with, or a one-line reason."""
    try:
        check_pickle(path)  # before paddle.load, which would run any code a pickle names
        saved = {**OPTION_DEFAULTS, **paddle.load(path)["config"]}
        return {name: saved[name] for name in MODEL_OPTIONS + DATA_OPTIONS}
    except Exception as err:  # missing, damaged or foreign: paddle.load raises many kinds
        return f"--checkpoint {path}: not a readable RAM-Paddle checkpoint ({type(err).__name__})"


def saved_config(options):
    """The Namespace of the options a checkpoint saved (its "config" dict), with what
    checkpoints from before an option existed were made with."""
    return argparse.Namespace(**{**OPTION_DEFAULTS, **options})


def get_config(argv=None):
    """Parse and check the options; a bad one exits with a one-line reason. With
    --checkpoint, that checkpoint's model and task options are the defaults.
    config.classes is set too: the digits, or the class folders of --dataset folder."""
    config = parser.parse_args(argv)
    if config.checkpoint:
        if config.is_train:
            parser.error("--checkpoint is for testing (--is_train=False); to continue a run "
                         "use --resume")
        options = checkpoint_options(config.checkpoint)
        if isinstance(options, str):
            parser.error(options)
        options.pop("classes")  # the data's, compared with the checkpoint's when it loads
        config = parser.parse_args(argv, argparse.Namespace(**options))
    reason = check(config)
    if reason:
        parser.error(reason)
    config.classes = DIGITS
    if config.dataset == "folder":
        try:
            config.classes = folder_classes(config.data_dir)
        except DataError as err:
            parser.error(str(err))
    return config


def model_name(config):
    """ram_<glimpses>_<patch>x<patch>_<scale>, the reference's (_random with random glimpses;
    fc<width> or conv for the baselines), then the task unless MNIST 28x28:
    _translated<size>, or _cluttered<size>_d<distractors>, or _<folder><size>."""
    name = f"ram_{config.num_glimpses}_{config.patch_size}x{config.patch_size}_{config.glimpse_scale}"
    if config.random_glimpses:
        name += "_random"
    if config.core == "lstm":
        name += "_lstm"
    if config.model != "ram":
        name = f"fc{config.fc_hidden}" if config.model == "fc" else "conv"
    if config.dataset == "translated":
        name += f"_translated{config.image_size}"
    elif config.dataset == "cluttered":
        name += f"_cluttered{config.image_size}_d{config.num_distractors}"
    elif config.dataset == "folder":
        name += f"_{os.path.basename(os.path.normpath(config.data_dir))}{config.image_size}"
    return name
