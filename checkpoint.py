"""The checkpoint format: what a checkpoint holds, writing it, reading it (once, unpickling
nothing but tensors, numbers and strings), its checks, the published weights-only form, and
the model a checkpoint describes.

A checkpoint is a dict saved by paddle.save:
  model         the weights (a state dict; float16 in a published one, float32 otherwise)
  model_args    the ModelConfig that builds the model, as a dict (from 2026-12-04 on; read
                fills it in from the config of an older checkpoint)
  config        every option of the run that made it (main.py's, as a dict), classes included
  epoch, best_valid_acc, rng_state: epochs done, the best validation accuracy so far, and the
                RNG state after the epoch (a test then draws the same glimpses every time)
  optimizer, counter: Adam's and the schedule's state and the plateau counter, to train on
                (not in a published checkpoint)
  data, processes: the digest of the images the run split (data_loader.data_digest) and the
                processes it trained in, to check a resumed run against (from 2026-12-04 on)
  weights_sha256, sha256: the digests of the weights and of all the above, to catch flipped
                bytes anywhere and say where (sha256 from 2026-12-04 on)
"""
import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import pickle
import shutil
import time

import numpy as np
import paddle

from model import MODEL_OPTIONS, RESUME, TEST, ModelConfig, build_model
from utils import (FolderLocked, append_line, atomic_save, atomic_write, atomic_write_text,
                   lock_folder, remove_orphans)

DIGITS = [str(digit) for digit in range(10)]
# The task a model was trained on: testing or resuming it on another is refused. classes
# is no option: the names of the classes, in the order of the model's outputs.
TASK_OPTIONS = ["dataset", "image_size", "num_distractors", "distractor_size", "dataset_seed",
                "classes"]
# What checkpoints made before an option existed were made with.
OPTION_DEFAULTS = {"dataset": "mnist", "image_size": 28, "num_distractors": 0, "distractor_size": 8,
                   "dataset_seed": 0, "lr_schedule": "plateau", "channels": 1, "classes": DIGITS,
                   "model": "ram", "fc_hidden": 64, "random_glimpses": False, "core": "rnn",
                   "train_paths": 1, "clip_grad_norm": 0.0, "retina_method": "auto",
                   "optimizer": "adam", "momentum": 0.9, "epoch_frames": 1_000_000,
                   "valid_games": 1000, "test_games": 10_000, "config": None, "fresh_canvases": False,
                   "entropy_weight": 0.0}
# What testing a checkpoint needs, and all that a published one (results/) holds;
# training on needs the optimizer's state and the patience counter too.
TEST_KEYS = ("model", "epoch", "best_valid_acc", "rng_state", "config")
TRAIN_KEYS = TEST_KEYS + ("optimizer", "counter")
STATE_DIGEST = "sha256"  # of everything a checkpoint holds: flipped bytes anywhere are caught
DIGEST = "weights_sha256"  # of the weights alone: says whether it is they that changed
# Where read keeps what the digests say of the file as it was (None: they vouch for it) for
# check to report after the more telling problems; never saved.
UNVOUCHED = "digest_problem"
# What unpickling may build, counting every reference anew (as paddle.load copies them):
# a checkpoint's own objects are a few hundred, its arrays as large as the file.
MAX_OBJECTS = 1_000_000
MAX_EXPANSION = 2  # bytes of arrays per byte of the file, plus a MiB


class CheckpointError(Exception):
    """A checkpoint is missing or does not fit; the message is one line for the user."""


def save(state, path):
    """Write a checkpoint atomically (utils.atomic_write), with its model_args and digest."""
    state = {key: value for key, value in state.items() if key != UNVOUCHED}
    state["model_args"] = model_args(state["config"])
    state[DIGEST], state[STATE_DIGEST] = weights_digest(state["model"]), state_digest(state)
    atomic_save(state, path)


def weights_only(state, half=True):
    """A checkpoint reduced to what testing it needs, as results/ publishes it: no optimizer
    state, and the weights in float16 (a sixth of the size; loading casts them back to the
    model's float32). Its test figure is that of the float16 weights, measured anew.
    half=False keeps float32 weights: a run's best checkpoint carried between sessions
    (runs/), which resuming never reads but testing does."""
    if state.get(UNVOUCHED):  # new digests must never vouch for damaged bytes
        raise CheckpointError(f"cannot publish a checkpoint whose digests fail: {state[UNVOUCHED]}")
    published = {key: state[key] for key in TEST_KEYS}
    published["model_args"] = state.get("model_args") or model_args(state["config"])
    published["model"] = {name: value.astype("float16") if half and value.dtype == paddle.float32
                          else value for name, value in state["model"].items()}
    published[DIGEST] = weights_digest(published["model"])
    published[STATE_DIGEST] = state_digest(published)
    return published


def model_args(options):
    """The model_args of main.py's options (a dict with classes): ModelConfig's, as a dict."""
    return dataclasses.asdict(ModelConfig.from_options(options))


def state_digest(state):
    """SHA-256 of all that a checkpoint holds but its digests: each value by its type and
    contents (arrays by dtype, shape and bytes; dicts in key order), so that the same
    state gives the same digest in every process."""
    digest = hashlib.sha256()

    def feed(value):
        if isinstance(value, (paddle.Tensor, np.ndarray)):
            array = np.ascontiguousarray(np.asarray(value))
            digest.update(f"array {array.dtype} {array.shape} ".encode())
            digest.update(array.tobytes())
        elif isinstance(value, dict):
            digest.update(b"{")
            for key in sorted(value, key=str):
                feed(key)
                feed(value[key])
            digest.update(b"}")
        elif isinstance(value, (list, tuple)):
            digest.update(b"[")
            for item in value:
                feed(item)
            digest.update(b"]")
        elif hasattr(value, "__getstate__") and type(value).__name__ == "GeneratorState":
            feed(value.__getstate__())
        else:
            digest.update(f"{type(value).__name__} {value!r};".encode())

    feed({key: value for key, value in state.items() if key not in (STATE_DIGEST, DIGEST, UNVOUCHED)})
    return digest.hexdigest()


def weights_digest(weights):
    """SHA-256 of a state dict's names and values, in name order."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(np.asarray(weights[name])).tobytes())
    return digest.hexdigest()


# The only things a checkpoint's pickle may build: what paddle.save writes for our
# dicts of tensors, numbers and strings, and Paddle's RNG state. Anything else (code
# a foreign file would run while loading) is refused before paddle.load reads it.
ALLOWED_GLOBALS = {("collections", "OrderedDict"), ("builtins", "tuple"), ("numpy", "ndarray"),
                   ("numpy", "dtype"), ("numpy._core.multiarray", "_reconstruct"),
                   ("numpy.core.multiarray", "_reconstruct"),
                   ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
                   ("paddle.base.libpaddle", "GeneratorState"),
                   # paddle.save's form of a tensor that is not a parameter
                   ("paddle.base.dygraph.math_op_patch", "_rebuild_tensor")}


class ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle asks for something outside ALLOWED_GLOBALS."""


class CheckedUnpickler(pickle._Unpickler):
    """Unpickles only ALLOWED_GLOBALS, and dicts keyed by plain values (no sets): a key that
    is a structure, such as a DAG of tuples, would be hashed for hours while the pickle
    loads, deaf to signals. Python's own unpickler, not its C one, so that the opcodes that
    make dicts and sets can be checked; a checkpoint holds few objects, its arrays as bytes."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module, name):
        if (module, name) not in ALLOWED_GLOBALS:
            raise ForbiddenGlobal(f"it would run {module}.{name}")
        return super().find_class(module, name)

    @staticmethod
    def check_keys(keys):
        for key in keys:
            if not isinstance(key, (str, int, float, bytes, type(None))):
                raise ForbiddenGlobal(f"it keys a dict by a {type(key).__name__}")
            if key == "UnpackBigParamInfor@@":  # paddle.load would join slices of arrays
                raise ForbiddenGlobal("it holds arrays in slices, as no checkpoint here does")

    def load_reduce(self):
        """The calls an allowed global makes, bounded: no array over a buffer of the file's
        choosing (numpy.ndarray called directly: a zero-stride view of 4 bytes can claim
        gigabytes), tuple() of a list or tuple alone (paddle.save's (name, array) of a weight),
        a tensor rebuilt from an array alone."""
        func, args = self.stack[-2], self.stack[-1]
        if func is np.ndarray:
            raise ForbiddenGlobal("it would make an array over a buffer of its own")
        if func is tuple and not (len(args) == 1 and isinstance(args[0], (list, tuple))):
            raise ForbiddenGlobal("it would make a tuple of something else than a sequence")
        if getattr(func, "__name__", "") == "_rebuild_tensor" and not (
                args and isinstance(args[0], np.ndarray)):
            raise ForbiddenGlobal("it would make a tensor of something else than an array")
        super().load_reduce()

    def load_setitem(self):
        self.check_keys([self.stack[-2]])
        value, key = self.stack.pop(), self.stack.pop()
        self.stack[-1][key] = value

    def load_setitems(self):
        items = self.pop_mark()
        self.check_keys(items[0::2])
        for key, value in zip(items[0::2], items[1::2]):
            self.stack[-1][key] = value

    def load_dict(self):
        items = self.pop_mark()
        self.check_keys(items[0::2])
        self.append(dict(zip(items[0::2], items[1::2])))

    def load_set(self):
        raise ForbiddenGlobal("it would build a set")

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.DICT[0]] = load_dict
    for opcode in (pickle.EMPTY_SET, pickle.ADDITEMS, pickle.FROZENSET):
        dispatch[opcode[0]] = load_set


class Oversized(pickle.UnpicklingError):
    """A pickle that expands to more objects or bytes than a checkpoint can hold."""


def check_expansion(obj, file_bytes):
    """Raise Oversized if obj, every reference counted anew as paddle.load copies it, holds
    more than MAX_OBJECTS objects or MAX_EXPANSION times the file's bytes of arrays and
    strings, or an array of objects: a small file of shared references would otherwise take
    paddle.load, or the digest, hours or gigabytes."""
    objects, array_bytes, limit = 0, 0, MAX_EXPANSION * file_bytes + 2**20
    stack = [obj]
    while stack:
        value = stack.pop()
        objects += 1
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
        elif isinstance(value, np.ndarray):
            if value.dtype == object:  # what it holds would be walked by no one
                raise Oversized("it holds an array of Python objects")
            array_bytes += value.nbytes
        elif isinstance(value, (str, bytes)):  # one long string named many times: the
            array_bytes += len(value)  # digest would hash each naming
        if objects > MAX_OBJECTS or array_bytes > limit:
            raise Oversized(f"it expands to over {objects} objects or {array_bytes} bytes of "
                            f"arrays")


def read(path, keys=TEST_KEYS):
    """The checkpoint at `path`, read once and checked before anything of it is used: its
    pickle builds nothing but ALLOWED_GLOBALS and expands to no more than a checkpoint
    holds (check_expansion) before paddle.load reads the same bytes; it holds `keys` with
    values of their types; its digest matches; its config gets the defaults of options it
    predates, and its model_args are ModelConfig's (from its config, if it predates them).
    Raises a one-line CheckpointError otherwise. Its options are not judged here (see
    config.saved_options_problem), nor compared with a model (see fit)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path}: train first (python main.py) "
                              f"or check --ckpt_dir, --best and the model options")
    try:
        with open(path, "rb") as f:
            data = f.read()
        check_expansion(CheckedUnpickler(io.BytesIO(data), encoding="latin1").load(), len(data))
        state = paddle.load(io.BytesIO(data))
    except Exception as err:  # a damaged or foreign file raises many kinds
        reason = f": {err}" if isinstance(err, (ForbiddenGlobal, Oversized)) else ""
        raise CheckpointError(f"{path}: not a RAM-Paddle checkpoint, or damaged "
                              f"({type(err).__name__}{reason}); delete it or retrain") from None
    missing = [key for key in keys if not isinstance(state, dict) or key not in state]
    if missing or not isinstance(state["config"], dict) or not isinstance(state["model"], dict):
        raise CheckpointError(f"{path}: not a whole RAM-Paddle checkpoint (it lacks "
                              f"{', '.join(missing) or 'a model or config dict'})")
    problem = structure_problem(state)
    if problem:
        raise CheckpointError(f"{path}: not shaped as a RAM-Paddle checkpoint ({problem}); "
                              f"delete it or retrain")
    try:
        state[UNVOUCHED] = digest_problem(state)  # of the file as it is, before defaults fill in
    except RecursionError:  # nesting no checkpoint has, which the digest's walk cannot follow
        raise CheckpointError(f"{path}: not shaped as a RAM-Paddle checkpoint (nested too "
                              f"deep); delete it or retrain") from None
    problem = field_problem(state)
    if problem:
        raise CheckpointError(f"{path}: {problem}; delete it or retrain")
    state["config"] = saved = {**OPTION_DEFAULTS, **state["config"]}
    absent = [name for name in MODEL_OPTIONS + TASK_OPTIONS if name not in saved]
    if absent:
        raise CheckpointError(f"{path}: its options lack {', '.join(absent)}")
    try:
        state["model_args"] = (dataclasses.asdict(ModelConfig(**state["model_args"]))
                               if "model_args" in state else model_args(state["config"]))
    except (TypeError, KeyError) as err:
        raise CheckpointError(f"{path}: its model options are not RAM-Paddle's "
                              f"({type(err).__name__}: {err})") from None
    return state


def structure_problem(state):
    """Why state is not shaped as main.py saves a checkpoint, or None: keys that are strings
    (no Python or Paddle internals: __class__, StructuredToParameterName@@) at its top and in
    its config, weights and model options; weights that are arrays; whole numbers of at most
    64 bits. What follows (digests, options, argparse) then meets only what it expects."""
    mappings = [("the checkpoint", state), ("its config", state["config"]),
                ("its weights", state["model"]), ("its model options", state.get("model_args", {}))]
    for where, mapping in mappings:
        if not isinstance(mapping, dict):
            return f"{where} is a {type(mapping).__name__}, not a dict"
        for key in mapping:
            if not isinstance(key, str) or key.startswith("__") or key.endswith("@@"):
                return f"{where} has the key {str(key)[:40]!r} of type {type(key).__name__}"
    for name, value in state["model"].items():
        if not isinstance(value, (np.ndarray, paddle.Tensor)):
            return f"its weight {name[:40]!r} is a {type(value).__name__}, not an array"
    for name, value in [*state.items(), *state["config"].items()]:
        if isinstance(value, int) and not -2**63 <= value < 2**63:
            return f"its {name[:40]!r} is a whole number of more than 64 bits"
    return None


def digest_problem(state):
    """Why state's digests do not vouch for it, or None: a checkpoint of today's format
    (with model_args) needs STATE_DIGEST, an older one at least the weights' DIGEST."""
    if "model_args" in state and STATE_DIGEST not in state:
        return f"it has no {STATE_DIGEST} digest, which every checkpoint of its format has"
    if DIGEST not in state and STATE_DIGEST not in state:
        return ("it has no digest (checkpoints from before 2026-11-22 had none): its bytes "
                "cannot be trusted")
    if DIGEST in state and state[DIGEST] != weights_digest(state["model"]):
        return "its weights are not those it was saved with (damaged bytes)"
    if STATE_DIGEST in state and state[STATE_DIGEST] != state_digest(state):
        return "its contents are not those it was saved with (damaged bytes: its digest differs)"
    return None


def field_problem(state):
    """The first of state's fields besides the weights and options that does not hold
    what the code stores there, or None."""
    def whole(value):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    rng = state.get("rng_state")
    if not whole(state.get("epoch")):
        return f"its epoch is {state.get('epoch')!r}, not a count of epochs"
    if not (isinstance(state.get("best_valid_acc"), float) and -1 <= state["best_valid_acc"] <= 100):
        return f"its best_valid_acc is {state.get('best_valid_acc')!r}, not a percentage"
    if not (isinstance(rng, list) and rng
            and all(type(item).__name__ == "GeneratorState" for item in rng)):
        return f"its rng_state is a {type(rng).__name__}, not Paddle's RNG state"
    if "counter" in state and not whole(state["counter"]):
        return f"its counter is {state['counter']!r}, not a count of epochs"
    if "optimizer" in state and not isinstance(state["optimizer"], dict):
        return "its optimizer state is not a dict"
    if state.get("data") is not None and not isinstance(state["data"], str):
        return f"its data digest is {state['data']!r}, not a digest"
    if "processes" in state and not (whole(state["processes"]) and state["processes"] >= 1):
        return f"its processes are {state['processes']!r}, not a count of processes"
    return None


def fit(state, path, model, sections=None, resuming=False, data=None):
    """The one judge of whether a checkpoint (read's) fits a run: refuse, in one line, one
    whose weights do not fit `model` (names, shapes, dtypes; finite values) or whose digest
    does not vouch for it; with `sections` (config.sections of the run's options), one
    made with other options of the role TEST (the model and task), and when `resuming`,
    of the role RESUME too (the split, the optimizer and its schedule, and --epochs of a
    schedule that anneals over them) or from other images (`data`, their digest). Then
    cast its weights to the model's float32. Returns state."""
    saved, args = state["config"], state["model_args"]
    if sections is not None:
        differing = []
        for section, values in sections.items():
            kept = args if section == "model" else saved
            for field in dataclasses.fields(values):
                role = field.metadata.get("role")
                current = getattr(values, field.name)
                annealed = field.name == "epochs" and saved["lr_schedule"] != "plateau"
                if (role == TEST or (resuming and (role == RESUME or annealed))) \
                        and kept.get(field.name) != current:
                    option = f"--{field.name}" if "help" in field.metadata else field.name
                    differing.append(f"{option} {kept.get(field.name)} (checkpoint) vs {current}")
        if differing:
            raise CheckpointError(f"{path} was trained with other options: " + ", ".join(differing))
        if resuming and None not in (state.get("data"), data) and state["data"] != data:
            raise CheckpointError(f"{path} was trained on other data ({state['data']}) than "
                                  f"the run has now ({data}): resuming would train on images "
                                  f"it validated on; resume on the data it began with, or "
                                  f"start afresh")
    expected = model.state_dict()
    problem = weights_problem(state["model"], expected) or state[UNVOUCHED]
    if problem:
        raise CheckpointError(f"{path}: {problem}; delete it or retrain")
    # A published checkpoint's float16 weights (weights_only), in the model's float32.
    state["model"] = {name: value.astype(expected[name].dtype)
                      for name, value in state["model"].items()}
    return state


def resume_caveats(state, path, data, batch_size):
    """What a run resuming from a checkpoint that fits (fit's state) should be told: that
    its data cannot be checked, or that its steps now average another number of images."""
    caveats = []
    if state.get("data") is None and data is not None:
        caveats.append(f"{path} predates the digest of its data: the data are not checked")
    processes = paddle.distributed.get_world_size()
    if state.get("processes", processes) != processes:
        caveats.append(f"{path} was trained in {state['processes']} processes, resumed in "
                       f"{processes}: each step now averages {processes} x --batch_size "
                       f"{batch_size} images, not {state['processes']} x")
    return caveats


def load(path, model, sections, keys=TEST_KEYS):
    """read, then fit to `model` and the run's option `sections` (config.sections)."""
    return fit(read(path, keys), path, model, sections)


def model_of(state, path, retina_method="auto"):
    """The model a checkpoint (read's, its options judged: config.read_checkpoint) holds,
    built from the options it carries and checked, for tools given a checkpoint alone
    (export_model.py). Returns the model and the checkpoint's options (a Namespace, as
    main.py's)."""
    options = {**state["config"], **state["model_args"], "retina_method": retina_method}
    model = build_model(ModelConfig.from_options(options))
    fit(state, path, model)  # the model is the checkpoint's own: its weights are judged
    model.set_state_dict(state["model"])
    return model, argparse.Namespace(**options)


def weights_problem(weights, expected):
    """What keeps `weights` from loading into a model whose state_dict is `expected`
    (names, shapes, dtypes: float16 stands for float32; finite values), or None."""
    if set(weights) != set(expected):
        missing, extra = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
        return f"its weights do not fit the model (missing {missing}, unexpected {extra})"
    for name, tensor in expected.items():
        value = weights[name]
        if not isinstance(value, paddle.Tensor):
            return f"{name} is a {type(value).__name__}, not a tensor"
        stored_as = ((tensor.dtype, paddle.float16) if tensor.dtype == paddle.float32
                     else (tensor.dtype,))
        if value.shape != tensor.shape or value.dtype not in stored_as:
            return (f"{name} is {value.dtype} {list(value.shape)} in the checkpoint, "
                    f"{tensor.dtype} {list(tensor.shape)} in the model")
        if not bool(paddle.isfinite(value).all()):
            return f"{name} holds NaN or infinite values"
    return None


class RunFolder:
    """One run's files, in one folder, <ckpt_dir>/<name>/: ckpt.pdparams (the last checkpoint,
    after every epoch), best.pdparams (the best on validation), train.log (its options, then
    a line an epoch), the VisualDL records, test.json, and glimpses_epoch<N>.npz. With
    --logs_dir (or --plot_dir), the log, records and test result (or the glimpses) go to
    <logs_dir>/<name>/ instead, as the reference's options say. The one place that names a
    run's files, claims them for one process, and refuses a fresh run over another's."""

    LOG, RECORDS, RESULT = "train.log", "vdlrecords.run.log", "test.json"

    def __init__(self, config, name):
        self.name = name
        self.path = os.path.join(config.ckpt_dir, name)
        self.logs = os.path.join(config.logs_dir, name) if config.logs_dir else self.path
        self.plots = os.path.join(config.plot_dir, name) if config.plot_dir else self.path
        self.last = os.path.join(self.path, "ckpt.pdparams")
        self.best = os.path.join(self.path, "best.pdparams")
        self.log = os.path.join(self.logs, self.LOG)
        self.result = os.path.join(self.logs, self.RESULT)
        self.folders = list(dict.fromkeys([self.path, self.logs, self.plots]))

    @contextlib.contextmanager
    def training(self, config, num_weights, start_epoch):
        """The run's folder while it trains (rank 0's): refuse folders that cannot take its
        files (check_writable), claim it (claim), start its log with the options and the
        versions, and yield the VisualDL writer of its records, closed however the run ends.
        Raises CheckpointError."""
        self.check_writable(num_weights)
        with self.claim(config.resume):  # released however the run ends, kill -9 too
            event = f"resumed after epoch {start_epoch}" if config.resume else "started"
            try:
                append_line(self.log, f"# {event} {time.strftime('%Y-%m-%d %H:%M:%S')} paddle "
                                      f"{paddle.__version__} on {paddle.device.get_device()} "
                                      f"MKL_DEBUG_CPU_TYPE={os.environ.get('MKL_DEBUG_CPU_TYPE', '')} "
                                      f"processes {paddle.distributed.get_world_size()} "
                                      f"{json.dumps(vars(config))}")
            except OSError as err:
                raise CheckpointError(f"could not write {self.log} ({err.strerror})") from None
            from visualdl import LogWriter  # training's alone: predicting never loads it

            with contextlib.redirect_stdout(io.StringIO()):  # VisualDL announces the append
                # One record file per run, which a resumed run appends to: VisualDL shows
                # only the newest file of a folder.
                writer = LogWriter(logdir=self.logs, file_name=self.RECORDS)
            try:
                yield writer
            finally:
                writer.close()

    def check_writable(self, num_weights):
        """Refuse, CheckpointError, before training what would fail at the first checkpoint:
        a folder that cannot be made or written to, or a disk without room for the
        checkpoints of a model of num_weights weights."""
        for folder in self.folders:
            probe = os.path.join(folder, f".write_test{os.getpid()}")
            try:
                os.makedirs(folder, exist_ok=True)
                with open(probe, "w") as f:
                    f.write("ok")
                os.remove(probe)
            except OSError as err:
                raise CheckpointError(f"cannot write to {folder} ({err.strerror}): fix it or "
                                      f"choose another with --ckpt_dir, --logs_dir or "
                                      f"--plot_dir") from None
        # Weights and Adam's two moments, in float32, for the last checkpoint, the best one
        # and the temporary copy of either while it is written.
        needed = 3 * 3 * 4 * num_weights + 2**20
        free = shutil.disk_usage(self.path).free
        if free < needed:
            raise CheckpointError(f"only {free / 2**20:.1f} MiB free for {self.path}; the "
                                  f"checkpoints need about {needed / 2**20:.1f} MiB")

    def result_of(self, checkpoint=None):
        """Where the test result of the run's checkpoint goes, or that of another checkpoint
        (--checkpoint), whose result must not replace the run's: beside the runs, named
        after its folder and file (<logs_dir or ckpt_dir>/<folder>_<file>_test.json)."""
        if checkpoint is None:
            return self.result
        folder, file = os.path.split(os.path.abspath(checkpoint))
        return os.path.join(os.path.dirname(self.logs),
                            f"{os.path.basename(folder)}_{os.path.splitext(file)[0]}_test.json")

    def save_result(self, result, path):
        """Write a test's result (a dict) as JSON to path (result_of's), whole or not at all."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write_text(json.dumps(result, indent=2) + "\n", path)

    def glimpses(self, epoch):
        return os.path.join(self.plots, f"glimpses_epoch{epoch}.npz")

    def save_glimpses(self, epoch, arrays):
        """Write arrays (NumPy's) to glimpses(epoch), whole or not at all."""
        def write(tmp):
            with open(tmp, "wb") as f:  # a file, so that NumPy adds no .npz to the name
                np.savez_compressed(f, **arrays)

        os.makedirs(self.plots, exist_ok=True)
        atomic_write(self.glimpses(epoch), write)

    def claim(self, resuming):
        """Claim the run's folders for this process until it ends (utils.lock_folder, in an
        ExitStack returned to close), after deleting the temporary files of its own killed
        writes. A fresh run (not resuming) is refused in one line, CheckpointError, where a
        run of this name has written anything: nothing of another run is ever replaced."""
        locks = contextlib.ExitStack()
        try:
            for folder in self.folders:
                locks.enter_context(lock_folder(folder))
        except FolderLocked as err:
            locks.close()
            raise CheckpointError(str(err)) from None
        for folder in self.folders:
            remove_orphans(os.path.join(folder, "*.tmp*"))
        if not resuming and (refusal := self.existing_run()):
            locks.close()
            raise CheckpointError(refusal)
        return locks

    def adopt_old_layout(self, config):
        """Move a run of the layout before 2026-12-06 (<ckpt_dir>/<name>_ckpt.pdparams and
        <name>_model_best.pdparams, <logs_dir>/<name>.log and <logs_dir>/vdl/<name>/) into
        this folder, so that it resumes and tests as before, unless this folder holds a
        checkpoint already. Returns the (from, to) pairs moved."""
        if os.path.exists(self.last) or os.path.exists(self.best):
            return []
        old_logs = config.logs_dir or "logs"
        moves = [(os.path.join(config.ckpt_dir, f"{self.name}_ckpt.pdparams"), self.last),
                 (os.path.join(config.ckpt_dir, f"{self.name}_model_best.pdparams"), self.best),
                 (os.path.join(old_logs, f"{self.name}.log"), self.log),
                 (os.path.join(old_logs, "vdl", self.name, self.RECORDS),
                  os.path.join(self.logs, self.RECORDS))]
        moves = [(old, new) for old, new in moves
                 if os.path.isfile(old) and not os.path.islink(old) and not os.path.exists(new)]
        for old, new in moves:
            os.makedirs(os.path.dirname(new), exist_ok=True)
            os.replace(old, new)
        return moves

    def existing_run(self):
        """The one-line refusal of a fresh run where this one has files, or None."""
        there = [path for path in (self.last, self.best, self.log) if os.path.exists(path)]
        if not there:
            return None
        if not os.path.exists(self.last) and os.path.exists(self.best):
            # stopped between the first epoch's two writes, the best first (Trainer.save_checkpoint)
            return (f"{self.path} holds a run of {self.name} whose last checkpoint is missing, "
                    f"and its best one: continue from the best with the same options and "
                    f"--resume=True --best=True (the epochs after it run again), or "
                    f"{self.start_afresh()}")
        if not os.path.exists(self.last):
            return (f"{self.path} holds the start of a run of {self.name} that ended before its "
                    f"first epoch: {self.start_afresh()}")
        epochs = last_logged_epoch(self.log)
        return (f"{self.path} holds a run of {self.name} (after epoch {epochs}): continue it with "
                f"the same options and --resume=True --best=False, or {self.start_afresh()}")

    def start_afresh(self):
        """How to start this run afresh on purpose: its folders go (with --logs_dir or
        --plot_dir, there are several)."""
        return f"delete {' and '.join(self.folders)} to start it afresh"


def last_logged_epoch(log):
    """The number of the last epoch a train.log records, or 0 (none, or no log)."""
    try:
        with open(log, errors="replace") as f:
            numbers = [line.split()[1] for line in f if line.startswith("epoch ")]
    except OSError:
        return 0
    return int(numbers[-1]) if numbers and numbers[-1].isdigit() else 0


MANIFEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "manifest.json")


def publish(run, destination, note, paper=None):
    """Turn a finished run's folder into a published row of results/: its best checkpoint as
    float16 weights only (weights_only: its digests must vouch for it), its train.log, the
    test result of the published file as its own command prints it (test.json), and its
    manifest row (command, recipe, figure, and the paper's figure for it, `paper`). Refuses,
    CheckpointError, a destination that exists or lies outside results/. Returns the row."""
    import json
    import shlex
    import subprocess
    import sys
    import tempfile

    results = os.path.dirname(MANIFEST)
    if os.path.commonpath([os.path.realpath(destination), os.path.realpath(results)]) != \
            os.path.realpath(results) or os.path.exists(destination):
        raise CheckpointError(f"{destination}: a row is published into a new folder of results/")
    best, log = os.path.join(run, "best.pdparams"), os.path.join(run, RunFolder.LOG)
    state = read(best)
    weights = weights_only(state)  # refuses weights that its digests do not vouch for
    path = os.path.join(destination, "model.pdparams")
    checkpoint = os.path.relpath(path, os.path.dirname(results))
    command = f"python main.py --is_train=False --checkpoint {checkpoint}"
    os.makedirs(destination)
    try:
        atomic_save(weights, path)
        with open(log, "rb") as source, open(os.path.join(destination, RunFolder.LOG), "wb") as copy:
            copy.write(source.read())
        with tempfile.TemporaryDirectory() as scratch:
            main = os.path.join(os.path.dirname(os.path.abspath(__file__)), "main.py")
            done = subprocess.run([sys.executable, main, *shlex.split(command)[2:], "--logs_dir",
                                   scratch], cwd=os.path.dirname(results), capture_output=True,
                                  text=True)
            if done.returncode != 0:
                raise CheckpointError(f"{checkpoint}: its command failed: "
                                      f"{done.stderr.strip()[-300:]}")
            [result] = [os.path.join(scratch, name) for name in os.listdir(scratch)]
            with open(result) as f:
                tested = json.load(f)
        tested["checkpoint"] = checkpoint
        atomic_write_text(json.dumps(tested, indent=2) + "\n", os.path.join(destination, "test.json"))
    except BaseException:
        shutil.rmtree(destination)  # a row that failed leaves no folder in results/
        raise
    options = state["config"]
    model = {"fc": f"fc{options['fc_hidden']}", "conv": "conv"}.get(options["model"], "ram")
    model += ("_lstm" if options["core"] == "lstm" and model == "ram" else "") + \
        ("_random" if options["random_glimpses"] else "")
    row = {"task": options["dataset"], "image_size": options["image_size"],
           "num_distractors": options["num_distractors"],
           # a baseline takes no glimpses, and the game's agent one a frame
           "num_glimpses": (options["num_glimpses"] if model.startswith("ram")
                            and options["dataset"] != "catch" else None),
           "model": model, "seed": options["random_seed"], "test_error": tested["test_error"],
           "paper": paper, "checkpoint": checkpoint, "command": command, "epochs": options["epochs"],
           "best_epoch": state["epoch"], "recipe": options.get("config"), "note": note}
    if "catch_rate" in tested:  # the game's figure; test_error is its share of balls missed
        row["catch_rate"] = tested["catch_rate"]
    with open(MANIFEST) as f:
        rows = json.load(f)
    atomic_write_text("[\n" + ",\n".join("  " + json.dumps(r) for r in rows + [row]) + "\n]\n",
                      MANIFEST)
    return row


TASKS = {"mnist": "MNIST 28x28", "translated": "translated", "cluttered": "cluttered",
         "catch": "Catch, 24x24 (catch rate %)"}
MODELS = {"ram": "RAM", "ram_lstm": "RAM, LSTM core", "ram_random": "RAM, random glimpses",
          "fc64": "FC, 2 x 64", "fc256": "FC, 2 x 256", "conv": "convolutional"}


def logged_options(row):
    """The options a published row's run trained with: its train.log's first line (with
    OPTION_DEFAULTS for those older logs lack), or None for a log main.py did not write."""
    log = os.path.join(os.path.dirname(MANIFEST), "..", os.path.dirname(row["checkpoint"]), "train.log")
    with open(log) as f:
        header = next((line for line in f if line.startswith("# started")), None)
    return header and {**OPTION_DEFAULTS, **json.loads(header[header.index("{"):])}


def training(options):
    """How a run trained, in a table cell: optimizer, initial rate, schedule and batch."""
    if options is None:
        return "–"
    optimizer = "SGD" if options["optimizer"] == "sgd" else "Adam"
    return (f"{optimizer} {options['init_lr']:.2g}, {options['lr_schedule']}, "
            f"batch {options['batch_size']}")


def task_label(row):
    """A row's task in words: MNIST 28x28, cluttered 60x60, 4 distractors, ..."""
    task = TASKS[row["task"]]
    if row["task"] in ("translated", "cluttered"):
        task += f" {row['image_size']}x{row['image_size']}" + (
            f", {row['num_distractors']} distractors" if row["num_distractors"] else "")
    return task


def results_page(rows):
    """docs/results.md: the manifest's rows (results/manifest.json) as a reference table, and
    what the paper's own procedure (its SGD rows) gives against the paper and our Adam rows."""
    lines = ["# Results", "",
             "Every published row of `results/manifest.json`, generated from it (`python "
             "checkpoint.py --page > docs/results.md`; `tests/test_results.py` checks the page "
             "matches). Test error "
             "(%) on the 10,000 test images with M=10 glimpse paths, of the checkpoint of best "
             "validation accuracy; Catch: the share of 10,000 test games caught. Bold: at or below "
             "the paper's error (the game: at or above its catch rate). Each row's command, "
             "`python main.py --is_train=False --checkpoint results/<row>/model.pdparams`, prints "
             "its figure (`python -m pytest -q tests/test_results.py --all-results` runs them "
             "all); its recipe trains it (`python main.py --config configs/<recipe>.toml`).", "",
             "| task | model | glimpses | paper (NIPS) | **RAM-Paddle** | training | epochs (best) | "
             "recipe | row: weights, log, result |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    options = {row["checkpoint"]: logged_options(row) for row in rows}
    order = ["mnist", "translated", "cluttered", "catch"]
    for row in sorted(rows, key=lambda r: (order.index(r["task"]), r["image_size"],
                                           r["recipe"] is None, r["model"], r["num_glimpses"] or 0,
                                           r["epochs"])):
        game = row["task"] == "catch"
        ours = row["catch_rate"] if game else row["test_error"]
        paper = row["paper"]
        better = paper is not None and (ours >= paper if game else ours <= paper)
        task = task_label(row)
        model = MODELS[row["model"]] + (" (converted from PyTorch)" if row["recipe"] is None else "")
        folder = os.path.dirname(row["checkpoint"])
        recipe = f"[{os.path.basename(row['recipe'])}](../{row['recipe']})" if row["recipe"] else "–"
        figure = f"**{ours:.2f}**" if better else f"{ours:.2f}"
        lines.append(f"| {task} | {model} | {row['num_glimpses'] or '–'} | "
                     f"{'–' if paper is None else f'{paper:g}'} | [{figure}](../{folder}) | "
                     f"{training(options[row['checkpoint']])} | "
                     f"{row['epochs']} ({row['best_epoch']}) | {recipe} | "
                     f"[{os.path.basename(folder)}](../{folder}) |")
    lines += ["", "The paper's own procedure (section 4.1: SGD with momentum 0.9 on minibatches of "
              "20, the rate annealed linearly to 0, rate and std from a random search on "
              "validation; the rows trained by SGD) gives:", ""]
    for row in rows:
        if (options[row["checkpoint"]] or {}).get("optimizer") != "sgd":
            continue
        same_task = [other["test_error"] for other in rows if other is not row and all(
            other[key] == row[key] for key in ("task", "image_size", "num_distractors",
                                               "num_glimpses", "model"))
            and (options[other["checkpoint"]] or {}).get("optimizer") == "adam"]
        against = ([f"the paper's {row['paper']:g}"] if row["paper"] is not None else []) + (
            [f"{min(same_task):.2f} for the best of our Adam recipes"] if same_task else [])
        lines.append(f"- {task_label(row)}, {row['num_glimpses']} glimpses: "
                     f"{row['test_error']:.2f}" + (f", against {' and '.join(against)}" if against
                                                   else "") + ".")
    lines += ["", "A row's folder holds `model.pdparams` (the validation-selected weights in float16 "
              "with the options, the epoch and the RNG state that makes its test repeatable; no "
              "optimizer state), `train.log` (the options, then a line an epoch) and `test.json` "
              "(what its command wrote). Publishing a finished run: [history.md](history.md). "
              "What each row's figures mean, seeds, curves and ablations, as they were read: the "
              "dated pages of [notebook/](notebook/).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    parser = argparse.ArgumentParser(
        description="Publish a finished run as a row of results/: python checkpoint.py "
                    "ckpt/<run> results/<task>/<row> --note '...'; or print docs/results.md "
                    "from results/manifest.json: python checkpoint.py --page")
    parser.add_argument("run", nargs="?", help="the run's folder (main.py's <ckpt_dir>/<run name>)")
    parser.add_argument("destination", nargs="?", help="a new folder of results/")
    parser.add_argument("--note", help="the row's note: its recipe in words")
    parser.add_argument("--paper", type=float, help="the paper's figure for the row, if it has one")
    parser.add_argument("--page", action="store_true", help="print docs/results.md")
    args = parser.parse_args()
    if args.page:
        with open(MANIFEST) as f:
            print(results_page(json.load(f)), end="")
        sys.exit(0)
    if not (args.run and args.destination and args.note):
        parser.error("publishing needs the run, the destination and --note")
    try:
        published = publish(args.run, args.destination, args.note, args.paper)
    except CheckpointError as err:
        sys.exit(f"[!] {err}")
    print(f"[*] {published['checkpoint']}: test error {published['test_error']}%; its command: "
          f"{published['command']}")
