"""Every option of main.py, in four typed sections (the model's ModelConfig, DataConfig,
TrainConfig, RunConfig) whose fields carry their help, bounds, choices and role (model.option);
the command line generated from them, with the PyTorch reference's names and defaults; recipe
files (configs/*.toml) as defaults; the rules that cross fields; and a run's name."""
import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass

import paddle

import checkpoint
from checkpoint import DIGITS, TASK_OPTIONS, CheckpointError
from data_loader import DataError, folder_classes
from model import FREE, MODEL_OPTIONS, RESUME, TEST, ModelConfig, option

ROOT = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(ROOT, "results")  # published results: no run writes there

MAX_PATCH = 1024  # pixels on a side of the widest patch, g * s^(k - 1)
MAX_EVAL_BATCH = 16384  # images in one evaluation batch, M * batch_size
MAX_CANVAS = 200  # pixels on a side: 70,000 canvases of 200x200 take 2.8 GB
MAX_SEED = 2**32 - 1  # NumPy's seeds
MAX_WEIGHTS = 2**27  # a model's weights: 0.5 GB in float32, 2 GB with Adam's moments and gradients
MAX_NAME = 200  # bytes of a run's name: its files' names must stay under 255


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
  python main.py --config configs/mnist_6g.toml      # the 28x28 headline's recipe, a run of its own
  python main.py --config configs/mnist_6g.toml --is_train=False   # test it
  python main.py --is_train=False --checkpoint results/mnist/ram_6_8x8_1/model.pdparams
  python main.py --config configs/catch.toml         # the paper's game of Catch

docs/options.md explains the options; configs/ holds the recipe of every published row."""


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """The task: which images (or game), and how they are split and batched."""
    dataset: str = option(
        "mnist", "28x28 MNIST, or each digit at a random place on a larger canvas, with "
        "--num_distractors clutter for cluttered; folder: your own images in "
        "--data_dir/train/<class>/ (and --data_dir/test/<class>/), resized to --image_size; "
        "catch: the paper's game (catch.py), played on a 24x24 screen",
        choices=("mnist", "translated", "cluttered", "folder", "catch"))
    image_size: int = option(
        None, "side of the images: 28 for mnist (the default there and for folder), 60 by "
        "default for the canvases, 24 for catch", least=4, most=200)
    num_distractors: int = option(
        None, "clutter pieces per canvas: 4 by default for cluttered, 0 (and only 0) otherwise",
        least=0, most=64)
    distractor_size: int = option(8, "side of each clutter piece, cut from another digit",
                                  least=1, most=28)
    dataset_seed: int = option(0, "seed of the canvases (catch: of the validation and test "
                               "games): the same test set for every run and implementation",
                               least=0, most=MAX_SEED)
    fresh_canvases: bool = option(False, "draw new training canvases every epoch (validation "
                                  "and test canvases stay fixed)", role=RESUME)
    valid_size: float = option(0.1, "fraction of the training images held out for validation",
                               role=RESUME, least=0, below=1)
    batch_size: int = option(128, "images per batch (catch: games played at once)", role=RESUME,
                             least=1, most=4096)
    shuffle: bool = option(True, "shuffle the training images every epoch", role=RESUME)
    train_subset: int = option(0, "use only the first N training images, for smoke runs (0: all)",
                               role=RESUME, least=0)
    epoch_frames: int = option(1_000_000, "catch: frames played per epoch, one glimpse and one "
                               "action of one game each", role=RESUME, least=1, most=10**9)
    valid_games: int = option(1000, "catch: games played to validate, after each epoch",
                              role=RESUME, least=1, most=10**6)
    test_games: int = option(10_000, "catch: games played to test", role=FREE, least=1,
                             most=10**7, recipe=False)
    data_dir: str = option("data/MNIST", "folder of the four MNIST IDX files; with --dataset "
                           "folder, the image folder", role=FREE, recipe=False)
    cache_dir: str = option("~/.cache/ram-paddle", "where generated canvases are kept between "
                            "runs, outside the checkout (hundreds of MB: delete it to free the "
                            "space; runs make it anew)", role=FREE, recipe=False)
    num_workers: int = option(0, "DataLoader worker processes (0: load in the main process)",
                              role=FREE, least=0, most=64, recipe=False)
    # Not an option: the names of the data's classes (the game's actions), in the order of
    # the model's outputs; config.parse sets them.
    classes: list = dataclasses.field(default_factory=list, metadata=dict(role=TEST))


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How a model is trained: the optimizer, its schedule and the seed."""
    epochs: int = option(200, "epochs to train (a resumed run stops at the same total)",
                         role=FREE, least=1, most=100_000)
    optimizer: str = option("adam", "adam (the reference's) or sgd, with --momentum (the paper's)",
                            role=RESUME, choices=("adam", "sgd"))
    momentum: float = option(0.9, "SGD's momentum (--optimizer sgd)", role=RESUME, least=0, below=1)
    init_lr: float = option(3e-4, "the initial learning rate", role=RESUME, above=0)
    lr_schedule: str = option(
        "plateau", "plateau: drop by --lr_factor after --lr_patience epochs without validation "
        "gain (the reference's); cosine: anneal to zero over --epochs; linear: from --init_lr "
        "to zero over --epochs, at every step (the paper's)", role=RESUME,
        choices=("plateau", "cosine", "linear"))
    lr_factor: float = option(0.1, "factor of a learning-rate drop on a validation plateau",
                              role=RESUME, above=0, below=1)
    lr_patience: int = option(20, "epochs without validation gain before the rate drops",
                              role=RESUME, least=0)
    train_patience: int = option(
        50, "epochs without validation gain before training stops (plateau schedule: the "
        "annealing ones always train their --epochs)", role=FREE, least=0)
    train_paths: int = option(
        1, "glimpse paths per training image and step (catch: plays of each game from its "
        "start); with more than 1, REINFORCE centres each path's reward on the mean reward of "
        "the image's other paths (tfRAM trains on 10)",
        role=RESUME, least=1, most=100)
    clip_grad_norm: float = option(
        0.0, "clip the gradients' global norm to this before each step (0: no clipping; tfRAM "
        "clips at 5)", role=RESUME, least=0, most=1e6)
    entropy_weight: float = option(
        0.0, "catch: weight of the game actions' entropy subtracted from the loss (keeps the "
        "policy from settling on one action early)", role=RESUME, least=0, most=100)
    random_seed: int = option(1, "seed of the weights, the split, the data order and the policy",
                              role=RESUME, least=0, most=MAX_SEED)
    M: int = option(10, "Monte-Carlo glimpse paths per image at validation and test", role=FREE,
                    least=1, most=100, recipe=False)


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Where a run writes and how it shows its progress: never what it trains."""
    config: str = option(None, "a recipe file (configs/*.toml) whose options are the defaults; "
                         "the run is named after it", role=FREE)
    is_train: bool = option(True, "train; False evaluates a checkpoint on the test set", role=FREE)
    checkpoint: str = option(
        None, "with --is_train=False: test this checkpoint file (its model and task options are "
        "the defaults) instead of the run's; e.g. a published one under results/", role=FREE)
    resume: bool = option(False, "continue training from a checkpoint (see --best)", role=FREE)
    best: bool = option(True, "load the best checkpoint (False: the last one)", role=FREE)
    run_name: str = option(
        None, "name of the run's files; by default the recipe's name (--config) or the model's "
        "(e.g. ram_6_8x8_1), then, unless the options are the recipe's, '-' and a digest of "
        "those that differ, so that runs of two recipes never share files", role=FREE)
    ckpt_dir: str = option("./ckpt", "folder of the runs: each run's checkpoints, log, VisualDL "
                           "records, glimpses and test result in <ckpt_dir>/<run name>/",
                           role=FREE)
    logs_dir: str = option(None, "the runs' logs, VisualDL records and test results in "
                           "<logs_dir>/<run name>/ instead", role=FREE)
    plot_dir: str = option(None, "the runs' glimpses in <plot_dir>/<run name>/ instead",
                           role=FREE)
    use_gpu: bool = option(None, "run on a GPU; by default True exactly when this Paddle was "
                           "built with CUDA", role=FREE)
    num_threads: int = option(0, "CPU threads for Paddle's maths in a CPU run; 0: every core "
                              "this process may use (Paddle alone takes 1)", role=FREE, least=0,
                              most=1024)
    print_freq: int = option(10, "refresh the progress bar's figures every N batches", role=FREE,
                             least=1)
    plot_freq: int = option(1, "save the glimpses of the first validation batch every N epochs",
                            role=FREE, least=1)
    test_freq: int = option(
        0, "also test every N epochs and log test_err and selected_test_err (of the "
        "best-validation checkpoint), never used to choose the best model (0: never)",
        role=FREE, least=0)
    nnodes: int = option(
        1, "machines of one run: start main.py on each with the same --nnodes and --master and "
        "its own --rank; it starts Paddle's launcher there (one process a machine), and stops "
        "in one line if the machines have not met within --meet_timeout", role=FREE,
        group="machines", least=1, most=1024)
    master: str = option(None, "address:port of the machine of --rank 0, where the machines "
                         "meet (--nnodes 2 or more)", role=FREE, group="machines")
    rank: int = option(0, "this machine's rank, 0 to --nnodes - 1; rank 0 writes the files",
                       role=FREE, group="machines", least=0, most=1023)
    meet_timeout: int = option(
        180, "seconds the processes of a run on several machines or devices wait for each "
        "other to start before stopping, in one line, with what is wrong", role=FREE,
        group="machines", least=1, most=86_400)


# The sections, in the order of the help; every option is a field of one of them.
SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "run": RunConfig}
FIELDS = {field.name: field for section in SECTIONS.values()
          for field in dataclasses.fields(section) if "help" in field.metadata}
# What a run's name leaves out: where and how it runs, never what it trains.
NOT_RECIPE = {name for name, field in FIELDS.items()
              if not field.metadata["recipe"] or name in {f.name for f in dataclasses.fields(RunConfig)}}
LIMITS = {name: field.metadata["most"] for name, field in FIELDS.items()
          if field.metadata["most"] is not None}


def sections(options):
    """main.py's options (a Namespace or dict with classes) as their sections' dataclasses:
    {"model": ModelConfig, "data": DataConfig, ...}, which checkpoint.fit compares by role."""
    options = vars(options) if not isinstance(options, dict) else options
    parts = {"model": ModelConfig.from_options(options)}
    for name, section in list(SECTIONS.items())[1:]:
        parts[name] = section(**{field.name: options[field.name]
                                 for field in dataclasses.fields(section)})
    return parts


def field_kind(field):
    """The Python type of a section's field (its annotation may be the type's name)."""
    return {"bool": bool, "int": int, "float": float, "str": str}.get(field.type, field.type)


def field_type(field):
    """The argparse type of a section's field: str2bool for a bool."""
    kind = field_kind(field)
    return str2bool if kind is bool else kind


def make_parser():
    """main.py's parser: an option for each field of the sections, in a group of the help
    each (the field's own group, else its section)."""
    made = OneLineParser(description="Recurrent Attention Model (Mnih et al., 2014) in "
                                     "PaddlePaddle.", epilog=EXAMPLES)
    groups = {}
    for section, fields in SECTIONS.items():
        for field in dataclasses.fields(fields):
            if "help" not in field.metadata:
                continue
            title = field.metadata["group"] or section
            group = groups[title] = groups.get(title) or made.add_argument_group(title)
            kind, text = field_type(field), field.metadata["help"]
            if field.metadata["choices"]:
                group.add_argument(f"--{field.name}", choices=field.metadata["choices"],
                                   default=field.default, help=text)
            elif kind is str2bool:  # `--resume` alone means True; `--resume=False` works too
                group.add_argument(f"--{field.name}", type=str2bool, default=field.default,
                                   nargs="?", const=True, metavar="BOOL", help=text)
            else:
                group.add_argument(f"--{field.name}", type=kind, default=field.default, help=text)
    return made


parser = make_parser()


def bounds_problem(name, value):
    """Why `value` is outside option --name's bounds, in one line, or None."""
    meta = FIELDS[name].metadata
    if value is None or isinstance(value, (bool, str)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"--{name} must be finite, got {value}"
    if meta["least"] is not None and value < meta["least"]:
        return f"--{name} must be at least {meta['least']}, got {value}"
    if meta["above"] is not None and not value > meta["above"]:
        return f"--{name} must be above {meta['above']}, got {value}"
    if meta["below"] is not None and not value < meta["below"]:
        return f"--{name} must be below {meta['below']}, got {value}"
    if meta["most"] is not None and value > meta["most"]:
        most = f"{meta['most']:g}" if isinstance(meta["most"], float) else meta["most"]
        return f"--{name} must be at most {most} on this machine, got {value}"
    return None


def is_of(value, kind):
    """Whether a value read from a file (a recipe, a checkpoint) is an option's kind: a
    bool only for bool, an int for float too, never a bool for a number."""
    if kind is bool:
        return isinstance(value, bool)
    number = (int, float) if kind is float else kind
    return isinstance(value, number) and not isinstance(value, bool)


def read_recipe(path):
    """A recipe file's options: TOML with the sections [model], [data], [train], [run],
    each key an option of its section with a value of its type. Raises RecipeError."""
    import tomllib

    try:
        with open(path, "rb") as f:
            recipe = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise RecipeError(f"--config {path}: not a readable recipe ({err})") from None
    options = {}
    for section, values in recipe.items():
        if section not in SECTIONS or not isinstance(values, dict):
            raise RecipeError(f"--config {path}: [{section}] is no section; the sections are "
                              f"{', '.join(f'[{name}]' for name in SECTIONS)}")
        known = {field.name: field for field in dataclasses.fields(SECTIONS[section])
                 if "help" in field.metadata}
        for name, value in values.items():
            if name not in known or name == "config":
                raise RecipeError(f"--config {path}: {name} is no option of [{section}]")
            kind = field_kind(known[name])
            if not is_of(value, kind):
                raise RecipeError(f"--config {path}: {section}.{name} is {value!r}, not a "
                                  f"{kind.__name__}")
            options[name] = float(value) if kind is float else value
    return options


class RecipeError(Exception):
    """A recipe file that cannot be read; the message is one line."""


def fill_task_defaults(config):
    """Give --image_size and --num_distractors, if not given, their task's defaults."""
    if config.image_size is None:
        config.image_size = {"translated": 60, "cluttered": 60, "catch": 24}.get(config.dataset, 28)
    if config.num_distractors is None:
        config.num_distractors = 4 if config.dataset == "cluttered" else 0
    return config


# Options that mean something for images alone, or for the game alone: given for the other
# task (set to other than their defaults), they are refused rather than ignored.
IMAGES_ONLY = ["valid_size", "shuffle", "train_subset", "fresh_canvases", "M",
               "num_workers", "num_distractors", "distractor_size", "channels",
               "random_glimpses", "num_glimpses"]
GAME_ONLY = ["epoch_frames", "valid_games", "test_games", "entropy_weight"]


def options_problem(config):
    """The first reason the options cannot work (after fill_task_defaults), or None: a
    bound of one option (bounds_problem), then the rules that cross options."""
    fill_task_defaults(config)
    for name in FIELDS:
        if problem := bounds_problem(name, getattr(config, name)):
            return problem
    canvas = config.dataset in ("translated", "cluttered")
    defaults = {name: field.default for name, field in FIELDS.items()}
    defaults["num_distractors"] = 0
    if config.dataset == "catch":
        given = [name for name in IMAGES_ONLY if getattr(config, name) != defaults[name]]
        if given:
            return (f"--{given[0]} means nothing for --dataset catch (a game is one glimpse a "
                    f"frame; see docs/options.md)")
        if config.image_size != 24 or config.model != "ram":
            return "--dataset catch is played on its 24x24 screen by --model ram"
        if paddle.distributed.get_world_size() > 1 or config.nnodes > 1:
            return "--dataset catch trains in one process (its games are not sharded)"
    else:
        given = [name for name in GAME_ONLY if getattr(config, name) != defaults[name]]
        if given:
            return f"--{given[0]} is the game's (--dataset catch)"
    if config.dataset == "mnist" and config.image_size != 28:
        return f"--image_size {config.image_size} needs --dataset translated, cluttered or folder"
    if config.channels not in (1, 3) or (config.channels == 3 and config.dataset != "folder"):
        return (f"--channels must be 1, or 3 with --dataset folder (MNIST is gray), "
                f"got {config.channels}")
    if config.dataset != "cluttered" and config.num_distractors:
        return "--num_distractors needs --dataset cluttered"
    if canvas and not 28 <= config.image_size:
        return f"--image_size must hold a 28x28 digit (28 to {MAX_CANVAS}), got {config.image_size}"
    if config.optimizer != "sgd" and config.momentum != defaults["momentum"]:
        return "--momentum is SGD's (--optimizer sgd)"
    if config.patch_size * config.glimpse_scale ** (config.num_patches - 1) > MAX_PATCH:
        return (f"the widest patch, --patch_size x --glimpse_scale^(--num_patches - 1), must be "
                f"at most {MAX_PATCH} pixels, got {config.patch_size} x "
                f"{config.glimpse_scale}^{config.num_patches - 1}")
    if config.train_paths * config.batch_size > MAX_EVAL_BATCH:
        return (f"--train_paths x --batch_size, the episodes of one training step, must be at "
                f"most {MAX_EVAL_BATCH}, got {config.train_paths} x {config.batch_size}")
    if config.M * config.batch_size > MAX_EVAL_BATCH:
        return (f"--M x --batch_size, the images of one evaluation batch, must be at most "
                f"{MAX_EVAL_BATCH}, got {config.M} x {config.batch_size}")
    for name in ["ckpt_dir", "logs_dir", "plot_dir", "cache_dir"]:
        if getattr(config, name) is not None and (
                refusal := writes_into_results(f"--{name}", os.path.expanduser(getattr(config, name)))):
            return refusal
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
            0 < len(config.run_name.encode()) <= MAX_NAME and config.run_name.replace("-", "").replace(
                "_", "").replace(".", "").isalnum() and config.run_name.isascii()
            and not config.run_name.startswith(".")):
        return (f"--run_name must be 1 to {MAX_NAME} letters, digits, '-', '_' or '.', not "
                f"starting with '.', got {config.run_name!r}")
    if len(model_name(config).encode()) > MAX_NAME:
        return (f"the run's name, {model_name(config)[:40]}..., is {len(model_name(config).encode())} "
                f"bytes long, which its files' names cannot be (at most {MAX_NAME}): give "
                f"its data a shorter folder name")
    if problem := machines_problem(config):
        return problem
    if config.use_gpu is None:
        config.use_gpu = paddle.device.is_compiled_with_cuda()
    if config.use_gpu and not paddle.device.is_compiled_with_cuda():
        return ("--use_gpu=True but this Paddle has no CUDA: install paddlepaddle-gpu "
                "(see README) or pass --use_gpu=False")
    return None


def machines_problem(config):
    """Why --nnodes, --master and --rank cannot start a run on several machines, or None."""
    if config.nnodes == 1:
        if config.master is not None or config.rank != 0:
            return "--master and --rank are for a run on several machines (--nnodes 2 or more)"
        return None
    if not config.is_train:
        return "--nnodes is for training; test on one machine"
    host, _, port = (config.master or "").rpartition(":")
    if not (host and port.isdigit() and 0 < int(port) < 65536):
        return (f"--nnodes {config.nnodes} needs --master <address>:<port> of the machine of "
                f"rank 0, got {config.master!r}")
    if config.rank >= config.nnodes:
        return f"--rank must be 0 to {config.nnodes - 1} (--nnodes {config.nnodes}), got {config.rank}"
    return None


# The options each process of a data-parallel run may set for itself: where it reads and
# writes, how it computes and reports, its rank and its patience. Any other would make its
# steps differ from the others' (another model, or another --epochs, --resume or --test_freq:
# another sequence of the all-reduces every process must join).
PER_PROCESS = {"data_dir", "cache_dir", "ckpt_dir", "logs_dir", "plot_dir", "config",
               "num_threads", "num_workers", "retina_method", "print_freq", "plot_freq", "rank",
               "meet_timeout"}


def processes_problem(options_by_rank):
    """The one-line refusal of a data-parallel run whose processes were started with other
    options than PER_PROCESS ones, or None. options_by_rank: each process's options (dicts of
    main.py's options, rank 0's first)."""
    first = options_by_rank[0]
    differing = [f"--{name} {first.get(name)} (rank 0) vs {options.get(name)} (rank {rank})"
                 for rank, options in enumerate(options_by_rank[1:], 1)
                 for name in FIELDS if name not in PER_PROCESS
                 and options.get(name) != first.get(name)]
    if differing:
        return ("the processes of this run were started with other options: "
                + ", ".join(differing) + "; start every process with the same options")
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
        if not is_of(value, kind):
            return f"its option --{name} is {value!r}, not a {kind.__name__}"
        if action.choices and value not in action.choices:
            return f"its option --{name} is {value!r}, not one of {', '.join(action.choices)}"
    classes = options.get("classes")
    if not (isinstance(classes, list) and len(classes) >= 2 and len(set(classes)) == len(classes)
            and all(isinstance(name, str) for name in classes)):
        return f"its classes, {str(classes)[:60]}, are not two or more distinct names"
    saved = argparse.Namespace(**{**vars(parser.parse_args([])), **options, "use_gpu": False})
    reason = options_problem(saved)
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
    """Parse and check the options; a bad one exits with a one-line reason. The defaults
    are, in order: the fields', a --config recipe's, a --checkpoint's model and task options
    (its own are what it is tested as); the command line overrides them all.
    config.classes is set too: the digits, the game's actions, or the class folders of
    --dataset folder. Returns the options (a Namespace) and the --checkpoint read (or None)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    given = parser.parse_args(argv)
    defaults, state = {}, None
    if given.config:
        try:
            defaults = read_recipe(given.config)
        except RecipeError as err:
            parser.error(str(err))
    if given.checkpoint:
        if given.is_train:
            parser.error("--checkpoint is for testing (--is_train=False); to continue a run "
                         "use --resume")
        path = given.checkpoint
        if os.path.isdir(path) and os.path.isfile(os.path.join(path, "model.pdparams")):
            path = given.checkpoint = os.path.join(path, "model.pdparams")  # a results/ row
        if not os.path.isfile(path):
            parser.error(f"--checkpoint {path}: not a readable RAM-Paddle checkpoint "
                         f"(no such file)")
        try:
            state = read_checkpoint(path)
        except CheckpointError as err:
            parser.error(f"--checkpoint {err}")
        options = {**state["config"], **state["model_args"]}
        # classes are the data's, compared with the checkpoint's when it loads
        defaults.update({name: options[name] for name in MODEL_OPTIONS + TASK_OPTIONS[:-1]})
    config = parser.parse_args(argv, argparse.Namespace(**defaults)) if defaults else given
    config.checkpoint = given.checkpoint
    reason = options_problem(config)
    if reason:
        parser.error(reason)
    config.classes = DIGITS
    if config.dataset == "catch":
        from catch import ACTIONS  # the game's actions are its classes
        config.classes = list(ACTIONS)
    if config.dataset == "folder":
        try:
            config.classes = folder_classes(config.data_dir)
        except DataError as err:
            parser.error(str(err))
    return config, state


def recipe_defaults(config):
    """The options a run of config's recipe has unless told otherwise: the fields' defaults
    and its --config recipe's, the task's made concrete."""
    defaults = vars(parser.parse_args([]))
    if config.config:
        defaults.update(read_recipe(config.config))
    return vars(fill_task_defaults(argparse.Namespace(**defaults)))


def run_name(config):
    """The name of a run's files: --run_name, or the recipe's name (its file's, with
    --config, else model_name), then, if any option of what it trains differs from the
    recipe's, '-' and the first eight hexadecimal digits of the SHA-1 of those options.
    The reference's recipe keeps the reference's name, ram_6_8x8_1."""
    if config.run_name:
        return config.run_name
    defaults = recipe_defaults(config)
    # --epochs of a plateau schedule is a cap that resuming may raise: not the recipe's
    changed = {name: value for name, value in sorted(vars(config).items())
               if name in FIELDS and name not in NOT_RECIPE and value != defaults[name]
               and not (name == "epochs" and config.lr_schedule == "plateau")}
    stem = (os.path.splitext(os.path.basename(config.config))[0] if config.config
            else model_name(config))
    if not changed:
        return stem
    digest = hashlib.sha1(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8]
    return f"{stem}-{digest}"


def model_name(config):
    """ram_<glimpses>_<patch>x<patch>_<scale>, the reference's (_random with random glimpses;
    fc<width> or conv for the baselines), then the task unless MNIST 28x28:
    _translated<size>, or _cluttered<size>_d<distractors>, or _<folder><size>; for the
    game, ram_<patch>x<patch>_<scale>[_lstm]_catch."""
    if config.dataset == "catch":  # a glimpse a frame: no count of glimpses
        return (f"ram_{config.patch_size}x{config.patch_size}_{config.glimpse_scale}"
                f"{'_lstm' if config.core == 'lstm' else ''}_catch")
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


def options_page():
    """docs/options.md: every option as a table row, by section, from the fields."""
    roles = {"test": "to test", "resume": "to resume", "free": "free"}
    lines = ["# Options", "",
             "Every option of `main.py`, by section (generated from config.py's sections: "
             "`python config.py > docs/options.md`; `tests/test_config.py` checks it). A recipe "
             "file (`--config configs/<recipe>.toml`) sets options by section; the command "
             "line overrides it. **Must match** says what a checkpoint must have been made "
             "with to be tested or resumed: other values are refused in one line (checkpoint.fit). "
             "Booleans accept `--is_train=False`, `--best False` and a bare `--resume`. An unknown "
             "or abbreviated option, or a value outside its bounds, is refused in one line with "
             "exit code 2.", ""]
    for title, section in SECTIONS.items():
        lines += [f"## {title}", "", section.__doc__.split("\n")[0], "",
                  "| option | default | must match | values | what it is |",
                  "| --- | --- | --- | --- | --- |"]
        for field in dataclasses.fields(section):
            meta = field.metadata
            if "help" not in meta:
                continue
            if meta["choices"]:
                values = ", ".join(meta["choices"])
            else:
                low = (f"{meta['least']} <=" if meta["least"] is not None
                       else f"{meta['above']} <" if meta["above"] is not None else "")
                high = (f"<= {meta['most']:g}" if meta["most"] is not None
                        else f"< {meta['below']}" if meta["below"] is not None else "")
                values = f"{low} x {high}".strip() if low or high else ""
            help_text = meta["help"].replace("|", "/")
            lines.append(f"| `--{field.name}` | {field.default} | {roles[meta['role']]} | "
                         f"{values} | {help_text} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(options_page(), end="")
