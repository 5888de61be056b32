"""Learning, evaluation of real images, checkpoints as training writes them and exact resume."""
import glob
import json
import math
import os
import shutil
import signal

import numpy as np
import paddle
import pytest

from config import get_config
from data_loader import ArrayDataset, get_test_loader, get_train_valid_loaders, load_mnist
from checkpoint import CheckpointError, RunFolder, weights_only
from main import main
from model import ModelConfig, build_model, evaluate, ram_loss
from trainer import Trainer, interrupted
from utils import atomic_save
from tests.helpers import MNIST_DIR, tiny_args, tiny_config


def test_paths_clipping_and_an_lstm_core_train(tmp_path):
    config = tiny_config(tmp_path, "--train_paths", "3", "--clip_grad_norm", "0.5", "--core", "lstm",
                         "--epochs", "1")
    trainer = Trainer(config)
    assert [name for name, _ in trainer.model.rnn.named_parameters()] == [
        "weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    x = paddle.to_tensor(load_mnist(MNIST_DIR, "test")[0][:32])
    y = paddle.to_tensor(np.arange(32) % 10)
    before = {name: p.numpy().copy() for name, p in trainer.model.named_parameters()}
    loss = trainer.train_step(x, y)
    assert loss.reward.shape == [96] and math.isfinite(float(loss.total))
    # Adam moves every weight by about the rate at most, whatever the gradients' norm.
    for name, p in trainer.model.named_parameters():
        assert np.abs(p.numpy() - before[name]).max() < 2 * config.init_lr
    main(config)
    line = open(os.path.join(config.logs_dir, "ram_3_4x4_2_lstm/train.log")).read().splitlines()[1]
    assert 0 <= float(line.split(" train_acc ")[1].split()[0]) <= 100


def test_learns_256_real_mnist_images():
    images, labels = load_mnist(MNIST_DIR, "train")
    loader = paddle.io.DataLoader(ArrayDataset(images[:256], labels[:256]), batch_size=128)
    paddle.seed(0)
    model = build_model(ModelConfig.from_options(get_config(["--use_gpu=False"])))  # the default model
    _, acc_before, _, _ = evaluate(model, loader, M=1)
    assert acc_before < 30
    optimizer = paddle.optimizer.Adam(2e-3, parameters=model.parameters())
    x, y = paddle.to_tensor(images[:256]), paddle.to_tensor(labels[:256])
    order = np.random.default_rng(0)
    model.train()
    for _ in range(400):
        batch = paddle.to_tensor(order.choice(256, 128, replace=False))
        loss = ram_loss(*model(x[batch])[:3], y[batch]).total
        optimizer.clear_grad()
        loss.backward()
        optimizer.step()
    _, acc_after, _, _ = evaluate(model, loader, M=10)
    # One REINFORCE trajectory, which float rounding (thread count, kernels) steers: this
    # recipe ended between 80% and 98% in trials, so 70% is far from chance (10%) and from
    # the start (under 30%), yet not at the mercy of rounding.
    assert acc_after >= 70, acc_after


def test_evaluate_real_images_repeatably_and_report_the_first_batch(tmp_path):
    config = tiny_config(tmp_path)
    valid = get_train_valid_loaders(MNIST_DIR, 48, 1, 0.2, True, 0, 320).valid
    model = build_model(ModelConfig.from_options(config))
    seen = {}

    def first_batch(x, y, locations, predicted):
        seen.update(x=x.shape, locations=locations.numpy(), predicted=predicted.shape)

    paddle.seed(5)
    first = evaluate(model, valid, M=4, on_first_batch=first_batch)
    paddle.seed(5)
    assert evaluate(model, valid, M=4) == first  # the same RNG state gives the same figures
    loss, acc, correct, total = first
    assert total == 64 and acc == pytest.approx(100 * correct / total)
    assert seen["x"] == [48, 1, 28, 28] and seen["predicted"] == [48]
    assert seen["locations"].shape == (48, 3, 2) and np.abs(seen["locations"]).max() <= 1


def parameters(trainer):
    return {k: v.numpy().copy() for k, v in trainer.model.state_dict().items()}


def run(config):
    main(config)
    trainer = Trainer(config)
    trainer.restore(best=False)
    return trainer


def epoch_rows(log_path):
    with open(log_path) as f:
        return [dict(zip(line.split()[::2], line.split()[1::2])) for line in f
                if line.startswith("epoch")]


def test_checkpoint_round_trip(tmp_path):
    trainer = run(tiny_config(tmp_path, "--epochs", "1"))
    files = sorted(glob.glob("*/*", root_dir=tmp_path / "ckpt"))  # not the lock
    assert files == ["ram_3_4x4_2/best.pdparams", "ram_3_4x4_2/ckpt.pdparams"]
    state = paddle.load(str(tmp_path / "ckpt" / files[1]))
    assert state["epoch"] == 1 and state["counter"] == 0 and state["config"]["hidden_size"] == 32
    assert state["best_valid_acc"] == trainer.best_valid_acc > 0
    restored = parameters(trainer)
    for name, value in state["model"].items():
        np.testing.assert_array_equal(restored[name], value.numpy())
    # Adam's moments came back too, not only the weights.
    moments = [k for k in trainer.optimizer.state_dict() if "moment1" in k]
    assert moments and all(np.abs(trainer.optimizer.state_dict()[k].numpy()).sum() > 0 for k in moments)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    straight = parameters(run(tiny_config(tmp_path / "a", "--epochs", "4")))
    run(tiny_config(tmp_path / "b", "--epochs", "2"))
    resumed = run(tiny_config(tmp_path / "b", "--epochs", "4", "--resume=True", "--best", "False"))
    assert resumed.start_epoch == 4
    for name in straight:
        np.testing.assert_array_equal(resumed.model.state_dict()[name].numpy(), straight[name], name)
    with open(tmp_path / "a" / "logs" / "ram_3_4x4_2/train.log") as a, \
            open(tmp_path / "b" / "logs" / "ram_3_4x4_2/train.log") as b:
        def figures(f):
            return [line.split(" seconds")[0] for line in f if line.startswith("epoch")]
        assert figures(a) == figures(b)
    # Resuming keeps the glimpses of the epochs before.
    assert sorted(glob.glob("glimpses*", root_dir=tmp_path / "b" / "plots" / "ram_3_4x4_2")) == [
        f"glimpses_epoch{epoch}.npz" for epoch in range(1, 5)]
    # One VisualDL record for the whole run, which the resumed part appended to.
    records = tmp_path / "b" / "logs" / "ram_3_4x4_2"
    assert glob.glob("vdlrecords*", root_dir=records) == ["vdlrecords.run.log"]
    assert (os.path.getsize(records / "vdlrecords.run.log")
            > os.path.getsize(tmp_path / "a" / "logs" / "ram_3_4x4_2" / "vdlrecords.run.log") // 2)


def test_cosine_schedule_anneals_over_the_epochs_and_resumes_exactly(tmp_path, monkeypatch):
    cosine = ["--epochs", "4", "--lr_schedule", "cosine", "--init_lr", "1e-3"]
    straight = parameters(run(tiny_config(tmp_path / "a", *cosine)))
    lrs = [float(row["lr"]) for row in epoch_rows(tmp_path / "a" / "logs" / "ram_3_4x4_2/train.log")]
    assert lrs == pytest.approx([0.5e-3 * (1 + math.cos(math.pi * e / 4)) for e in range(4)],
                                rel=1e-3)
    save_checkpoint = Trainer.save_checkpoint

    def stop_after_epoch_2(self, epoch, is_best):
        save_checkpoint(self, epoch, is_best)
        if epoch == 2:
            self.signals.received = signal.SIGTERM

    monkeypatch.setattr(Trainer, "save_checkpoint", stop_after_epoch_2)
    with pytest.raises(SystemExit):
        main(tiny_config(tmp_path / "b", *cosine))
    monkeypatch.undo()
    resumed = run(tiny_config(tmp_path / "b", *cosine, "--resume=True", "--best=False"))
    assert resumed.start_epoch == 4
    for name in straight:
        np.testing.assert_array_equal(resumed.model.state_dict()[name].numpy(), straight[name], name)
    # Either change would silently bend the schedule of the run being resumed.
    with pytest.raises(CheckpointError, match="--epochs 4 .checkpoint. vs 6"):
        Trainer(tiny_config(tmp_path / "b", *cosine, "--epochs", "6")).restore(best=False)
    with pytest.raises(CheckpointError, match="--lr_schedule cosine"):
        Trainer(tiny_config(tmp_path / "b", "--epochs", "4")).restore(best=False)
    # Testing takes neither: it loads only the weights and the RNG state.
    main(tiny_config(tmp_path / "b", "--is_train=False"))


def test_the_log_names_the_largest_batch_loss_and_its_term(tmp_path, monkeypatch):
    """An epoch's mean hides a one-batch spike; its line gives the spike and which term made it."""
    import trainer as trainer_module
    calls = []

    def mse_spike_in_third_batch(*args, **kwargs):
        loss = ram_loss(*args, **kwargs)
        calls.append(float(loss.total))
        if len(calls) == 3:  # a constant: the same gradients, a loss 500 higher
            loss = loss._replace(baseline=loss.baseline + 500.0, total=loss.total + 500.0)
        return loss

    monkeypatch.setattr(trainer_module, "ram_loss", mse_spike_in_third_batch)
    run(tiny_config(tmp_path, "--epochs", "1"))
    [row] = epoch_rows(tmp_path / "logs" / "ram_3_4x4_2/train.log")
    assert len(calls) > 3 and float(row["max_batch_loss"]) == pytest.approx(calls[2] + 500, abs=1e-3)
    assert row["max_batch_term"] == "mse"
    assert float(row["train_loss"]) < float(row["max_batch_loss"]) / 2


def test_testing_during_training_logs_test_err_and_changes_nothing_else(tmp_path):
    plain = parameters(run(tiny_config(tmp_path / "a", "--epochs", "3")))
    tested = run(tiny_config(tmp_path / "b", "--epochs", "3", "--test_freq", "2"))
    for name in plain:
        np.testing.assert_array_equal(tested.model.state_dict()[name].numpy(), plain[name], name)
    with open(tmp_path / "b" / "logs" / "ram_3_4x4_2/train.log") as f:
        lines = [line for line in f if line.startswith("epoch")]
    assert ["test_err" in line for line in lines] == [False, True, False]
    assert 0 <= float(lines[1].split("test_err")[1].split()[0]) <= 100


def test_selected_test_err_is_that_of_the_best_validation_epoch_so_far(tmp_path):
    config = tiny_config(tmp_path, "--epochs", "4", "--test_freq", "1", "--train_subset", "512")
    run(config)
    rows = epoch_rows(tmp_path / "logs" / "ram_3_4x4_2/train.log")
    best_acc, best_epoch = -1.0, None
    for row in rows:
        if float(row["valid_acc"]) > best_acc:
            best_acc, best_epoch = float(row["valid_acc"]), row["epoch"]
        assert row["selected_epoch"] == best_epoch
        # Every epoch was tested, so the selected one's figure is the one in its own line.
        assert row["selected_test_err"] == rows[int(best_epoch) - 1]["test_err"]
    # And it is what evaluating the best checkpoint afterwards prints.
    main(tiny_config(tmp_path, "--is_train=False"))
    with open(tmp_path / "logs" / "ram_3_4x4_2/test.json") as f:
        assert f"{json.load(f)['test_error']:.2f}" == rows[-1]["selected_test_err"]


class Scalars:
    def add_scalar(self, tag, value, step):
        pass


def test_selected_test_err_of_an_untested_best_checkpoint_is_what_main_prints(tmp_path):
    config = tiny_config(tmp_path, "--epochs", "2", "--train_subset", "512")
    trainer = run(config)  # trained without --test_freq: no checkpoint was tested
    main(tiny_config(tmp_path, "--is_train=False"))
    with open(tmp_path / "logs" / "ram_3_4x4_2/test.json") as f:
        expected = json.load(f)
    rng_state = paddle.get_rng_state()
    line = trainer.test_line(get_test_loader(MNIST_DIR, 32), 2, False, Scalars())
    assert f"selected_test_err {expected['test_error']:.2f} " in line
    assert line.endswith(f"selected_epoch {expected['epoch']}")
    after = paddle.rand([8]).numpy()
    paddle.set_rng_state(rng_state)
    np.testing.assert_array_equal(after, paddle.rand([8]).numpy())  # it left the RNG as it was


def test_a_fresh_run_never_touches_an_earlier_runs_files_finished_or_not(tmp_path):
    """Issue 54: a fresh run where a run of its name has files is refused in one line that
    names the run, its last epoch, how to resume it and how to start afresh on purpose."""
    run(tiny_config(tmp_path, "--epochs", "3"))
    (tmp_path / "plots" / "ram_3_4x4_2" / "glimpses_epoch3.gif").write_bytes(b"GIF89a")

    def files():
        return {str(path): path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}

    before = files()
    for epochs in ("1", "5"):  # another --epochs is not another run's name
        with pytest.raises(SystemExit) as exit_info:
            main(tiny_config(tmp_path, "--epochs", epochs))
        message = exit_info.value.code  # main.py's one line, exit status 1
        assert message.startswith("[!] ") and "\n" not in message
        assert "holds a run of ram_3_4x4_2 (after epoch 3)" in message
        assert "--resume=True --best=False" in message and "delete" in message
        assert files() == before


def test_a_fresh_run_never_replaces_a_finished_one_and_two_recipes_keep_their_files(tmp_path):
    """Issue 38: the default and the tuned recipe, one after the other in the same folders,
    keep both runs' checkpoints, logs and test results; a finished run is not replaced."""
    from config import get_config, run_name
    common = [a for a in tiny_args(tmp_path, "--epochs", "1")[:-2]]  # without --run_name
    names = []
    for recipe in ([], ["--lr_schedule", "cosine", "--init_lr", "1e-3", "--std", "0.1"]):
        config = get_config(common + recipe)
        main(config)
        main(get_config(common + recipe + ["--is_train=False"]))
        names.append(run_name(config))
    assert names[0] != names[1]
    for name in names:
        for path in (f"ckpt/{name}/ckpt.pdparams", f"logs/{name}/train.log", f"logs/{name}/test.json"):
            assert (tmp_path / path).exists(), path
    with pytest.raises(SystemExit) as exit_info:
        main(get_config(common))
    assert "holds a run of" in exit_info.value.code  # main.py's one line, exit status 1


def test_checkpoint_with_other_model_options_is_refused(tmp_path):
    run(tiny_config(tmp_path, "--epochs", "1"))
    trainer = Trainer(tiny_config(tmp_path, "--hidden_size", "64"))
    with pytest.raises(CheckpointError, match="--hidden_size 32 \\(checkpoint\\) vs 64"):
        trainer.restore(best=True)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        Trainer(tiny_config(tmp_path / "empty")).restore(best=True)


def test_damaged_checkpoint_is_refused(tmp_path):
    run(tiny_config(tmp_path, "--epochs", "1"))
    path = tmp_path / "ckpt" / "ram_3_4x4_2/best.pdparams"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a RAM-Paddle checkpoint, or damaged"):
        Trainer(tiny_config(tmp_path)).restore(best=True)


def test_a_weights_only_checkpoint_holds_float16_weights_and_tests_as_its_source(tmp_path):
    """What docs/results.md publishes a row with: a sixth of the size, the source's weights
    rounded to float16, loaded back as float32, and (here) the same figure."""
    run(tiny_config(tmp_path, "--epochs", "1"))
    source = tmp_path / "ckpt" / "ram_3_4x4_2/best.pdparams"
    published = tmp_path / "published" / "model.pdparams"
    published.parent.mkdir()
    atomic_save(weights_only(paddle.load(str(source))), str(published))
    stored = paddle.load(str(published))["model"].values()
    assert {str(value.dtype) for value in stored} == {"paddle.float16"}
    assert os.path.getsize(published) < 0.4 * os.path.getsize(source)  # options and RNG state too
    trainer = Trainer(tiny_config(tmp_path, "--is_train=False"))
    trainer.restore(best=True, path=str(published))
    for name, value in paddle.load(str(source))["model"].items():
        loaded = trainer.model.state_dict()[name]
        assert loaded.dtype == paddle.float32
        rounded = value.numpy().astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(loaded.numpy(), rounded)
    figures = []
    for i, checkpoint in enumerate((str(source), str(published))):
        main(tiny_config(tmp_path, "--is_train=False", "--checkpoint", checkpoint,
                         "--logs_dir", str(tmp_path / f"tested{i}")))
        [result] = glob.glob(str(tmp_path / f"tested{i}" / "*_test.json"))
        with open(result) as f:
            figures.append(json.load(f)["correct"])
    assert figures[0] == figures[1]


def test_a_published_checkpoint_with_a_changed_float16_weight_is_refused(tmp_path):
    run(tiny_config(tmp_path, "--epochs", "1"))
    state = weights_only(paddle.load(str(tmp_path / "ckpt" / "ram_3_4x4_2/best.pdparams")))
    name = sorted(state["model"])[0]
    state["model"][name] = state["model"][name] + 1  # still float16, digest now wrong
    atomic_save(state, str(tmp_path / "published.pdparams"))
    with pytest.raises(CheckpointError, match="damaged bytes"):
        Trainer(tiny_config(tmp_path, "--is_train=False")).restore(
            best=True, path=str(tmp_path / "published.pdparams"))


@pytest.mark.parametrize("schedule,epochs", [("plateau", 2), ("cosine", 4)])
def test_patience_stops_a_plateau_run_but_never_cuts_a_cosine_schedule(tmp_path, monkeypatch,
                                                                       schedule, epochs):
    import trainer
    monkeypatch.setattr(trainer, "evaluate", lambda *args: (1.0, 50.0, 16, 32))  # never better
    config = tiny_config(tmp_path, "--lr_schedule", schedule, "--epochs", "4", "--train_patience", "0",
                         "--train_subset", "64", "--valid_size", "0.5")
    main(config)
    log = open(os.path.join(config.logs_dir, "ram_3_4x4_2/train.log")).read()
    assert log.count("\nepoch ") == epochs


def test_resuming_in_another_number_of_processes_says_so(tmp_path, capsys):
    """D8: the effective batch changes with the processes; the resumed run says so."""
    import checkpoint

    main(tiny_config(tmp_path, "--epochs", "1"))
    path = str(tmp_path / "ckpt" / "ram_3_4x4_2/ckpt.pdparams")
    state = checkpoint.read(path, checkpoint.TRAIN_KEYS)
    checkpoint.save({**state, "processes": 2}, path)
    capsys.readouterr()
    main(tiny_config(tmp_path, "--epochs", "2", "--resume=True", "--best=False"))
    assert "was trained in 2 processes, resumed in 1" in capsys.readouterr().out


def test_a_run_stopped_before_its_first_checkpoint_says_how_to_start_it_afresh(tmp_path):
    """The stop's advice, followed, lets the same command start again: it names every folder
    of the run (here --ckpt_dir, --logs_dir and --plot_dir apart), as the refusal of a fresh
    run over it does; "start again" alone was refused."""
    config = tiny_config(tmp_path)
    folder = RunFolder(config, config.run_name)
    os.makedirs(folder.logs)
    with open(folder.log, "w") as f:
        f.write("# started\n")
    message = str(interrupted(signal.SIGINT, 0, 3, 10, folder))
    refusal = folder.existing_run()
    assert len(folder.folders) == 3 and refusal.endswith(folder.start_afresh())
    assert message.endswith(folder.start_afresh()) and all(path in message for path in folder.folders)
    for path in folder.folders:
        if os.path.isdir(path):
            shutil.rmtree(path)
    assert folder.existing_run() is None


def test_a_run_stopped_between_its_first_two_checkpoint_writes_says_to_continue_from_its_best(
        tmp_path):
    """The best checkpoint is written first: a kill before the first last checkpoint leaves
    it alone, which holds the whole state; a fresh run is refused with the way to go on."""
    config = tiny_config(tmp_path, "--epochs", "1")
    main(config)
    folder = RunFolder(config, config.run_name)
    os.remove(folder.last)
    refusal = folder.existing_run()
    assert "last checkpoint is missing" in refusal and "--resume=True --best=True" in refusal
    main(get_config(tiny_args(tmp_path, "--epochs", "2", "--resume=True", "--best=True")))
    assert os.path.exists(folder.last)
