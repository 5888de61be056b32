"""Training survives kills and signals, and refuses bad input in one line."""
import glob
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest

import trainer as trainer_module
from config import sections
from data_loader import get_train_valid_loaders
from tests.helpers import ROOT, tiny_args, tiny_config
from checkpoint import TRAIN_KEYS, CheckpointError, load
from model import ModelConfig, build_model
from trainer import RunError, Trainer

EPOCHS = 80  # of about 0.1 s each on a quiet machine: enough that 10 kills, each a few epochs
# after a start, do not reach the end even when the load falls after the straight run is timed
CKPT = "ram_3_4x4_2/ckpt.pdparams"


def command(folder, *extra):
    return [sys.executable, os.path.join(ROOT, "main.py"),
            *tiny_args(folder, "--epochs", str(EPOCHS), *extra)]


def weights(folder):
    state = paddle.load(str(folder / "ckpt" / CKPT))
    return {name: np.asarray(value) for name, value in state["model"].items()}


def checkpoint_epoch(folder):
    path = folder / "ckpt" / CKPT
    return paddle.load(str(path))["epoch"] if path.exists() else None


def headers(folder):
    """How many runs have reached their first epoch: each writes a '#' line first."""
    try:
        with open(folder / "logs" / "ram_3_4x4_2/train.log") as f:
            return sum(line.startswith("#") for line in f)
    except FileNotFoundError:
        return 0


def start_and_wait_for_training(folder, resume):
    """Start main.py (resuming if asked) and return once it has begun its epochs."""
    if not resume:
        # A fresh run replaces the log: an earlier run's header must not count as its own.
        (folder / "logs" / "ram_3_4x4_2/train.log").unlink(missing_ok=True)
    before = headers(folder)
    extra = ["--resume=True", "--best=False"] if resume else []
    process = subprocess.Popen(command(folder, *extra), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    while headers(folder) <= before and process.poll() is None:
        time.sleep(0.02)
    return process


def all_checkpoints_load(folder):
    config = tiny_config(folder)
    paths = glob.glob(str(folder / "ckpt" / "*" / "*.pdparams"))
    with paddle.utils.unique_name.guard():
        model = build_model(ModelConfig.from_options(config))
    for path in paths:
        load(path, model, sections(config), TRAIN_KEYS)  # raises CheckpointError on a damaged file
    return len(paths)


def resume_to_the_end_and_compare(folder, straight):
    done = subprocess.run(command(folder, "--resume=True", "--best=False"), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ours = weights(folder)
    for name, value in straight.items():
        np.testing.assert_array_equal(ours[name], value, name)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """The folder of an uninterrupted run."""
    folder = tmp_path_factory.mktemp("straight")
    subprocess.run(command(folder), check=True, capture_output=True, timeout=300)
    return folder


@pytest.fixture(scope="module")
def straight(straight_run):
    """The weights of an uninterrupted run."""
    return weights(straight_run)


def test_sigkill_at_random_moments_then_resume_gives_the_same_weights(tmp_path, straight,
                                                                       straight_run):
    # Kill within the first few epochs of each run, timed by this machine's own epochs
    # (a loaded machine is slower), so that kills land in steps, validations and writes.
    with open(straight_run / "logs" / "ram_3_4x4_2/train.log") as f:
        epoch_seconds = np.median([float(line.split(" seconds ")[1].split()[0]) for line in f
                                   if line.startswith("epoch")])
    rng = random.Random(0)
    kills, codes = 0, []
    for _ in range(40):
        resume = (tmp_path / "ckpt" / CKPT).exists()
        process = start_and_wait_for_training(tmp_path, resume)
        # The first run writes its first checkpoint before the kills begin: a kill before it
        # leaves nothing to resume, and that first epoch's set-up can outlast the window.
        while not resume and not (tmp_path / "ckpt" / CKPT).exists() and process.poll() is None:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 3.5 * max(epoch_seconds, 0.1)))
        if process.poll() is None:
            process.kill()
            kills += 1
        process.communicate(timeout=120)
        codes.append(process.returncode)
        all_checkpoints_load(tmp_path)
        if kills == 10:
            break
    assert kills == 10, (f"only {kills} kills in 40 starts; exit codes "
                         f"{codes[-8:]}, last epoch {checkpoint_epoch(tmp_path)} of {EPOCHS}")
    resume_to_the_end_and_compare(tmp_path, straight)


def test_sigterm_leaves_a_resumable_checkpoint_and_says_how(tmp_path, straight):
    process = start_and_wait_for_training(tmp_path, resume=False)
    while not (tmp_path / "ckpt" / CKPT).exists() and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    message = err.strip().splitlines()[-1]
    assert message.startswith("[!] stopped by SIGTERM") and "python main.py --resume=True" in message
    assert f"the last checkpoint is {tmp_path / 'ckpt' / CKPT}" in message
    assert all_checkpoints_load(tmp_path) == 2
    resume_to_the_end_and_compare(tmp_path, straight)


def test_a_second_sigint_exits_at_once_and_damages_nothing(tmp_path):
    process = start_and_wait_for_training(tmp_path, resume=False)
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGINT
    all_checkpoints_load(tmp_path)
    assert not glob.glob(str(tmp_path / "ckpt" / "*.tmp*"))


def train_in_process(config):
    trainer = Trainer(config)
    loaders = get_train_valid_loaders(config.data_dir, config.batch_size, config.random_seed,
                                      config.valid_size, config.shuffle, 0, config.train_subset)
    return trainer, loaders


def checkpoint_bytes(folder):
    return {path: open(path, "rb").read() for path in glob.glob(str(folder / "ckpt" / "*" / "*"))}


def train_one_epoch_in_process(folder):
    """Returns the bytes of the checkpoints it leaves."""
    with paddle.utils.unique_name.guard():
        trainer, loaders = train_in_process(tiny_config(folder, "--epochs", "1"))
        trainer.train(loaders)
    return checkpoint_bytes(folder)


def resume_in_process_expecting(folder, epochs, message):
    with paddle.utils.unique_name.guard():
        trainer, loaders = train_in_process(
            tiny_config(folder, "--epochs", str(epochs), "--resume=True", "--best=False"))
        with pytest.raises(RunError, match=message):
            trainer.train(loaders)


def test_a_nan_loss_stops_with_epoch_and_step_and_keeps_the_checkpoints(tmp_path, monkeypatch):
    before = train_one_epoch_in_process(tmp_path)
    real, steps = trainer_module.ram_loss, []

    def nan_on_third_training_step(*args):
        loss = real(*args)
        if paddle.is_grad_enabled():  # training, not validation
            steps.append(1)
            if len(steps) == 3:
                return loss._replace(total=loss.total * float("nan"))
        return loss

    monkeypatch.setattr(trainer_module, "ram_loss", nan_on_third_training_step)
    resume_in_process_expecting(tmp_path, 3, r"the loss is not finite .* at epoch 2, step 3 of 8")
    assert checkpoint_bytes(tmp_path) == before


def test_an_infinite_gradient_stops_before_the_update(tmp_path):
    with paddle.utils.unique_name.guard():
        trainer, loaders = train_in_process(tiny_config(tmp_path, "--epochs", "2"))
        trainer.model.rnn.h2h.weight.register_hook(lambda grad: grad / 0.0)
        with pytest.raises(RunError, match=r"a gradient is not finite .* at epoch 1, step 1 of 8"):
            trainer.train(loaders)
    assert np.isfinite(trainer.model.rnn.h2h.weight.numpy()).all()  # not updated
    assert not (tmp_path / "ckpt" / CKPT).exists()


def run_cli(folder, *extra):
    return subprocess.run([sys.executable, os.path.join(ROOT, "main.py"),
                           *tiny_args(folder, "--epochs", "1", *extra)],
                          capture_output=True, text=True, timeout=300)


def one_line_failure(done):
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0, done.stderr
    return done.stderr.strip()


def test_other_model_options_are_refused_by_name(tmp_path):
    assert run_cli(tmp_path).returncode == 0
    message = one_line_failure(run_cli(tmp_path, "--resume=True", "--hidden_size", "24",
                                       "--std", "0.1"))
    assert message.endswith("other options: --hidden_size 32 (checkpoint) vs 24, "
                            "--std 0.05 (checkpoint) vs 0.1")
    # So are those of the optimizer (a resumed run would silently keep the first rate), while
    # those that do not change what trains may differ.
    message = one_line_failure(run_cli(tmp_path, "--resume=True", "--init_lr", "1e-3"))
    assert message.endswith("other options: --init_lr 0.0003 (checkpoint) vs 0.001")
    assert run_cli(tmp_path, "--resume=True", "--epochs", "2", "--M", "3").returncode == 0


def test_an_unwritable_folder_is_refused_before_training(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    message = one_line_failure(run_cli(tmp_path, "--ckpt_dir", str(tmp_path / "a_file" / "ckpt")))
    assert message.startswith(f"[!] cannot write to {tmp_path / 'a_file' / 'ckpt'}")
    assert not (tmp_path / "logs" / "ram_3_4x4_2/train.log").exists()


def test_a_full_disk_is_refused_before_training(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage",
                        lambda path: shutil._ntuple_diskusage(10**9, 10**9, 4096))
    with paddle.utils.unique_name.guard():
        trainer, loaders = train_in_process(tiny_config(tmp_path, "--epochs", "1"))
        with pytest.raises(CheckpointError, match=r"only 0.0 MiB free for .*ckpt/ram_3_4x4_2; the checkpoints need"):
            trainer.train(loaders)


def test_a_disk_that_fills_up_leaves_no_half_written_file(tmp_path, monkeypatch):
    before = train_one_epoch_in_process(tmp_path)

    def save_half_then_fail(obj, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half")
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(paddle, "save", save_half_then_fail)
    resume_in_process_expecting(tmp_path, 2, r"could not write after epoch 2 \(No space left")
    assert checkpoint_bytes(tmp_path) == before  # no temporary file, nothing overwritten


# The paper's procedure (SGD with momentum, minibatches of 20, the rate annealed linearly at
# every step) and the game of Catch: the same guarantee, a kill -9 mid-epoch then --resume.
SGD = ["--optimizer", "sgd", "--momentum", "0.9", "--batch_size", "20", "--lr_schedule", "linear",
       "--init_lr", "0.05"]
GAME = ["--dataset", "catch", "--core", "lstm", "--patch_size", "6", "--num_patches", "3",
        "--glimpse_scale", "2", "--hidden_size", "32", "--glimpse_hidden", "16", "--loc_hidden", "16",
        "--batch_size", "8", "--epoch_frames", "1000", "--valid_games", "16", "--lr_schedule",
        "linear", "--init_lr", "1e-3"]


def recipe_command(folder, recipe, *extra):
    common = ["--num_threads", "1", "--use_gpu=False", "--epochs", "6", "--run_name", "run",
              "--ckpt_dir", str(folder / "ckpt")]
    if recipe is SGD:
        common = tiny_args(folder)[:-2] + ["--epochs", "6", "--run_name", "run",
                                           "--train_subset", "200"]
    return [sys.executable, os.path.join(ROOT, "main.py"), *common, *recipe, *extra]


@pytest.mark.parametrize("recipe", [SGD, GAME], ids=["sgd_linear_batch20", "catch"])
def test_a_kill_then_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path, recipe):
    subprocess.run(recipe_command(tmp_path / "a", recipe), check=True, capture_output=True,
                   timeout=300)
    straight = paddle.load(str(tmp_path / "a" / "ckpt" / "run" / "ckpt.pdparams"))
    last = tmp_path / "b" / "ckpt" / "run" / "ckpt.pdparams"
    process = subprocess.Popen(recipe_command(tmp_path / "b", recipe), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    while not (last.exists() and paddle.load(str(last))["epoch"] >= 2) and process.poll() is None:
        time.sleep(0.05)
    time.sleep(random.Random(0).uniform(0.0, 0.5))  # within the next epoch
    process.kill()
    process.wait(timeout=60)
    subprocess.run(recipe_command(tmp_path / "b", recipe, "--resume=True", "--best=False"),
                   check=True, capture_output=True, timeout=300)
    resumed = paddle.load(str(last))
    assert resumed["epoch"] == straight["epoch"] == 6
    for name, value in straight["model"].items():
        np.testing.assert_array_equal(resumed["model"][name].numpy(), value.numpy(), name)
    # SGD's velocity, or Adam's moments, came back too: the optimizers' states are the same.
    for name, value in straight["optimizer"].items():
        if hasattr(value, "numpy"):
            np.testing.assert_array_equal(resumed["optimizer"][name].numpy(), value.numpy(), name)


def test_resuming_under_another_optimizer_is_refused_in_one_line(tmp_path):
    subprocess.run(recipe_command(tmp_path, SGD, "--epochs", "1"), check=True,
                   capture_output=True, timeout=300)
    adam = [arg for arg in SGD if arg not in ("--optimizer", "sgd", "--momentum", "0.9")]
    done = subprocess.run(recipe_command(tmp_path, adam, "--epochs", "2", "--resume=True",
                                         "--best=False"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0, done.stderr
    assert "--optimizer sgd (checkpoint) vs adam" in done.stderr
