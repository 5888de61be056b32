"""The guarantees of docs/reliability.md, one test per way they were found broken:
a kill between the two checkpoint writes, two runs in one folder, caches of other
data, divergence at an epoch's last step, half-written files, damaged or foreign
checkpoints, and inputs that ended in a traceback or a hang instead of one line.

They drive main.py, plot_glimpses.py and align.py as a user does (most through the
command line), so that they also run against older code, where each fails.
"""
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest

import trainer as trainer_module
from config import get_config, sections
from data_loader import Canvases, load_canvases
from main import main
from tests.helpers import (ROOT, refusal, tiny_args, tiny_config, write_fake_mnist,
                           write_idx)

NAME = "ram_3_4x4_2"  # tiny_args' model


def cli(folder, *extra, script="main.py", timeout=300, **kwargs):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *tiny_args(folder, *extra)],
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def one_line_failure(done):
    """The one line a failed command printed besides its progress bar (tqdm's, on stderr)."""
    assert done.returncode != 0, done.stdout[-500:]
    lines = [line for line in done.stderr.splitlines()
             if line.strip() and not line.lstrip().startswith(("Epoch ", "validating", "testing"))]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def weights(path):
    return {k: np.asarray(v) for k, v in paddle.load(str(path))["model"].items()}


def epoch_lines(folder):
    with open(folder / "logs" / f"{NAME}/train.log") as f:
        return [line for line in f if line.startswith("epoch")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The folders of one tiny run of one epoch, made once for the tests that need a checkpoint."""
    folder = tmp_path_factory.mktemp("trained")
    assert cli(folder, "--epochs", "1").returncode == 0
    return folder


def copy_of(trained, tmp_path):
    for name in ("ckpt", "logs", "plots"):
        shutil.copytree(trained / name, tmp_path / name)
    return tmp_path


@pytest.fixture
def small_disk(tmp_path):
    """A 160 KiB file system, for writes that run out of space."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    yield mount
    subprocess.run(["umount", str(mount)])


# ---------------------------------------------------------------- checkpoints

KILL_BETWEEN_WRITES = """
import os, sys
sys.path.insert(0, {root!r})
import checkpoint
from config import get_config
from main import main
real, epoch = checkpoint.atomic_save, {epoch}
def save(state, path):
    real(state, path)
    if state["epoch"] == epoch:
        os._exit(9)  # killed after the first of the epoch's two writes
checkpoint.atomic_save = save
main(get_config({argv!r}))
"""


def test_a_kill_between_the_two_checkpoint_writes_loses_no_best_model(tmp_path):
    args = ["--epochs", "4", "--train_subset", "512"]
    assert cli(tmp_path / "a", *args).returncode == 0
    accuracies = [float(line.split()[line.split().index("valid_acc") + 1])
                  for line in epoch_lines(tmp_path / "a")]
    new_bests = [e + 1 for e in range(1, 4) if accuracies[e] > max(accuracies[:e])]
    assert new_bests, accuracies  # an epoch after the first that writes both checkpoints
    script = KILL_BETWEEN_WRITES.format(root=ROOT, epoch=new_bests[-1],
                                        argv=tiny_args(tmp_path / "b", *args))
    assert subprocess.run([sys.executable, "-c", script], timeout=300).returncode == 9
    assert cli(tmp_path / "b", *args, "--resume=True", "--best=False").returncode == 0
    for kind in ("best", "ckpt"):
        straight = weights(tmp_path / "a" / "ckpt" / NAME / f"{kind}.pdparams")
        resumed = weights(tmp_path / "b" / "ckpt" / NAME / f"{kind}.pdparams")
        for name in straight:
            np.testing.assert_array_equal(resumed[name], straight[name], f"{kind} {name}")


def test_a_second_run_in_the_same_folders_is_refused_while_the_first_lives(tmp_path):
    first = subprocess.Popen([sys.executable, os.path.join(ROOT, "main.py"),
                              *tiny_args(tmp_path, "--epochs", "1000")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "logs" / f"{NAME}/train.log").exists() or not epoch_lines(tmp_path):
            assert first.poll() is None and time.time() < deadline, "the first run ended early"
            time.sleep(0.2)
        message = one_line_failure(cli(tmp_path, "--epochs", "1"))
        assert f"ckpt/{NAME} is in use by a run (pid {first.pid})" in message
        assert first.poll() is None  # the first run goes on, untouched
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        first.kill()
    done = [int(line.split()[1]) for line in epoch_lines(tmp_path)]
    assert done == list(range(1, len(done) + 1))  # its log was neither truncated nor mixed
    # Its lock died with it: the next run takes the folders over.
    assert cli(tmp_path, "--epochs", str(done[-1] + 1), "--resume=True",
               "--best=False").returncode == 0


def test_an_update_that_diverges_at_an_epochs_last_step_is_not_saved(tmp_path):
    message = one_line_failure(cli(tmp_path, "--init_lr", "1e10", "--train_subset", "256",
                                   "--batch_size", "512", "--epochs", "3"))
    assert "the weights diverged in epoch 1" in message
    assert not list((tmp_path / "ckpt").glob("*.pdparams"))


def test_the_first_epoch_writes_a_best_checkpoint_even_at_zero_accuracy(tmp_path, monkeypatch):
    real = trainer_module.evaluate

    def nothing_right(model, loader, M, on_first_batch=None):
        loss, _, _, count = real(model, loader, M, on_first_batch)
        return loss, 0.0, 0, count

    monkeypatch.setattr(trainer_module, "evaluate", nothing_right)
    main(tiny_config(tmp_path, "--epochs", "1"))
    assert (tmp_path / "ckpt" / f"{NAME}/best.pdparams").exists()


def saved_state(trained, tmp_path):
    copy_of(trained, tmp_path)
    path = tmp_path / "ckpt" / f"{NAME}/best.pdparams"
    return path, paddle.load(str(path))


class Touch:
    """Pickled, it creates a file when unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


def damage(state, how, tmp_path):
    if how == "no model":
        del state["model"]
    elif how == "no rng_state":
        del state["rng_state"]
    elif how == "no config entry":
        del state["config"]["hidden_size"]
    elif how == "empty model":
        state["model"] = {}
    elif how == "wrong shape":
        state["model"]["rnn.h2h.weight"] = paddle.zeros([3, 3])
    elif how == "NaN weights":
        state["model"]["rnn.h2h.weight"] = state["model"]["rnn.h2h.weight"] * float("nan")
    elif how == "pickled code":
        state["config"]["note"] = Touch(str(tmp_path / "ran"))
    return state


@pytest.mark.parametrize("how,says", [
    ("no model", "it lacks model"), ("no rng_state", "it lacks rng_state"),
    ("no config entry", "its options lack hidden_size"),
    ("empty model", "its weights do not fit the model"),
    ("wrong shape", "rnn.h2h.weight is paddle.float32 [3, 3] in the checkpoint"),
    ("NaN weights", "rnn.h2h.weight holds NaN or infinite values"),
    ("pickled code", "it would run posix.mkdir"),
])
def test_a_damaged_or_foreign_checkpoint_is_refused_in_one_line(trained, tmp_path, how, says):
    path, state = saved_state(trained, tmp_path)
    if how == "pickled code":
        with open(path, "wb") as f:
            pickle.dump(damage(state, how, tmp_path), f)
    else:
        paddle.save(damage(state, how, tmp_path), str(path))
    before = path.read_bytes()
    message = one_line_failure(cli(tmp_path, "--is_train=False"))
    assert says in message and str(path) in message
    assert not (tmp_path / "ran").exists()  # the pickled call never ran
    if how in ("no model", "wrong shape"):  # resuming checks the same way
        message = one_line_failure(cli(tmp_path, "--epochs", "2", "--resume=True"))
        assert says in message
    assert path.read_bytes() == before


@pytest.mark.parametrize("damage", ["truncated", "foreign", "empty"])
def test_a_corrupt_checkpoint_file_is_refused_and_nothing_is_overwritten(trained, tmp_path, damage):
    path, _ = saved_state(trained, tmp_path)
    good = path.read_bytes()
    bad = {"truncated": good[:len(good) // 2], "foreign": b"\x89PNG\r\n\x1a\n" + good[:100],
           "empty": b""}[damage]
    path.write_bytes(bad)
    last = tmp_path / "ckpt" / f"{NAME}/ckpt.pdparams"
    before = last.read_bytes()
    message = one_line_failure(cli(tmp_path, "--resume=True", "--epochs", "2"))
    assert message.startswith(f"[!] {path}: not a RAM-Paddle checkpoint, or damaged")
    assert path.read_bytes() == bad and last.read_bytes() == before


def test_flipped_bytes_in_the_weights_are_caught(trained, tmp_path):
    path, state = saved_state(trained, tmp_path)
    data = bytearray(path.read_bytes())
    weight = state["model"]["rnn.h2h.weight"].numpy()
    at = bytes(data).find(weight.tobytes()[:64])  # inside the array's raw bytes
    assert at > 0
    data[at + 3] ^= 0x10
    path.write_bytes(bytes(data))
    message = one_line_failure(cli(tmp_path, "--is_train=False"))
    assert "its weights are not those it was saved with" in message


def test_resuming_on_another_split_is_refused(trained, tmp_path):
    copy_of(trained, tmp_path)
    message = one_line_failure(cli(tmp_path, "--epochs", "2", "--resume=True", "--valid_size", "0.3"))
    assert "trained with other options: --valid_size 0.2 (checkpoint) vs 0.3" in message


def test_testing_a_canvas_model_on_other_canvases_is_refused(tmp_path):
    folder = write_fake_mnist(tmp_path / "mnist", num_train=240, num_test=60)
    task = ["--dataset", "translated", "--image_size", "36", "--data_dir", str(folder),
            "--cache_dir", str(tmp_path / "cache")]
    assert cli(tmp_path, *task, "--epochs", "1").returncode == 0
    message = one_line_failure(cli(tmp_path, *task, "--is_train=False", "--dataset_seed", "5"))
    assert "--dataset_seed 0 (checkpoint) vs 5" in message


def test_a_full_disk_message_names_the_checkpoint(tmp_path):
    script = ("import sys; sys.path.insert(0, {root!r}); import main, paddle\n"
              "def full(*a, **k): raise OSError(28, 'No space left on device')\n"
              "paddle.save = full\n"
              "from config import get_config; main.main(get_config({argv!r}))")
    done = subprocess.run([sys.executable, "-c", script.format(
        root=ROOT, argv=tiny_args(tmp_path, "--epochs", "1"))], capture_output=True, text=True,
        timeout=300)
    message = one_line_failure(done)
    assert "No space left on device: " + str(tmp_path / "ckpt" / NAME) in message
    assert "None" not in message


# ---------------------------------------------------------------- other files

def test_a_full_disk_leaves_no_half_line_in_the_log_and_no_half_glimpse_file(tmp_path, small_disk):
    done = cli(tmp_path, "--epochs", "100", "--logs_dir", str(small_disk),
               "--plot_dir", str(small_disk))
    one_line_failure(done)
    with open(small_disk / f"{NAME}/train.log") as f:
        text = f.read()
    assert text.endswith("\n") and all(line.startswith(("#", "epoch ")) for line in text.splitlines())
    for path in (small_disk / NAME).glob("*.npz"):
        with np.load(path) as saved:  # every glimpse file on disk is whole
            assert saved["locations"].shape[1] == 3
    assert not [p for p in small_disk.rglob("*") if ".tmp" in p.name]


def test_a_test_result_that_cannot_be_written_is_one_line_and_keeps_the_last(trained, tmp_path):
    copy_of(trained, tmp_path)
    assert cli(tmp_path, "--is_train=False").returncode == 0
    result = tmp_path / "logs" / f"{NAME}/test.json"
    earlier = result.read_text()
    blocked = cli(tmp_path, "--is_train=False", "--logs_dir", str(result))  # a file, not a folder
    assert "could not write" in one_line_failure(blocked) and "[*] Test Acc" in blocked.stdout
    assert result.read_text() == earlier


# ---------------------------------------------------------------- data

def test_a_canvas_cache_of_other_digits_is_not_used(tmp_path):
    canvases = Canvases(40, 2, 8, seed=0)
    first = write_fake_mnist(tmp_path / "a", num_train=60, num_test=20, seed=1)
    other = write_fake_mnist(tmp_path / "b", num_train=60, num_test=20, seed=2)
    load_canvases(str(first), "test", canvases, tmp_path / "cache")
    cached, _, _ = load_canvases(str(other), "test", canvases, tmp_path / "cache")
    fresh, _, _ = load_canvases(str(other), "test", canvases, tmp_path / "fresh")
    np.testing.assert_array_equal(cached, fresh)


def test_a_damaged_canvas_cache_is_made_anew_and_orphans_are_removed(tmp_path, capsys):
    canvases = Canvases(40, 2, 8, seed=0)
    folder = write_fake_mnist(tmp_path / "mnist", num_train=60, num_test=20)
    images, _, _ = load_canvases(str(folder), "test", canvases, tmp_path / "cache")
    [cache] = list((tmp_path / "cache").glob("*.npy"))
    orphan = tmp_path / "cache" / f"{cache.name}.tmp{2**22 + 7}.npy"  # no such process
    orphan.write_bytes(b"half")
    for junk in (cache.read_bytes()[:200], b"garbage"):
        cache.write_bytes(junk)
        again, _, _ = load_canvases(str(folder), "test", canvases, tmp_path / "cache")
        np.testing.assert_array_equal(again, images)
        assert "making it anew" in capsys.readouterr().out
    assert not orphan.exists()


def test_a_canvas_cache_that_cannot_be_written_is_one_line(tmp_path, small_disk):
    folder = write_fake_mnist(tmp_path / "mnist", num_train=240, num_test=60)
    message = one_line_failure(cli(tmp_path, "--dataset", "cluttered", "--image_size", "60",
                                   "--data_dir", str(folder), "--cache_dir", str(small_disk)))
    assert message.startswith("[!] cannot write the canvas cache")
    assert not list(small_disk.iterdir())


@pytest.mark.parametrize("problem,says", [
    ("label 12", "holds label 12; MNIST's are 0 to 9"),
    ("no images", "holds no images"),
    ("32x32", "holds 32x32 images; MNIST's are 28x28"),
])
def test_a_malformed_data_file_is_refused_in_one_line(tmp_path, problem, says):
    folder = write_fake_mnist(tmp_path / "mnist")
    rng = np.random.default_rng(0)
    if problem == "label 12":
        write_idx(folder / "train-labels-idx1-ubyte.gz", np.full(200, 12), 2049)
    elif problem == "no images":
        write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((0, 28, 28)), 2051)
        write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(0), 2049)
    else:
        write_idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (200, 32, 32)), 2051)
    train = "no images" not in problem
    done = cli(tmp_path, "--data_dir", str(folder), "--epochs", "1", "--train_subset", "0",
               *([] if train else ["--is_train=False"]))
    assert says in one_line_failure(done)


# ---------------------------------------------------------------- signals and pipes

def run_until(folder, marker, *extra):
    """main.py started in the background, once its stdout shows marker."""
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "main.py"),
                                *tiny_args(folder, *extra)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if marker:
        for line in process.stdout:
            if marker in line:
                break
    return process


def resident_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS"))


@pytest.mark.parametrize("sig,when", [(signal.SIGINT, "before training"),
                                      (signal.SIGTERM, "before training"),
                                      (signal.SIGTERM, "while testing")])
def test_a_signal_outside_the_training_loop_ends_in_one_line(trained, tmp_path, sig, when):
    if when == "before training":  # while it makes 60,000 canvases of 160x160 (1.5 GB)
        process = run_until(tmp_path, None, "--dataset", "cluttered", "--image_size", "160",
                            "--num_distractors", "8", "--train_subset", "0",
                            "--cache_dir", str(tmp_path / "cache"))
        deadline = time.time() + 120
        while resident_mib(process.pid) < 1200:
            assert process.poll() is None and time.time() < deadline
            time.sleep(0.1)
    else:
        copy_of(trained, tmp_path)
        process = run_until(tmp_path, "[*] Loaded", "--is_train=False", "--M", "50",
                            "--batch_size", "64")
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + sig, err
    assert err.strip().count("\n") == 0 and f"stopped by {sig.name}" in err, err
    assert not list(tmp_path.rglob("*.npy*")) and not (tmp_path / "logs" / f"{NAME}/test.json").exists()


def test_a_closed_pipe_does_not_end_training(tmp_path):
    command = " ".join([sys.executable, os.path.join(ROOT, "main.py"),
                        *tiny_args(tmp_path, "--epochs", "3")])
    done = subprocess.run(["bash", "-c", f"{command} | head -1"], capture_output=True,
                          text=True, timeout=300)
    assert "BrokenPipeError" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(epoch_lines(tmp_path)) == 3


# ---------------------------------------------------------------- plot_glimpses.py

def plot_failure(*argv):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "plot_glimpses.py"), *argv],
                          capture_output=True, text=True, timeout=120)
    return one_line_failure(done)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", "foreign"])
def test_plot_glimpses_refuses_a_damaged_or_foreign_file_in_one_line(tmp_path, content):
    path = tmp_path / "glimpses_epoch4.npz"
    if content == "foreign":
        np.savez(path, weights=np.zeros(3))
    else:
        path.write_bytes(content)
    message = plot_failure("--plot_dir", str(tmp_path))
    assert str(path) in message and ("damaged" in message or "it lacks images" in message)


def test_plot_glimpses_refuses_a_zero_fps_and_makes_the_out_folder(tmp_path):
    folder = tmp_path / "plots" / NAME
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(folder / "glimpses_epoch1.npz", images=rng.normal(size=(2, 1, 28, 28)),
             labels=np.arange(2), predicted=np.arange(2), locations=rng.uniform(-1, 1, (2, 3, 2)))
    assert "--fps must be positive" in plot_failure("--plot_dir", str(folder), "--fps", "0")
    out = tmp_path / "missing" / "deeper" / "g.gif"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "plot_glimpses.py"), "--plot_dir",
                           str(folder), "--out", str(out)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and out.exists(), done.stderr


# ---------------------------------------------------------------- align.py

def test_align_refuses_to_overwrite_and_converts_float64_and_junk_in_one_line(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    import align
    from tests.test_align import reference_checkpoint

    reference = tmp_path / "ref.pth.tar"
    reference_checkpoint(reference)
    monkeypatch.chdir(tmp_path)  # the default --out is ckpt/<model_name>/best.pdparams
    align.main(["--torch_ckpt", str(reference)])
    target = tmp_path / "ckpt" / "ram_6_8x8_1" / "best.pdparams"
    before = target.read_bytes()
    assert "exists and would be overwritten: pass --out" in refusal(align.main, "--torch_ckpt", str(reference))
    assert target.read_bytes() == before

    state = torch.load(reference, weights_only=True)
    state["model_state"] = {k: v.double() for k, v in state["model_state"].items()}
    torch.save(state, tmp_path / "f64.pth.tar")
    out = tmp_path / "new" / "folder" / "ram_6_8x8_1_model_best.pdparams"  # made on the way
    align.main(["--torch_ckpt", str(tmp_path / "f64.pth.tar"), "--out", str(out)])
    from checkpoint import TRAIN_KEYS, load
    from model import ModelConfig, build_model

    config = get_config(["--use_gpu=False"])
    with paddle.utils.unique_name.guard():  # what main.py checks before it tests or resumes
        load(str(out), build_model(ModelConfig.from_options(config)), sections(config), TRAIN_KEYS)

    state["optim_state"] = {"state": {0: {"step": "junk"}}, "param_groups": []}
    torch.save(state, tmp_path / "junk.pth.tar")
    assert "optim_state is not the reference's Adam state" in refusal(
        align.main, "--torch_ckpt", str(tmp_path / "junk.pth.tar"), "--out", str(tmp_path / "j.pdparams"))
