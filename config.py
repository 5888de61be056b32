"""Every option of main.py, with the PyTorch reference's names and defaults."""
import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys

import paddle

import checkpoint
from checkpoint import DIGITS, TASK_OPTIONS, CheckpointError
from data_loader import DataError, folder_classes
from model import MODEL_OPTIONS, ModelConfig

ROOT = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(ROOT, "results")  # published results: no run writes there

# The largest value of each option that this project's machine (2 cores, 24 GiB) can
# run; past these a run ends in a MemoryError or an overflow rather than a result.
LIMITS = {"M": 100, "batch_size": 4096, "epochs": 100_000, "num_distractors": 64,
          "num_workers": 64, "num_threads": 1024, "train_paths": 100,
          **{field.name: field.metadata["most"] for field in dataclasses.fields(ModelConfig)
             if field.metadata.get("most")}}
MAX_PATCH = 1024  # pixels on a side of the widest patch, g * s^(k - 1)
MAX_EVAL_BATCH = 16384  # images in one evaluation batch, M * batch_size
MAX_CANVAS = 200  # pixels on a side: 70,000 canvases of 200x200 take 2.8 GB
MAX_SEED = 2**32 - 1  # NumPy's seeds
MAX_WEIGHTS = 2**27  # a model's weights: 0.5 GB in float32, 2 GB with Adam's moments and gradients
MAX_CLIP = 1e6  # a larger --clip_grad_norm overflows float32 when squared (and clips nothing)
MAX_NAME = 200  # characters of a run's name: its files' names must stay under 255

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
  python main.py                                     # the reference's recipe: run ram_6_8x8_1
  python main.py --resume=True --best=False          # continue it from its last checkpoint
  python main.py --is_train=False                    # test its best checkpoint
  R="--lr_schedule cosine --init_lr 1e-3 --epochs 100 --std 0.1"   # the tuned recipe, a run
  python main.py $R; python main.py $R --is_train=False            # of its own: every step takes $R
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


# The model's options, ModelConfig's fields, each in its group of the help.
groups = {}
for field in dataclasses.fields(ModelConfig):
    if "help" in field.metadata:
        group = groups.get(field.metadata["group"]) or parser.add_argument_group(
            field.metadata["group"])
        groups[field.metadata["group"]] = group
        if field.metadata["choices"]:
            group.add_argument(f"--{field.name}", choices=field.metadata["choices"],
                               default=field.default, help=field.metadata["help"])
        else:
            add(group, f"--{field.name}", str2bool if field.type is bool else field.type,
                field.default, field.metadata["help"])

add(groups["reinforce"], "--M", int, 10, "Monte-Carlo repeats per image at validation and test")

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
add(misc, "--run_name", str, None,
    "name of the run's files; by default the model's name (e.g. ram_6_8x8_1), then, unless "
    "the recipe is the defaults', '-' and a digest of the options that differ, so that runs of "
    "two recipes never share files")
add(misc, "--resume", str2bool, False, "continue training from a checkpoint (see --best)")
add(misc, "--print_freq", int, 10, "refresh the progress bar's figures every N batches")
add(misc, "--plot_freq", int, 1, "save the glimpses of the first validation batch every N epochs")
add(misc, "--test_freq", int, 0,
    "also test every N epochs and log test_err and selected_test_err (of the best-validation "
    "checkpoint), never used to choose the best model (0: never)")


def fill_task_defaults(config):
    """Give --image_size and --num_distractors, if not given, their task's defaults."""
    canvas = config.dataset in ("translated", "cluttered")
    if config.image_size is None:
        config.image_size = 60 if canvas else 28
    if config.num_distractors is None:
        config.num_distractors = 4 if config.dataset == "cluttered" else 0
    return config


def check(config):
    """The first reason the options cannot work (after fill_task_defaults), or None."""
    canvas = config.dataset in ("translated", "cluttered")
    fill_task_defaults(config)
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
    if not 0 <= config.clip_grad_norm <= MAX_CLIP:
        return (f"--clip_grad_norm must be 0 (off) or positive, at most {MAX_CLIP:g}, got "
                f"{config.clip_grad_norm}")
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
        if refusal := writes_into_results(f"--{name}", getattr(config, name)):
            return refusal
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
    if config.model == "fc":
        weights = config.channels * config.image_size**2 * config.fc_hidden + config.fc_hidden**2
        if weights > MAX_WEIGHTS:
            return (f"--model fc with --fc_hidden {config.fc_hidden} on {config.channels}x"
                    f"{config.image_size}x{config.image_size} images has {weights:,} weights, more "
                    f"than this machine trains ({MAX_WEIGHTS:,}): lower --fc_hidden or --image_size")
    if config.run_name is not None and not (
            0 < len(config.run_name) <= MAX_NAME and config.run_name.replace("-", "").replace(
                "_", "").replace(".", "").isalnum() and not config.run_name.startswith(".")):
        return (f"--run_name must be 1 to {MAX_NAME} letters, digits, '-', '_' or '.', not "
                f"starting with '.', got {config.run_name!r}")
    if len(model_name(config)) > MAX_NAME:
        return (f"the run's name, {model_name(config)[:40]}..., is {len(model_name(config))} "
                f"characters long, which its files' names cannot be (at most {MAX_NAME}): give "
                f"its data a shorter folder name")
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


def writes_into_results(option, path):
    """The one-line refusal of an output `path` (given as `option`) inside results/, which
    holds the published results that no command overwrites; None elsewhere."""
    if inside(path, RESULTS_DIR):
        return (f"{option} {path} is inside results/, which holds the published results: "
                f"write elsewhere")
    return None


def saved_options_problem(options):
    """Why a checkpoint's saved options (a dict: its config with its model_args) cannot be
    main.py's, in one line, or None: an option of another type than main.py's, outside
    its choices, or one that check refuses. argparse judges only what a user types;
    these were read from a file that may have been damaged or crafted."""
    lacking = [name for name in MODEL_OPTIONS + TASK_OPTIONS if options.get(name) is None]
    if lacking:
        return f"it lacks the options {', '.join(lacking)}"
    actions = {action.dest: action for action in parser._actions}
    for name, value in options.items():
        action = actions.get(name)
        if action is None or value is None or action.default is argparse.SUPPRESS:
            continue
        kind = {str2bool: bool, None: str}.get(action.type, action.type)
        fits = (isinstance(value, bool) if kind is bool
                else isinstance(value, (int, float)) and not isinstance(value, bool)
                if kind is float else isinstance(value, kind) and not isinstance(value, bool))
        if not fits:
            return f"its option --{name} is {value!r}, not a {kind.__name__}"
        if action.choices and value not in action.choices:
            return f"its option --{name} is {value!r}, not one of {', '.join(action.choices)}"
    classes = options.get("classes")
    if not (isinstance(classes, list) and len(classes) >= 2 and len(set(classes)) == len(classes)
            and all(isinstance(name, str) for name in classes)):
        return f"its classes, {str(classes)[:60]}, are not two or more distinct names"
    saved = argparse.Namespace(**{**vars(parser.parse_args([])), **options, "use_gpu": False})
    reason = check(saved)
    return f"its options cannot be main.py's: {reason}" if reason else None


def read_checkpoint(path):
    """checkpoint.read, then its options judged as main.py's (saved_options_problem):
    for a checkpoint whose options become a run's (--checkpoint, export_model.py)."""
    state = checkpoint.read(path)
    problem = saved_options_problem({**state["config"], **state["model_args"]})
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    return state


def get_config(argv=None):
    """The options of argv (see parse)."""
    return parse(argv)[0]


def parse(argv=None):
    """Parse and check the options; a bad one exits with a one-line reason. With
    --checkpoint, that checkpoint's model and task options are the defaults.
    config.classes is set too: the digits, or the class folders of --dataset folder.
    Returns the options (a Namespace) and the --checkpoint read (or None)."""
    config = parser.parse_args(argv)
    state = None
    if config.checkpoint:
        if config.is_train:
            parser.error("--checkpoint is for testing (--is_train=False); to continue a run "
                         "use --resume")
        if not os.path.isfile(config.checkpoint):
            parser.error(f"--checkpoint {config.checkpoint}: not a readable RAM-Paddle checkpoint "
                         f"(no such file)")
        try:
            state = read_checkpoint(config.checkpoint)
        except CheckpointError as err:
            parser.error(f"--checkpoint {err}")
        options = {**state["config"], **state["model_args"]}
        # classes are the data's, compared with the checkpoint's when it loads
        defaults = {name: options[name] for name in MODEL_OPTIONS + TASK_OPTIONS[:-1]}
        config = parser.parse_args(argv, argparse.Namespace(**defaults))
    reason = check(config)
    if reason:
        parser.error(reason)
    config.classes = DIGITS
    if config.dataset == "folder":
        try:
            config.classes = folder_classes(config.data_dir)
        except DataError as err:
            parser.error(str(err))
    return config, state


# Options that do not make a run's name: they change nothing of what it trains, or (--M,
# --epochs of a plateau schedule, a cap that resuming may raise) are given other values to
# test or continue the same run.
NOT_RECIPE = {"is_train", "checkpoint", "resume", "best", "use_gpu", "num_threads", "num_workers",
              "print_freq", "plot_freq", "test_freq", "ckpt_dir", "logs_dir", "plot_dir",
              "cache_dir", "data_dir", "run_name", "retina_method", "M"}


def run_name(config):
    """The name of a run's files: --run_name, or model_name, then '-' and the first six
    hexadecimal digits of the SHA-1 of the recipe's options that differ from the defaults
    (none: the reference's recipe keeps the reference's name, ram_6_8x8_1)."""
    if config.run_name:
        return config.run_name
    defaults = parser.parse_args([])
    check(defaults)  # image_size and the like made concrete
    defaults = vars(defaults)
    changed = {name: value for name, value in sorted(vars(config).items())
               if name in defaults and name not in NOT_RECIPE and value != defaults[name]
               and not (name == "epochs" and config.lr_schedule != "cosine")}
    if not changed:
        return model_name(config)
    digest = hashlib.sha1(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:6]
    return f"{model_name(config)}-{digest}"


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
