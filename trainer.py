"""Training, validation and test of a model, or of the game's agent, as main.py's options
say: the epochs, their log lines, checkpoints and curves, and what stops them."""
import contextlib
import math
import os
import signal
import time
from typing import NamedTuple

import numpy as np
import paddle
from tqdm import tqdm

import checkpoint
from catch import FRAMES, SCREEN_SCALE
from checkpoint import TEST_KEYS, TRAIN_KEYS, RunFolder
from config import run_name, sections
from model import (ModelConfig, build_model, evaluate, evaluate_games, fovea_on_ball, game_loss,
                   make_optimizer, play, ram_loss)
from utils import StopSignals, append_line, max_over_processes, same_rng_everywhere, sum_over_processes


def weights_finite(model):
    """Whether every weight of model is finite, in one sum (inf - inf is NaN)."""
    return math.isfinite(float(paddle.add_n([p.sum() for p in model.parameters()])))


class RunError(Exception):
    """Training stopped: a signal, a non-finite loss or gradient, a folder or disk that
    cannot take the files. The message is one line; exit_code is for the shell."""

    def __init__(self, message, exit_code=1):
        super().__init__(message)
        self.exit_code = exit_code


class EpochFigures(NamedTuple):
    """What an epoch's log line records."""
    lr: float
    train_loss: float  # the mean over the epoch's batches
    largest: "BatchLoss"  # the largest batch loss and its terms
    train_acc: float  # %, over every training episode
    valid_loss: float
    valid_acc: float  # %, with M paths an image
    seconds: float  # training and validation
    samples_per_s: float  # training images (or frames) a second

    def log_line(self, epoch, game):
        """The run's log line of epoch (0-based). The largest batch loss and its largest
        term: a spike that one epoch's mean hides, and whether the classifier (the game:
        its entropy), the baseline or REINFORCE made it."""
        return (f"epoch {epoch + 1} lr {self.lr:.3e} train_loss {self.train_loss:.4f} "
                f"max_batch_loss {self.largest.loss:.4f} max_batch_term "
                f"{self.largest.largest_term(game)} train_acc {self.train_acc:.2f} valid_loss "
                f"{self.valid_loss:.4f} valid_acc {self.valid_acc:.2f} valid_err "
                f"{100 - self.valid_acc:.2f} seconds {self.seconds:.1f} samples_per_s "
                f"{self.samples_per_s:.0f}")

    def terminal_line(self, epoch, epochs, is_best, game):
        what = ("catch rate", "frames") if game else ("acc", "images")
        return (f"epoch {epoch + 1}/{epochs}  train loss {self.train_loss:.3f} {what[0]} "
                f"{self.train_acc:.1f}%  valid {what[0]} {self.valid_acc:.2f}%"
                f"{' (best)' if is_best else ''}  {self.seconds:.0f} s, "
                f"{self.samples_per_s:,.0f} {what[1]}/s")


class NonFiniteError(Exception):
    """The loss or a gradient of this step is NaN or infinite."""


class BatchLoss(NamedTuple):
    """One batch's loss and its terms, as they add up: loss = nll + mse + reinforce."""
    loss: float
    nll: float        # the classifier's (the game's: its entropy term)
    mse: float        # the baseline's
    reinforce: float  # 0.01 x REINFORCE's

    def largest_term(self, game=False):
        return ("entropy" if game else "nll", "mse", "reinforce")[int(np.argmax(np.abs(self[1:])))]


class NoWriter:
    """The VisualDL writer of the other processes of a data-parallel run: it writes nowhere
    (rank 0 writes the run's files)."""

    def add_scalar(self, tag, value, step):
        pass


def kept_checkpoints(epoch):
    """What is on disk when epoch (0-based) fails."""
    return (f"the checkpoints on disk are those of epoch {epoch}" if epoch
            else "no epoch had finished, so no checkpoint was written")


def check_finite(model, loss):
    """Raise NonFiniteError if the loss or a gradient of model is NaN or infinite: one sum
    of them all (inf - inf is NaN), for one synchronisation per step."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not math.isfinite(float(paddle.add_n([loss] + [g.sum() for g in grads]))):
        what = "the loss" if not math.isfinite(float(loss)) else "a gradient"
        raise NonFiniteError(f"{what} is not finite ({float(loss)} for the loss)")


def interrupted(signum, epoch, step, steps, folder):
    """The RunError that ends a run stopped by signal signum in epoch (0-based) at step (None:
    between epochs), its files in folder (a RunFolder)."""
    where = (f"in epoch {epoch + 1} (step {step} of {steps}), whose partial work is dropped"
             if step is not None else f"before epoch {epoch + 1}")
    if os.path.exists(folder.last) and epoch > 0:
        advice = (f"the last checkpoint is {folder.last} (after epoch {epoch}); continue with "
                  f"python main.py --resume=True --best=False and the same options")
    else:
        advice = (f"no epoch was finished, so there is no checkpoint to resume: "
                  f"{folder.start_afresh()}")
    return RunError(f"stopped by {signal.Signals(signum).name} {where}; {advice}",
                    exit_code=128 + signum)


def glimpse_saver(config, folder, epoch, game):
    """A callback that stores, every --plot_freq epochs, the glimpses of the first validation
    batch (up to 9 images, the same every epoch: their images, labels, predictions and
    locations; of a game, its first 9 games' screens, locations, actions and rewards) with
    the retina's options, in the run folder's glimpses_epoch<N>.npz; None on other epochs."""
    if (epoch + 1) % config.plot_freq != 0 or config.model != "ram":
        return None  # a baseline takes no glimpses
    retina = dict(patch_size=config.patch_size, num_patches=config.num_patches,
                  glimpse_scale=config.glimpse_scale)

    def save_games(i, episode):
        if i == 0:
            write_npz(dict(frames=episode.seen[:9], locations=episode.locations[:9].numpy(),
                           actions=episode.actions[:9].numpy(),
                           rewards=episode.rewards[:9].numpy(), **retina))

    def save(x, y, locations, predicted):
        n = min(9, len(y))
        write_npz(dict(images=x[:n].numpy(), labels=y[:n].numpy(),
                       locations=locations[:n].numpy(), predicted=predicted[:n].numpy(),
                       standardised=config.dataset == "mnist", **retina))

    def write_npz(arrays):
        try:
            folder.save_glimpses(epoch + 1, arrays)
        except OSError as err:
            raise RunError(f"could not write {folder.glimpses(epoch + 1)} ({err.strerror}) in "
                           f"epoch {epoch + 1}; " + kept_checkpoints(epoch)) from None
    return save_games if game else save


class Trainer:
    """Trains and evaluates one model as main.py's options `config` say, in the run's
    folder (checkpoint.RunFolder: checkpoints, log, curves, glimpses and test result)."""

    def __init__(self, config):
        self.config = config
        self.name = run_name(config)
        self.folder = RunFolder(config, self.name)
        self.model = build_model(ModelConfig.from_options(config))
        # A data-parallel run (paddle.distributed.launch) has one process per shard of
        # each batch; DataParallel averages their gradients in backward. Rank 0 alone
        # writes files and shows progress.
        self.main_process = paddle.distributed.get_rank() == 0
        self.game = config.dataset == "catch"  # games to play, not images to classify
        self.forward = self.model
        if paddle.distributed.get_world_size() > 1:
            # With one glimpse, h2h's weight is never used (h_0 = 0: see CoreNetwork).
            self.forward = paddle.DataParallel(self.model,
                                               find_unused_parameters=config.num_glimpses == 1)
        self.scheduler, self.optimizer = make_optimizer(config, self.model.parameters())
        # Below any accuracy, so that the first epoch always writes a best checkpoint.
        self.start_epoch, self.best_valid_acc, self.counter = 0, -1.0, 0
        self.signals = StopSignals()  # SIGINT or SIGTERM, once one has arrived
        self.selected_test = None  # (epoch, test error) of the best checkpoint, once tested
        self.data = None  # what the training split is made of (data_loader.data_digest)

    def ckpt_path(self, best):
        return self.folder.best if best else self.folder.last

    def save_checkpoint(self, epoch, is_best):
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),  # holds the LR scheduler's state too
            "epoch": epoch,  # epochs completed
            "best_valid_acc": self.best_valid_acc,
            "counter": self.counter,
            "rng_state": paddle.get_rng_state(),
            "config": vars(self.config),
            "data": self.data,
            "processes": paddle.distributed.get_world_size(),
        }
        # The best first: a kill or a full disk between the two writes then leaves the
        # last checkpoint of the epoch before, and resuming from it repeats this epoch
        # exactly, best checkpoint included. The other order would leave a last
        # checkpoint that records a best the best checkpoint does not hold.
        if is_best:
            checkpoint.save(state, self.ckpt_path(best=True))
        checkpoint.save(state, self.ckpt_path(best=False))

    def restore(self, best, path=None, state=None):
        """Load the best or last checkpoint, or the one at path (already read: state):
        weights, progress, RNG state and, to train on, the optimizer's and scheduler's
        state. Returns its path."""
        if path is None and self.main_process:  # the run's own
            for old, new in self.folder.adopt_old_layout(self.config):
                self.say(f"[*] Moved {old} to {new}: one folder a run, from 2026-12-06 on")
        path = path or self.ckpt_path(best)
        training = self.config.is_train  # testing needs neither Adam nor the schedule
        if state is None:
            state = checkpoint.read(path, TRAIN_KEYS if training else TEST_KEYS)
        checkpoint.fit(state, path, self.model, sections(self.config), resuming=training,
                       data=self.data)
        self.model.set_state_dict(state["model"])
        if training:
            for caveat in checkpoint.resume_caveats(state, path, self.data, self.config.batch_size):
                self.say(f"[!] {caveat}")
            self.optimizer.set_state_dict(state["optimizer"])  # restores the scheduler too
            self.counter = state["counter"]
        self.start_epoch, self.best_valid_acc = state["epoch"], state["best_valid_acc"]
        paddle.set_rng_state(state["rng_state"])
        return path

    def train(self, splits):
        """Train on splits (data_loader.Splits) from the start or a checkpoint to --epochs.
        With a test split (--test_freq), also test every so many epochs and log test_err,
        which never chooses the best model.
        The run's folder is its alone meanwhile (RunFolder.training), and a signal
        stops it after the current step (see StopSignals)."""
        config = self.config
        self.data = splits.digest
        if config.resume:
            path = self.restore(config.best)
            self.say(f"[*] Resuming from {path} after epoch {self.start_epoch} "
                     f"(best valid acc {self.best_valid_acc:.2f}%)")
        num_weights = sum(int(p.size) for p in self.model.parameters())
        samples = splits.samples_per_epoch()
        self.frames_per_epoch = samples if self.game else 0
        files = (self.folder.training(config, num_weights, self.start_epoch) if self.main_process
                 else contextlib.nullcontext(NoWriter()))
        with files as writer, self.signals:
            validation = (f"{config.valid_games} games" if self.game
                          else f"{len(splits.valid.dataset)} (M={config.M})")
            self.say(f"[*] Run {self.name}: train on {samples:,} {'frames' if self.game else 'images'}"
                     f" an epoch, validate on {validation}; log "
                     f"{self.folder.log if self.main_process else ''}"
                     + (f", in {paddle.distributed.get_world_size()} processes"
                        if paddle.distributed.get_world_size() > 1 else ""))
            if self.start_epoch >= config.epochs:
                self.say(f"[!] Nothing to do: {self.start_epoch} of --epochs {config.epochs} are "
                         f"done; raise --epochs to train on")
            for epoch in range(self.start_epoch, config.epochs):
                if self.signals.received:  # it came during the last validation or checkpoint
                    raise interrupted(self.signals.received, epoch, None, None, self.folder)
                lr = self.optimizer.get_lr()
                start = time.time()
                splits.set_epoch(epoch)
                train_loss, train_acc, largest = self.train_one_epoch(epoch, splits.train, samples)
                samples_per_s = samples / (time.time() - start)
                with same_rng_everywhere():
                    valid_loss, valid_acc, _, _ = self.evaluate(
                        self.progress(splits.valid, "validating"),
                        glimpse_saver(config, self.folder, epoch, self.game) if self.main_process
                        else None)
                seconds = time.time() - start
                if config.lr_schedule == "cosine":
                    self.scheduler.step()
                elif config.lr_schedule == "plateau":
                    self.scheduler.step(valid_acc)
                if not math.isfinite(valid_loss) or not weights_finite(self.model):
                    raise RunError(f"the weights diverged in epoch {epoch + 1} (validation loss "
                                   f"{valid_loss}); stopped without saving them: "
                                   + kept_checkpoints(epoch) + "; try a lower --init_lr")
                is_best = valid_acc > self.best_valid_acc
                self.counter = 0 if is_best else self.counter + 1
                self.best_valid_acc = max(self.best_valid_acc, valid_acc)
                self.record(epoch, is_best, writer, splits.test,
                            EpochFigures(lr, train_loss, largest, train_acc, valid_loss, valid_acc,
                                         seconds, samples_per_s))

                # An annealing schedule is its length: stopping it early would cut it short.
                if config.lr_schedule == "plateau" and self.counter > config.train_patience:
                    self.say(f"[!] No improvement in {self.counter} epochs, stopping training.")
                    break

    def record(self, epoch, is_best, writer, test_loader, figures):
        """The epoch's figures into its log line (with the test errors every --test_freq
        epochs), its checkpoints, a short line on the terminal and the VisualDL scalars."""
        line = figures.log_line(epoch, self.game)
        if test_loader is not None and (epoch + 1) % self.config.test_freq == 0:
            line += self.test_line(test_loader, epoch, is_best, writer)
        if self.main_process:
            self.end_epoch(self.folder.log, line, epoch, is_best)
            tqdm.write(figures.terminal_line(epoch, self.config.epochs, is_best, self.game))
        for tag, value in [("train/loss", figures.train_loss), ("train/max_batch_loss", figures.largest.loss),
                           ("train/acc", figures.train_acc), ("valid/loss", figures.valid_loss),
                           ("valid/acc", figures.valid_acc), ("lr", figures.lr)]:
            # the game's curves against the frames played, the images' against the epochs
            writer.add_scalar(tag, value, (epoch + 1) * self.frames_per_epoch or epoch + 1)

    def end_epoch(self, log_path, line, epoch, is_best):
        """Write epoch's log line (the full record), then its checkpoints. The log line goes
        first: a run killed between the two repeats this line when resumed, rather than
        missing it."""
        try:
            append_line(log_path, line)
            self.save_checkpoint(epoch + 1, is_best)
        except OSError as err:
            raise RunError(f"could not write after epoch {epoch + 1} ({err.strerror}: "
                           f"{err.filename}); every checkpoint on disk is whole, the "
                           f"last one of epoch {epoch} or {epoch + 1}") from None

    def progress(self, loader, what):
        """loader, with a progress bar of its batches on rank 0 that vanishes when done."""
        return tqdm(loader, desc=what, unit="batch", leave=False, disable=not self.main_process)

    def say(self, message):
        """Print a line, from rank 0 alone in a data-parallel run."""
        if self.main_process:
            print(message)

    def test_line(self, test_loader, epoch, is_best, writer):
        """Test errors for epoch's log line: test_err of this epoch's model and
        selected_test_err of the validation-selected one (the best checkpoint so far),
        the figure that time to accuracy is read from. Neither chooses anything.
        The selected figure is the one `main.py --is_train=False` prints for that
        checkpoint: both draw the glimpses from the RNG state saved in it."""
        # Testing is not training time (`seconds` is taken already), and its glimpse
        # draws come from a copy of the RNG, so the run trains as without it.
        rng_state = paddle.get_rng_state()  # what this epoch's checkpoint will hold
        test_err = 100 - self.evaluate(self.progress(test_loader, "testing"))[1]
        if is_best:
            self.selected_test = (epoch + 1, test_err)
        else:
            best = checkpoint.load(self.ckpt_path(best=True), self.model, sections(self.config))
            if self.selected_test is None or self.selected_test[0] != best["epoch"]:
                selected = build_model(ModelConfig.from_options(self.config))
                selected.set_state_dict(best["model"])
                paddle.set_rng_state(best["rng_state"])
                self.selected_test = (best["epoch"],
                                      100 - self.evaluate(test_loader, model=selected)[1])
        paddle.set_rng_state(rng_state)
        writer.add_scalar("test/err", test_err, epoch + 1)
        writer.add_scalar("test/selected_err", self.selected_test[1], epoch + 1)
        return (f" test_err {test_err:.2f} selected_test_err {self.selected_test[1]:.2f}"
                f" selected_epoch {self.selected_test[0]}")

    def train_one_epoch(self, epoch, loader, samples):
        """One pass over the training images (or an epoch's games): `samples` images (or
        frames: Splits.samples_per_epoch). Returns mean loss, accuracy (%: of the game, the
        catch rate) and the BatchLoss of the largest batch loss."""
        self.model.train()
        total_loss = total_correct = 0.0
        largest = BatchLoss(-math.inf, 0.0, 0.0, 0.0)
        seen = 0
        # an image's frames: 1; a game's, each of its --train_paths plays
        unit, per_batch = ("frame", FRAMES * self.config.train_paths) if self.game else ("img", 1)
        with tqdm(total=samples, desc=f"Epoch {epoch + 1}/{self.config.epochs}",
                  unit=unit, leave=False, disable=not self.main_process) as bar:
            for i, (x, y) in enumerate(loader):
                size = len(y) // self.config.train_paths if self.game else len(y)  # images, or games
                try:
                    loss = self.train_step(x, y)
                except NonFiniteError as err:
                    raise RunError(f"{err} at epoch {epoch + 1}, step {i + 1} of {len(loader)}: "
                                   f"stopped before updating the weights; "
                                   + kept_checkpoints(epoch)) from None
                if self.config.lr_schedule == "linear":  # the paper's anneal, at every step
                    self.scheduler.step((epoch * len(loader) + i + 1) / len(loader))
                if self.signals.received:
                    raise interrupted(self.signals.received, epoch, i + 1, len(loader),
                                      self.folder)
                total_loss += loss.total.detach() * size
                if float(loss.total) > largest.loss:  # already synchronised by check_finite
                    largest = BatchLoss(float(loss.total), float(loss.action),
                                        float(loss.baseline),
                                        (1 if self.game else 0.01) * float(loss.reinforce))
                total_correct += loss.reward.sum()
                seen += size
                bar.update(size * per_batch * paddle.distributed.get_world_size())
                if (i + 1) % self.config.print_freq == 0:
                    episodes = seen * self.config.train_paths
                    bar.set_postfix(loss=f"{float(total_loss) / seen:.3f}",
                                    acc=f"{100 * float(total_correct) / episodes:.1f}")
        # Every path of an image is an episode: the accuracy is over all of them.
        total_correct = float(total_correct) / self.config.train_paths
        total_loss, total_correct, seen = sum_over_processes(float(total_loss), total_correct, seen)
        return total_loss / seen, 100.0 * total_correct / seen, BatchLoss(*max_over_processes(largest))

    def train_step(self, x, y):
        """One optimizer step on a batch of images x and labels y, or (the game) on one game
        played in each of the games x from their first screens y. Returns its Loss; raises
        NonFiniteError, before the update, if the loss or a gradient is NaN or infinite."""
        if self.game:
            loss = game_loss(play(self.model, x, y, scale=SCREEN_SCALE), self.config.train_paths,
                             self.config.entropy_weight)
        else:
            paths = self.config.train_paths
            log_probas, log_pi, baselines, _ = self.forward(x, repeats=paths)
            labels = y if paths == 1 else paddle.tile(y, [paths])  # row m * B + b: path m of image b
            loss = ram_loss(log_probas, log_pi, baselines, labels, paths)
        self.optimizer.clear_grad()
        loss.total.backward()
        check_finite(self.model, loss.total)
        self.optimizer.step()
        return loss

    def evaluate(self, loader, on_first_batch=None, model=None):
        """model.evaluate of the run's model (or `model`) on the images of loader with --M
        paths an image, or (the game) model.evaluate_games on its games: loss, accuracy (%),
        correct, count."""
        model = model or self.model
        if self.game:
            return evaluate_games(model, loader, on_first_batch, SCREEN_SCALE)
        return evaluate(model, loader, self.config.M, on_first_batch)

    def test(self, test_loader, state=None):
        """Evaluate --checkpoint (already read: state), or the best (or last) checkpoint
        in --ckpt_dir, on the test set and write its result."""
        path = self.restore(self.config.best, self.config.checkpoint, state)
        M = self.config.M
        how = f"playing {self.config.test_games} games" if self.game else f"testing with M={M}"
        print(f"[*] Loaded {path} (epoch {self.start_epoch}, best valid acc "
              f"{self.best_valid_acc:.2f}%); {how}")
        tracked = []  # the game's: whether each frame's fovea held the ball

        def track(i, episode):
            tracked.append(fovea_on_ball(episode, self.model.sensor.retina))

        _, acc, correct, total = self.evaluate(self.progress(test_loader, "testing"),
                                               track if self.game else None)
        result = {"checkpoint": path, "epoch": self.start_epoch, "M": M, "correct": correct,
                  "total": total, "test_error": round(100.0 * (total - correct) / total, 4)}
        if self.game:
            print(f"[*] Catch rate: {correct}/{total} ({acc:.2f}%)")
            by_row = np.concatenate(tracked).mean(axis=0)
            result = {**result, "M": None, "catch_rate": round(acc, 4),
                      "fovea_on_ball_by_row": [round(float(share), 4) for share in by_row]}
        else:
            print(f"[*] Test Acc: {correct}/{total} ({acc:.2f}% - {100 - acc:.2f}%)")
        out = self.folder.result_of(self.config.checkpoint)
        try:
            self.folder.save_result(result, out)
        except OSError as err:
            raise RunError(f"tested, but could not write {out} ({err.strerror}); the figure "
                           f"is the line above") from None
        return result
