"""Training, validation, test and checkpoints of the Recurrent Attention Model."""
import contextlib
import dataclasses
import glob
import hashlib
import io
import json
import math
import os
import shutil
import signal
import time
from typing import NamedTuple

import numpy as np
import paddle
import paddle.nn.functional as F
from tqdm import tqdm
from visualdl import LogWriter

from config import (DATA_OPTIONS, MODEL_OPTIONS, OPTION_DEFAULTS, checkpoint_options, model_name,
                    saved_config)
from data_loader import CanvasDataset, EpochShuffler
from model import Convolutional, FullyConnected, RecurrentAttention
from modules import ModelConfig
from utils import (FolderLocked, ForbiddenGlobal, append_line, atomic_save, atomic_write,
                   atomic_write_text, check_pickle, lock_folder)

VDL_RECORDS = "vdlrecords.run.log"  # VisualDL reads files whose names hold 'vdlrecords'


def weights_finite(model):
    """Whether every weight of model is finite, in one sum (inf - inf is NaN)."""
    return math.isfinite(float(paddle.add_n([p.sum() for p in model.parameters()])))


def remove_files(folder, pattern):
    """Delete folder's files that match pattern; returns how many."""
    paths = glob.glob(os.path.join(folder, pattern))
    for path in paths:
        os.remove(path)
    return len(paths)


class CheckpointError(Exception):
    """A checkpoint is missing or does not fit; the message is one line for the user."""


class RunError(Exception):
    """Training stopped: a signal, a non-finite loss or gradient, a folder or disk that
    cannot take the files. The message is one line; exit_code is for the shell."""

    def __init__(self, message, exit_code=1):
        super().__init__(message)
        self.exit_code = exit_code


class NonFiniteError(Exception):
    """The loss or a gradient of this step is NaN or infinite."""


class Loss(NamedTuple):
    """The hybrid loss and its parts: total = action + baseline + 0.01 * reinforce."""
    total: paddle.Tensor      # scalar
    action: paddle.Tensor     # scalar: NLL of the classifier
    baseline: paddle.Tensor   # scalar: MSE of the baselines against R
    reinforce: paddle.Tensor  # scalar: mean over the batch of sum_t -log_pi_t * (R - b_t)
    reward: paddle.Tensor     # (B,): R, 1 where the prediction is right


def ram_loss(log_probas, log_pi, baselines, labels, paths=1):
    """The hybrid loss of RAM: NLL for the classifier, MSE for the baseline and
    REINFORCE for the location policy, with reward R = 1 for a right answer.

        loss = NLL + MSE(b, R) + 0.01 * mean_batch(sum_t -log_pi_t * (R - b_t))

    With paths > 1 glimpse paths per image (--train_paths; row m * B + b is path m
    of image b), REINFORCE centres each path's R on the mean R of the image's other
    paths instead of b_t: an unbiased baseline of the image's own, which the learned
    b_t (still fitted by its MSE) cannot be.

    Args:
        log_probas: (B, num_classes). log_pi, baselines: (B, T). labels: int64 (B,).
    Returns:
        a Loss: the total, each term and the (B,) rewards.
    """
    if labels.ndim != 1:  # a (B, 1) label would broadcast `predicted == labels` to (B, B)
        raise ValueError(f"labels must have shape (B,), got {labels.shape}")
    reward = (log_probas.argmax(axis=1) == labels).astype(log_probas.dtype)
    rewards = reward.unsqueeze(1).expand_as(baselines)
    loss_action = F.nll_loss(log_probas, labels)
    # A baseline model (--model fc, conv) takes no glimpse: T = 0, nothing to regress.
    loss_baseline = F.mse_loss(baselines, rewards) if baselines.shape[1] else 0.0 * loss_action
    centre = baselines.detach()  # the baseline only centres R: no REINFORCE gradient into it
    if paths > 1:
        per_image = reward.reshape([paths, -1])
        others = (per_image.sum(axis=0, keepdim=True) - per_image) / (paths - 1)
        centre = others.reshape([-1, 1]).expand_as(baselines)
    loss_reinforce = (-log_pi * (rewards - centre)).sum(axis=1).mean()
    total = loss_action + loss_baseline + 0.01 * loss_reinforce
    return Loss(total, loss_action, loss_baseline, loss_reinforce, reward)


def sum_over_processes(*numbers):
    """numbers summed over the processes of a data-parallel run (unchanged in one)."""
    if paddle.distributed.get_world_size() == 1:
        return numbers
    total = paddle.to_tensor(numbers, dtype="float64")
    paddle.distributed.all_reduce(total)
    return tuple(total.tolist())


def largest_over_processes(batch):
    """batch: (loss, nll, mse, 0.01 * reinforce) of this process's largest batch loss of
    an epoch; the one of the largest loss over the processes of a data-parallel run."""
    if paddle.distributed.get_world_size() == 1:
        return batch
    gathered = []
    paddle.distributed.all_gather(gathered, paddle.to_tensor(batch, dtype="float64"))
    return max(tuple(part.tolist()) for part in gathered)


@contextlib.contextmanager
def same_rng_everywhere():
    """Leaves the RNG as it was in a data-parallel run. Its processes draw the same
    numbers while training (same seed, same batch sizes), so that the checkpoint's RNG
    state, rank 0's, is every process's; their validation shards can differ in size."""
    state = paddle.get_rng_state() if paddle.distributed.get_world_size() > 1 else None
    yield
    if state is not None:
        paddle.set_rng_state(state)


@paddle.no_grad()
def evaluate(model, loader, M, on_first_batch=None):
    """Loss and accuracy with M Monte-Carlo glimpse paths per image, whose class
    log-probabilities (and log_pi and baselines, for the loss) are averaged; in a
    data-parallel run, over every process's shard of the images.

    on_first_batch(x, y, locations, predicted), if given, sees the first batch,
    with the locations of the first of the M paths.
    Returns: mean loss, accuracy in percent, number correct, number of images.
    """
    model.eval()
    total_loss, correct, count = 0.0, 0.0, 0
    for i, (x, y) in enumerate(loader):
        B = len(y)
        # The repeats form one batch of M * B episodes, row m * B + b being image b.
        log_probas, log_pi, baselines, locations = model(x, repeats=M)
        log_probas, log_pi, baselines = (t.reshape([M, B, -1]).mean(axis=0)
                                         for t in (log_probas, log_pi, baselines))
        loss = ram_loss(log_probas, log_pi, baselines, y)
        total_loss += float(loss.total) * B
        correct += float(loss.reward.sum())
        count += B
        if i == 0 and on_first_batch is not None:
            on_first_batch(x, y, locations[:B], log_probas.argmax(axis=1))
    total_loss, correct, count = sum_over_processes(total_loss, correct, count)
    return total_loss / count, 100.0 * correct / count, int(round(correct)), int(count)


def build_model(config):
    """The model main.py's options (a Namespace, as config.py makes) name: RecurrentAttention
    or a baseline (--model), one output per name in config.classes."""
    num_classes = len(config.classes)
    if config.model == "fc":
        return FullyConnected(config.channels, config.image_size, config.fc_hidden, num_classes)
    if config.model == "conv":
        return Convolutional(config.channels, config.image_size, num_classes)
    names = {field.name for field in dataclasses.fields(ModelConfig)} - {"num_classes"}
    return RecurrentAttention(ModelConfig(num_classes=num_classes,
                                          **{name: getattr(config, name) for name in names}))


# What testing a checkpoint needs, and all that a published one (results/) holds;
# training on needs the optimizer's state and the patience counter too.
TEST_KEYS = ("model", "epoch", "best_valid_acc", "rng_state", "config")
TRAIN_KEYS = TEST_KEYS + ("optimizer", "counter")
# Options that decide which images train and which validate: resuming under others
# would train on a different split than the run began with.
SPLIT_OPTIONS = ["random_seed", "valid_size", "train_subset"]

def weights_only(state):
    """A checkpoint reduced to what testing it needs, as results/ publishes it: no optimizer
    state, and the weights in float16 (a sixth of the size; loading casts them back to the
    model's float32). Its test figure is that of the float16 weights, measured anew."""
    published = {key: state[key] for key in TEST_KEYS}
    published["model"] = {name: value.astype("float16") if value.dtype == paddle.float32 else value
                          for name, value in state["model"].items()}
    published[DIGEST] = weights_digest(published["model"])
    return published


DIGEST = "weights_sha256"  # of the weights when saved: flipped bytes in them are caught


def weights_digest(weights):
    """SHA-256 of a state dict's names and float values, in name order."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(np.asarray(weights[name])).tobytes())
    return digest.hexdigest()


def load_checkpoint(path, config, model, keys=TEST_KEYS):
    """The checkpoint at `path`, checked before anything of it is used: it unpickles
    nothing but tensors, numbers and Paddle's RNG state, holds `keys`, was made with
    `config`'s model and task options, and its weights have the names, shapes and
    dtypes of `model`'s and are finite. Raises a one-line CheckpointError otherwise."""
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path}: train first (python main.py) "
                              f"or check --ckpt_dir, --best and the model options")
    try:
        check_pickle(path)
        state = paddle.load(path)
    except Exception as err:  # a damaged or foreign file raises many kinds
        reason = f": {err}" if isinstance(err, ForbiddenGlobal) else ""
        raise CheckpointError(f"{path}: not a RAM-Paddle checkpoint, or damaged "
                              f"({type(err).__name__}{reason}); delete it or retrain") from None
    missing = [key for key in keys if not isinstance(state, dict) or key not in state]
    if missing or not isinstance(state["config"], dict) or not isinstance(state["model"], dict):
        raise CheckpointError(f"{path}: not a whole RAM-Paddle checkpoint (it lacks "
                              f"{', '.join(missing) or 'a model or config dict'})")
    state["config"] = saved = {**OPTION_DEFAULTS, **state["config"]}
    absent = [name for name in MODEL_OPTIONS + DATA_OPTIONS if name not in saved]
    if absent:
        raise CheckpointError(f"{path}: its options lack {', '.join(absent)}")
    differing = [f"{'' if name == 'classes' else '--'}{name} {saved[name]} (checkpoint) vs "
                 f"{getattr(config, name)}"
                 for name in MODEL_OPTIONS + DATA_OPTIONS if saved[name] != getattr(config, name)]
    if differing:
        raise CheckpointError(f"{path} was trained with other model or data options: "
                              + ", ".join(differing))
    expected = model.state_dict()
    problem = weights_problem(state["model"], expected)
    if not problem and DIGEST in state and state[DIGEST] != weights_digest(state["model"]):
        problem = "its weights are not those it was saved with (damaged bytes)"
    if problem:
        raise CheckpointError(f"{path}: {problem}; delete it or retrain")
    # A published checkpoint's float16 weights (weights_only), in the model's float32.
    state["model"] = {name: value.astype(expected[name].dtype)
                      for name, value in state["model"].items()}
    return state


def model_from_checkpoint(path, retina_method="auto"):
    """The model a checkpoint holds, built from the options it carries and checked as
    load_checkpoint checks, for tools given a checkpoint alone (export_model.py).
    Returns the model, its options (a Namespace) and the checkpoint."""
    options = checkpoint_options(path)
    if isinstance(options, str):
        raise CheckpointError(options)
    config = saved_config({**options, "retina_method": retina_method})
    model = build_model(config)
    state = load_checkpoint(path, config, model)
    model.set_state_dict(state["model"])
    return model, config, state


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


def check_writable(folders, ckpt_dir, num_weights):
    """Refuse before training what would fail at the first checkpoint: a folder that
    cannot be made or written to, or a disk without room for the checkpoints."""
    for folder in folders:
        probe = os.path.join(folder, f".write_test{os.getpid()}")
        try:
            os.makedirs(folder, exist_ok=True)
            with open(probe, "w") as f:
                f.write("ok")
            os.remove(probe)
        except OSError as err:
            raise RunError(f"cannot write to {folder} ({err.strerror}): fix it or choose "
                           f"another with --ckpt_dir, --logs_dir or --plot_dir") from None
    # Weights and Adam's two moments, in float32, for the last checkpoint, the best one
    # and the temporary copy of either while it is written.
    needed = 3 * 3 * 4 * num_weights + 2**20
    free = shutil.disk_usage(ckpt_dir).free
    if free < needed:
        raise RunError(f"only {free / 2**20:.1f} MiB free for {ckpt_dir}; the "
                       f"checkpoints need about {needed / 2**20:.1f} MiB")


def remove_old_glimpses(folder):
    """A fresh run's glimpse files must not mix with an older run's epochs, which
    plot_glimpses.py would take for this run's."""
    removed = remove_files(folder, "glimpses_epoch*.npz")  # GIFs made of them stay
    if removed:
        print(f"[!] Starting afresh: removed {removed} glimpse files of an earlier run "
              f"from {folder}")


class NoWriter:
    """Where the scalars of a data-parallel run's other processes go: nowhere (rank 0
    writes the VisualDL records)."""

    def add_scalar(self, tag, value, step):
        pass

    def close(self):
        pass


class Trainer:
    """Trains and evaluates one RecurrentAttention model as `config` says.

    Files, by model_name = ram_{num_glimpses}_{patch_size}x{patch_size}_{glimpse_scale}:
    ckpt_dir/<model_name>_ckpt.pdparams (every epoch), <model_name>_model_best.pdparams
    (on a new best validation accuracy), logs_dir/<model_name>.log (a line per epoch),
    logs_dir/<model_name>_test.json, logs_dir/vdl/<model_name>/ (VisualDL scalars) and
    plot_dir/<model_name>/glimpses_epoch<N>.npz.
    """

    def __init__(self, config):
        self.config = config
        self.name = model_name(config)
        self.model = build_model(config)
        # A data-parallel run (paddle.distributed.launch) has one process per shard of
        # each batch; DataParallel averages their gradients in backward. Rank 0 alone
        # writes files and shows progress.
        self.main_process = paddle.distributed.get_rank() == 0
        self.forward = self.model
        if paddle.distributed.get_world_size() > 1:
            # With one glimpse, h2h's weight is never used (h_0 = 0: see CoreNetwork).
            self.forward = paddle.DataParallel(self.model,
                                               find_unused_parameters=config.num_glimpses == 1)
        if config.lr_schedule == "cosine":  # one step per epoch, reaching zero after the last
            self.scheduler = paddle.optimizer.lr.CosineAnnealingDecay(config.init_lr, config.epochs)
        else:
            self.scheduler = paddle.optimizer.lr.ReduceOnPlateau(
                config.init_lr, mode="max", factor=config.lr_factor, patience=config.lr_patience)
        clip = (paddle.nn.ClipGradByGlobalNorm(config.clip_grad_norm) if config.clip_grad_norm
                else None)
        # Multi-tensor Adam was no faster here (benchmarks/adam_multi_tensor.py).
        self.optimizer = paddle.optimizer.Adam(self.scheduler, parameters=self.model.parameters(),
                                               grad_clip=clip)
        # Below any accuracy, so that the first epoch always writes a best checkpoint.
        self.start_epoch, self.best_valid_acc, self.counter = 0, -1.0, 0
        self.stop_signal = None  # SIGINT or SIGTERM, once one has arrived
        self.selected_test = None  # (epoch, test error) of the best checkpoint, once tested

    def ckpt_path(self, best):
        suffix = "model_best" if best else "ckpt"
        return os.path.join(self.config.ckpt_dir, f"{self.name}_{suffix}.pdparams")

    def save_checkpoint(self, epoch, is_best):
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),  # holds the LR scheduler's state too
            "epoch": epoch,  # epochs completed
            "best_valid_acc": self.best_valid_acc,
            "counter": self.counter,
            "rng_state": paddle.get_rng_state(),
            "config": vars(self.config),
        }
        state[DIGEST] = weights_digest(state["model"])
        # The best first: a kill or a full disk between the two writes then leaves the
        # last checkpoint of the epoch before, and resuming from it repeats this epoch
        # exactly, best checkpoint included. The other order would leave a last
        # checkpoint that records a best the best checkpoint does not hold.
        if is_best:
            atomic_save(state, self.ckpt_path(best=True))
        atomic_save(state, self.ckpt_path(best=False))

    def restore(self, best, path=None):
        """Load the best or last checkpoint, or the one at path: weights, progress, RNG
        state and, to train on, the optimizer's and scheduler's state. Returns its path."""
        path = path or self.ckpt_path(best)
        training = self.config.is_train  # testing needs neither Adam nor the schedule
        state = load_checkpoint(path, self.config, self.model, TRAIN_KEYS if training else TEST_KEYS)
        self.model.set_state_dict(state["model"])
        if training:
            saved = state["config"]
            changed = [f"--{name} {saved[name]} (checkpoint) vs {getattr(self.config, name)}"
                       for name in SPLIT_OPTIONS
                       if name in saved and saved[name] != getattr(self.config, name)]
            if changed:
                raise CheckpointError(f"{path} was trained on another split of the images: "
                                      + ", ".join(changed))
            schedule = saved["lr_schedule"]
            if schedule != self.config.lr_schedule:
                raise CheckpointError(f"{path} was trained with --lr_schedule {schedule}: "
                                      f"resume it with the same schedule")
            if schedule == "cosine" and saved["epochs"] != self.config.epochs:
                raise CheckpointError(f"{path} anneals its learning rate over --epochs "
                                      f"{saved['epochs']}: resume it with the same --epochs")
            self.optimizer.set_state_dict(state["optimizer"])  # restores the scheduler too
            self.counter = state["counter"]
        self.start_epoch, self.best_valid_acc = state["epoch"], state["best_valid_acc"]
        paddle.set_rng_state(state["rng_state"])
        return path

    def train(self, train_loader, valid_loader, test_loader=None):
        """Train from the start or a checkpoint to --epochs. With --test_freq, also test
        every so many epochs and log test_err, which never chooses the best model.
        The output folders are this run's alone meanwhile (see lock_folder)."""
        config = self.config
        with contextlib.ExitStack() as locks:  # released however the run ends, kill -9 too
            if self.main_process:
                check_writable((config.ckpt_dir, config.logs_dir, config.plot_dir), config.ckpt_dir,
                               sum(int(p.size) for p in self.model.parameters()))
                try:
                    folders = (config.ckpt_dir, config.logs_dir, config.plot_dir)
                    for real in dict.fromkeys(os.path.realpath(folder) for folder in folders):
                        locks.enter_context(lock_folder(real, self.name))  # each folder once
                except FolderLocked as err:
                    raise RunError(str(err)) from None
            # From here on a signal stops the run after the current step (see on_signal).
            handlers = {sig: signal.signal(sig, self.on_signal)
                        for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                self.run_epochs(train_loader, valid_loader, test_loader)
            finally:
                for sig, handler in handlers.items():
                    signal.signal(sig, handler)

    def run_epochs(self, train_loader, valid_loader, test_loader):
        config = self.config
        num_train, num_valid = len(train_loader.dataset), len(valid_loader.dataset)
        log_path = os.path.join(config.logs_dir, f"{self.name}.log")
        if config.resume:
            path = self.restore(config.best)
            self.say(f"[*] Resuming from {path} after epoch {self.start_epoch} "
                     f"(best valid acc {self.best_valid_acc:.2f}%)")
        writer = NoWriter()
        if self.main_process:
            self.prepare_files(log_path)
            with contextlib.redirect_stdout(io.StringIO()):  # VisualDL announces the append
                # One record file per run, which a resumed run appends to: VisualDL shows
                # only the newest file of a folder.
                writer = LogWriter(logdir=os.path.join(config.logs_dir, "vdl", self.name),
                                   file_name=VDL_RECORDS)
        self.say(f"[*] Train on {num_train} images, validate on {num_valid} (M={config.M})"
                 + (f", in {paddle.distributed.get_world_size()} processes"
                    if paddle.distributed.get_world_size() > 1 else ""))
        if self.start_epoch >= config.epochs:
            self.say(f"[!] Nothing to do: {self.start_epoch} of --epochs {config.epochs} are "
                     f"done; raise --epochs to train on")
        try:
            for epoch in range(self.start_epoch, config.epochs):
                if self.stop_signal:  # it came during the last validation or checkpoint
                    raise self.interrupted(epoch, None, None)
                lr = self.optimizer.get_lr()
                start = time.time()
                train_loss, train_acc, largest = self.train_one_epoch(epoch, train_loader,
                                                                      num_train)
                train_seconds = time.time() - start
                with same_rng_everywhere():
                    valid_loss, valid_acc, _, _ = evaluate(
                        self.model, valid_loader, config.M,
                        self.plot_saver(epoch) if self.main_process else None)
                seconds = time.time() - start
                if self.config.lr_schedule == "cosine":
                    self.scheduler.step()
                else:
                    self.scheduler.step(valid_acc)

                if not math.isfinite(valid_loss) or not weights_finite(self.model):
                    raise RunError(f"the weights diverged in epoch {epoch + 1} (validation loss "
                                   f"{valid_loss}); stopped without saving them: "
                                   + self.kept_checkpoints(epoch) + "; try a lower --init_lr")
                is_best = valid_acc > self.best_valid_acc
                self.counter = 0 if is_best else self.counter + 1
                self.best_valid_acc = max(self.best_valid_acc, valid_acc)

                # The largest batch loss and its largest term: a spike that one epoch's
                # mean hides, and whether the classifier, the baseline or REINFORCE made it.
                term = ("nll", "mse", "reinforce")[int(np.argmax(np.abs(largest[1:])))]
                line = (f"epoch {epoch + 1} lr {lr:.3e} train_loss {train_loss:.4f} "
                        f"max_batch_loss {largest[0]:.4f} max_batch_term {term} "
                        f"train_acc {train_acc:.2f} valid_loss {valid_loss:.4f} valid_acc "
                        f"{valid_acc:.2f} valid_err {100 - valid_acc:.2f} seconds {seconds:.1f} "
                        f"samples_per_s {num_train / train_seconds:.0f}")
                if test_loader is not None and (epoch + 1) % config.test_freq == 0:
                    line += self.test_line(test_loader, epoch, is_best, writer)
                if self.main_process:
                    # The log line goes first: a run killed between the two repeats this
                    # line when resumed, rather than missing it.
                    try:
                        append_line(log_path, line)
                        self.save_checkpoint(epoch + 1, is_best)
                    except OSError as err:
                        raise RunError(f"could not write after epoch {epoch + 1} ({err.strerror}: "
                                       f"{err.filename}); every checkpoint on disk is whole, the "
                                       f"last one of epoch {epoch} or {epoch + 1}") from None
                    tqdm.write(line + (" [*]" if is_best else ""))
                for tag, value in [("train/loss", train_loss), ("train/max_batch_loss", largest[0]),
                                   ("train/acc", train_acc), ("valid/loss", valid_loss),
                                   ("valid/acc", valid_acc), ("lr", lr)]:
                    writer.add_scalar(tag, value, epoch + 1)

                # A cosine schedule is its length: stopping it early would cut it short.
                if config.lr_schedule == "plateau" and self.counter > config.train_patience:
                    self.say(f"[!] No improvement in {self.counter} epochs, stopping training.")
                    break
        finally:
            writer.close()

    def say(self, message):
        """Print a line, from rank 0 alone in a data-parallel run."""
        if self.main_process:
            print(message)

    def prepare_files(self, log_path):
        """Clear what a killed or an earlier run left, then start the log with this run's
        options and versions."""
        config = self.config
        remove_files(config.ckpt_dir, f"{self.name}_*.pdparams.tmp*")  # of a killed run
        if not config.resume:
            if os.path.exists(self.ckpt_path(best=False)):
                print(f"[!] Starting afresh: {self.name}'s checkpoints in {config.ckpt_dir} will "
                      f"be overwritten (use --resume=True to continue them)")
            remove_old_glimpses(os.path.join(config.plot_dir, self.name))
            remove_files(os.path.join(config.logs_dir, "vdl", self.name), VDL_RECORDS)
            if os.path.exists(log_path):
                os.remove(log_path)
        event = f"resumed after epoch {self.start_epoch}" if config.resume else "started"
        try:
            append_line(log_path, f"# {event} {time.strftime('%Y-%m-%d %H:%M:%S')} paddle "
                                  f"{paddle.__version__} on {paddle.device.get_device()} "
                                  f"MKL_DEBUG_CPU_TYPE={os.environ.get('MKL_DEBUG_CPU_TYPE', '')} "
                                  f"processes {paddle.distributed.get_world_size()} "
                                  f"{json.dumps(vars(config))}")
        except OSError as err:
            raise RunError(f"could not write {log_path} ({err.strerror})") from None

    def test_line(self, test_loader, epoch, is_best, writer):
        """Test errors for epoch's log line: test_err of this epoch's model and
        selected_test_err of the validation-selected one (the best checkpoint so far),
        the figure that time to accuracy is read from. Neither chooses anything.
        The selected figure is the one `main.py --is_train=False` prints for that
        checkpoint: both draw the glimpses from the RNG state saved in it."""
        # Testing is not training time (`seconds` is taken already), and its glimpse
        # draws come from a copy of the RNG, so the run trains as without it.
        rng_state = paddle.get_rng_state()  # what this epoch's checkpoint will hold
        test_err = 100 - evaluate(self.model, test_loader, self.config.M)[1]
        if is_best:
            self.selected_test = (epoch + 1, test_err)
        else:
            best = load_checkpoint(self.ckpt_path(best=True), self.config, self.model)
            if self.selected_test is None or self.selected_test[0] != best["epoch"]:
                selected = build_model(self.config)
                selected.set_state_dict(best["model"])
                paddle.set_rng_state(best["rng_state"])
                self.selected_test = (best["epoch"],
                                      100 - evaluate(selected, test_loader, self.config.M)[1])
        paddle.set_rng_state(rng_state)
        writer.add_scalar("test/err", test_err, epoch + 1)
        writer.add_scalar("test/selected_err", self.selected_test[1], epoch + 1)
        return (f" test_err {test_err:.2f} selected_test_err {self.selected_test[1]:.2f}"
                f" selected_epoch {self.selected_test[0]}")

    def on_signal(self, signum, frame):
        if self.stop_signal is not None:
            # The second one: leave at once. Checkpoints are written to a temporary
            # file and renamed, so none on disk is ever half-written.
            raise SystemExit(128 + signum)
        self.stop_signal = signum
        tqdm.write(f"[!] {signal.Signals(signum).name}: stopping after this step "
                   f"(send it again to stop at once)")

    def interrupted(self, epoch, step, steps):
        """The RunError that ends a run stopped by a signal in epoch (0-based) at step."""
        name = signal.Signals(self.stop_signal).name
        where = (f"in epoch {epoch + 1} (step {step} of {steps}), whose partial work is dropped"
                 if step is not None else f"before epoch {epoch + 1}")
        path = self.ckpt_path(best=False)
        if os.path.exists(path) and epoch > 0:
            advice = (f"the last checkpoint is {path} (after epoch {epoch}); continue with "
                      f"python main.py --resume=True --best=False and the same options")
        else:
            advice = "no epoch was finished, so there is no checkpoint to resume: start again"
        return RunError(f"stopped by {name} {where}; {advice}", exit_code=128 + self.stop_signal)

    def train_one_epoch(self, epoch, loader, num_train):
        """One pass over the training images. Returns mean loss, accuracy (%) and the
        largest batch loss with its terms, (loss, nll, mse, 0.01 * reinforce)."""
        self.model.train()
        if isinstance(loader.batch_sampler.sampler, EpochShuffler):
            loader.batch_sampler.sampler.set_epoch(epoch)
        if isinstance(loader.dataset, CanvasDataset):
            loader.dataset.set_epoch(epoch)  # new canvases with --fresh_canvases
        total_loss = total_correct = 0.0
        largest = (-math.inf, 0.0, 0.0, 0.0)
        seen = 0
        start = time.time()
        with tqdm(total=num_train, desc=f"Epoch {epoch + 1}/{self.config.epochs}", unit="img",
                  leave=False, disable=not self.main_process) as bar:
            for i, (x, y) in enumerate(loader):
                try:
                    loss = self.train_step(x, y)
                except NonFiniteError as err:
                    raise RunError(f"{err} at epoch {epoch + 1}, step {i + 1} of {len(loader)}: "
                                   f"stopped before updating the weights; "
                                   + self.kept_checkpoints(epoch)) from None
                if self.stop_signal:
                    raise self.interrupted(epoch, i + 1, len(loader))
                total_loss += loss.total.detach() * len(y)
                if float(loss.total) > largest[0]:  # already synchronised by check_finite
                    largest = (float(loss.total), float(loss.action), float(loss.baseline),
                               0.01 * float(loss.reinforce))
                total_correct += loss.reward.sum()
                seen += len(y)
                bar.update(len(y) * paddle.distributed.get_world_size())
                if (i + 1) % self.config.print_freq == 0:
                    episodes = seen * self.config.train_paths
                    bar.set_postfix(loss=f"{float(total_loss) / seen:.3f}",
                                    acc=f"{100 * float(total_correct) / episodes:.1f}",
                                    samples_per_s=f"{seen / (time.time() - start):.0f}")
        # Every path of an image is an episode: the accuracy is over all of them.
        total_correct = float(total_correct) / self.config.train_paths
        total_loss, total_correct, seen = sum_over_processes(float(total_loss), total_correct, seen)
        return total_loss / seen, 100.0 * total_correct / seen, largest_over_processes(largest)

    def train_step(self, x, y):
        """One Adam step on a batch. Returns its Loss; raises NonFiniteError, before
        the update, if the loss or a gradient is NaN or infinite."""
        paths = self.config.train_paths
        log_probas, log_pi, baselines, _ = self.forward(x, repeats=paths)
        labels = y if paths == 1 else paddle.tile(y, [paths])  # row m * B + b: path m of image b
        loss = ram_loss(log_probas, log_pi, baselines, labels, paths)
        self.optimizer.clear_grad()
        loss.total.backward()
        self.check_finite(loss.total)
        self.optimizer.step()
        return loss

    @staticmethod
    def kept_checkpoints(epoch):
        """What is on disk when epoch (0-based) fails."""
        return (f"the checkpoints on disk are those of epoch {epoch}" if epoch
                else "no epoch had finished, so no checkpoint was written")

    def check_finite(self, loss):
        # One sum of the loss and every gradient: a NaN or an infinity anywhere makes
        # it non-finite (inf - inf is NaN), for one synchronisation per step.
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if not math.isfinite(float(paddle.add_n([loss] + [g.sum() for g in grads]))):
            what = "the loss" if not math.isfinite(float(loss)) else "a gradient"
            raise NonFiniteError(f"{what} is not finite ({float(loss)} for the loss)")

    def plot_saver(self, epoch):
        """A callback that stores the images, glimpse locations, labels and predictions
        of the first validation batch (up to 9 images, the same every epoch) and the
        retina's options, every --plot_freq epochs; None on other epochs."""
        if (epoch + 1) % self.config.plot_freq != 0 or self.config.model != "ram":
            return None  # a baseline takes no glimpses
        folder = os.path.join(self.config.plot_dir, self.name)

        def save(x, y, locations, predicted):
            n = min(9, len(y))
            arrays = dict(images=x[:n].numpy(), labels=y[:n].numpy(),
                          locations=locations[:n].numpy(), predicted=predicted[:n].numpy(),
                          patch_size=self.config.patch_size, num_patches=self.config.num_patches,
                          glimpse_scale=self.config.glimpse_scale,
                          standardised=self.config.dataset == "mnist")

            def write(tmp):
                with open(tmp, "wb") as f:  # a file, so that NumPy adds no .npz to the name
                    np.savez_compressed(f, **arrays)

            path = os.path.join(folder, f"glimpses_epoch{epoch + 1}.npz")
            try:
                os.makedirs(folder, exist_ok=True)
                atomic_write(path, write)
            except OSError as err:
                raise RunError(f"could not write {path} ({err.strerror}) in epoch {epoch + 1}; "
                               + self.kept_checkpoints(epoch)) from None
        return save

    def test(self, test_loader):
        """Evaluate --checkpoint, or the best (or last) checkpoint in --ckpt_dir, on the
        test set and write its result."""
        path = self.restore(self.config.best, self.config.checkpoint)
        M = self.config.M
        print(f"[*] Loaded {path} (epoch {self.start_epoch}, best valid acc "
              f"{self.best_valid_acc:.2f}%); testing with M={M}")
        _, acc, correct, total = evaluate(self.model, test_loader, M)
        print(f"[*] Test Acc: {correct}/{total} ({acc:.2f}% - {100 - acc:.2f}%)")
        result = {"checkpoint": path, "epoch": self.start_epoch, "M": M, "correct": correct,
                  "total": total, "test_error": round(100.0 * (total - correct) / total, 4)}
        out = os.path.join(self.config.logs_dir, f"{self.name}_test.json")
        try:
            os.makedirs(self.config.logs_dir, exist_ok=True)
            atomic_write_text(json.dumps(result, indent=2) + "\n", out)
        except OSError as err:
            raise RunError(f"tested, but could not write {out} ({err.strerror}); the figure "
                           f"is the line above") from None
        return result
