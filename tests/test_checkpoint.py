"""The checkpoint format: checkpoints of every version still test and resume, a new one
carries its model_args, and a file is read once."""
import dataclasses
import fractions
import os
import pickle
import re
import shutil
import subprocess
import sys

import numpy as np
import paddle
import pytest

import checkpoint
from config import get_config, parse, sections
from main import main
from model import ModelConfig, build_model
from tests.helpers import ROOT, tiny_args

# A checkpoint written by the code of 2026-12-04 before checkpoint.py (commit 996532b, no
# model_args): a model smaller than tiny_args' after one epoch, and the log line of its second
# epoch as that code wrote it (OLD_EPOCH_2; it tested: 951 of 10,000 right with --M 2 --batch_size 32).
DATA = os.path.join(ROOT, "tests", "data")
OLD_CHECKPOINT = os.path.join(DATA, "ckpt_format_20261204_epoch1.pdparams")
OLD_EPOCH_2 = ("epoch 2 lr 3.000e-04 train_loss 2.4125 max_batch_loss 2.5449"
               " max_batch_term nll train_acc 10.94 valid_loss 2.3968 valid_acc 6.25 valid_err 93.75")
OLD_MODEL = ["--num_glimpses", "2", "--patch_size", "2", "--num_patches", "1", "--glimpse_scale", "1",
             "--glimpse_hidden", "4", "--loc_hidden", "4", "--hidden_size", "8"]


def figures(line):
    """The name -> value pairs of a log line, without its timings."""
    pairs = dict(zip(line.split()[::2], line.split()[1::2]))
    return {name: value for name, value in pairs.items() if name not in ("seconds", "samples_per_s")}


def test_a_checkpoint_of_the_format_before_model_args_tests_as_it_did(tmp_path):
    done = subprocess.run([sys.executable, "main.py", "--is_train=False", "--checkpoint",
                           OLD_CHECKPOINT, "--M", "2", "--batch_size", "32", "--num_threads", "1",
                           "--use_gpu=False",
                           "--logs_dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert "Test Acc: 951/10000 (9.51% - 90.49%)" in done.stdout, done.stderr[-500:]


def test_a_checkpoint_of_the_format_before_model_args_resumes_exactly(tmp_path, capsys):
    """It lies where runs lay before 2026-12-06, <ckpt_dir>/<name>_ckpt.pdparams: resuming
    moves it into the run's folder and says so."""
    os.makedirs(tmp_path / "ckpt")
    shutil.copy(OLD_CHECKPOINT, tmp_path / "ckpt" / "ram_2_2x2_1_ckpt.pdparams")
    main(get_config(tiny_args(tmp_path, *OLD_MODEL, "--epochs", "2", "--resume=True", "--best=False")))
    assert "ram_2_2x2_1_ckpt.pdparams to " in capsys.readouterr().out
    assert os.listdir(tmp_path / "ckpt") == ["ram_2_2x2_1"]
    with open(tmp_path / "logs" / "ram_2_2x2_1/train.log") as f:
        line = [line for line in f if line.startswith("epoch 2 ")][0]
    got, want = figures(line), figures(OLD_EPOCH_2)
    assert got.keys() == want.keys()
    for name in want:  # the losses to float rounding on another CPU, the rest exactly
        if "loss" in name:
            assert float(got[name]) == pytest.approx(float(want[name]), abs=2e-4), name
        else:
            assert got[name] == want[name], name


def test_a_new_checkpoint_carries_the_model_args_that_rebuild_its_model(tmp_path):
    config = get_config(tiny_args(tmp_path, "--epochs", "1"))
    main(config)
    state = checkpoint.read(str(tmp_path / "ckpt" / "ram_3_4x4_2/ckpt.pdparams"))
    assert state["model_args"] == dataclasses.asdict(ModelConfig.from_options(config))
    path = str(tmp_path / "ckpt" / "ram_3_4x4_2/ckpt.pdparams")
    model, options = checkpoint.model_of(checkpoint.read(path), path)
    assert options.hidden_size == 32 and model.rnn.h2h.weight.shape == [32, 32]
    published = checkpoint.weights_only(state)
    assert published["model_args"] == state["model_args"]
    assert set(published) == set(checkpoint.TEST_KEYS) | {"model_args", checkpoint.DIGEST,
                                                          checkpoint.STATE_DIGEST}


def test_a_tested_checkpoint_is_read_once(tmp_path, monkeypatch):
    reads = []
    real = checkpoint.read
    monkeypatch.setattr(checkpoint, "read", lambda *args, **kw: reads.append(args) or real(*args, **kw))
    main(*parse(["--is_train=False", "--checkpoint", OLD_CHECKPOINT, "--use_gpu=False",
                 "--num_threads", "1", "--logs_dir", str(tmp_path)]))
    assert len(reads) == 1


def test_unpickling_builds_nothing_outside_the_allow_list(tmp_path):
    path = tmp_path / "evil.pdparams"
    paddle.save({"model": {}, "config": {}, "x": fractions.Fraction(1, 3)}, str(path))
    with pytest.raises(checkpoint.CheckpointError, match=re.escape("it would run")):
        checkpoint.read(str(path), keys=())


def test_predicting_imports_nothing_of_training():
    done = subprocess.run([sys.executable, "-c", "import infer, sys; print('trainer' in sys.modules, "
                           "'visualdl' in sys.modules)"], cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.split() == ["False", "False"], done.stderr[-500:]


# ----------------------- issue 37: every field is checked, and unpickling is bounded

MNIST_6 = os.path.join(ROOT, "results", "mnist", "ram_6_8x8_1", "model.pdparams")


def tampered(tmp_path, name, change):
    """A copy of the published 6-glimpse checkpoint with change(state) applied, its weights
    (and their digest) untouched."""
    state = paddle.load(MNIST_6)
    change(state)
    path = str(tmp_path / f"{name}.pdparams")
    paddle.save(state, path)
    return path


def run_test_of(path, *extra):
    return subprocess.run([sys.executable, "main.py", "--is_train=False", "--checkpoint", path,
                           "--use_gpu=False", "--num_threads", "1", "--M", "1", *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name,change,reason", [
    ("dataset_flip", lambda s: s["config"].update(dataset="mnisu"), "--dataset is 'mnisu'"),
    ("model_bogus", lambda s: s["config"].update(model="bogus"), "--model is 'bogus'"),
    ("glimpses_0", lambda s: s["config"].update(num_glimpses=0), "--num_glimpses must be at least 1"),
    ("best_str", lambda s: s.update(best_valid_acc="ninety"), "best_valid_acc is 'ninety'"),
    ("rng_junk", lambda s: s.update(rng_state=[1, 2, 3]), "not Paddle's RNG state"),
    ("no_digest", lambda s: (s.pop("weights_sha256"), s["model"].update(
        {"sensor.fc1.bias": s["model"]["sensor.fc1.bias"] * 2})), "has no digest"),
])
def test_a_checkpoints_every_field_is_checked_before_it_is_used(tmp_path, name, change, reason):
    """D4: a flipped or crafted option, progress field or digest is refused in one line
    (the dataset flip tested on translated canvases and printed a figure before)."""
    done = run_test_of(tampered(tmp_path, name, change))
    assert done.returncode in (1, 2) and "Test Acc" not in done.stdout, done.stdout[-300:]
    assert reason in done.stderr and done.stderr.count("\n") == 1, done.stderr[-500:]


@pytest.mark.parametrize("change,reason", [
    (lambda s: s["config"].update({1: 5}), "its config has the key '1' of type int"),
    (lambda s: s["config"].update({None: 5}), "its config has the key 'None'"),
    (lambda s: s["config"].update(__class__=5), "its config has the key '__class__'"),
    (lambda s: s["model"].update({3: s["model"]["rnn.i2h.weight"]}), "its weights has the key '3'"),
    (lambda s: s.update(epoch=10**5000), "its 'epoch' is a whole number of more than 64 bits"),
    (lambda s: s["config"].update(epochs=10**5000), "its 'epochs' is a whole number of more"),
    (lambda s: s.update({"StructuredToParameterName@@": {}}), "is a tuple, not an array"),
])
def test_a_checkpoint_of_keys_or_numbers_main_py_never_saves_is_refused_in_one_line(
        tmp_path, change, reason):
    """N8: keys that are not strings or are Python's internals, weights that are not arrays
    and numbers too long to print were tracebacks (argparse, sorted, the digests)."""
    with open(MNIST_6, "rb") as f:
        state = pickle.load(f)
    change(state)
    path = tmp_path / "crafted.pdparams"
    with open(path, "wb") as f:
        pickle.dump(state, f, protocol=3)
    with pytest.raises(checkpoint.CheckpointError, match="not shaped as a RAM-Paddle checkpoint") as err:
        checkpoint.read(str(path))
    assert reason in str(err.value) and "\n" not in str(err.value)


def test_the_digest_of_a_new_checkpoint_covers_adams_state(tmp_path):
    """D4: a bit flipped in Adam's moments, which no weight digest saw, is caught."""
    config = get_config(tiny_args(tmp_path, "--epochs", "1"))
    main(config)
    path = str(tmp_path / "ckpt" / "ram_3_4x4_2/ckpt.pdparams")
    state = paddle.load(path)
    name = sorted(key for key in state["optimizer"] if "moment2" in key)[0]
    state["optimizer"][name] = -state["optimizer"][name]
    paddle.save(state, path)
    with pytest.raises(checkpoint.CheckpointError, match="its digest differs"):
        checkpoint.load(path, build_model(ModelConfig.from_options(config)),
                        sections(config), checkpoint.TRAIN_KEYS)


def test_unpickling_is_bounded_in_objects_and_bytes(tmp_path):
    """D5: a 1 KB DAG of shared lists (2^40 steps for paddle.load) and one array referenced
    4,000 times (gigabytes) are refused at once."""
    node = []
    for _ in range(40):
        node = [node, node]
    dag = tmp_path / "dag.pdparams"
    dag.write_bytes(pickle.dumps({"model": {}, "config": {"x": node}}, protocol=2))
    many = tmp_path / "many.pdparams"
    many.write_bytes(pickle.dumps({"model": {}, "config": {"x": [np.zeros(2**17, np.float32)] * 4000}},
                                  protocol=4))
    for path in (dag, many):
        done = run_test_of(str(path))
        assert done.returncode == 2 and "expands to over" in done.stderr, done.stderr[-300:]


def test_crafted_keys_sets_strings_and_object_arrays_are_refused_at_once(tmp_path):
    """N3: a tuple DAG as a dict key or in a set (at 40 levels, hashed for hours while the
    pickle loaded, deaf to Ctrl-C), one long string named many times (the digest hashed it each
    time) and an array of Python objects bypassed the unpickling bound."""
    node = ()
    for _ in range(20):  # 20 levels: what makes the test's own dict costs 2^20 hashing steps
        node = (node, node)
    many = "x" * 2**20
    crafted = {"dag_key": {"model": {}, "config": {node: 1}},
               "dag_set": {"model": {}, "config": {"x": frozenset([node])}},
               "strings": {"model": {}, "config": {"x": [many] * 5000}},
               "objects": {"model": {}, "config": {"x": np.array([[1], [2, 3]], dtype=object)}}}
    for name, state in crafted.items():
        path = tmp_path / f"{name}.pdparams"
        path.write_bytes(pickle.dumps(state, protocol=4))
        with pytest.raises(checkpoint.CheckpointError, match="not a RAM-Paddle checkpoint"):
            checkpoint.read(str(path))


class Call:
    """Pickles as a call of func(*args) (REDUCE), as a crafted file would hold it."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def test_allowed_calls_that_would_build_gigabytes_are_refused_at_once(tmp_path):
    """N3: allowed globals called with crafted arguments: an array over 4 bytes of the file
    with a zero stride (6.6 GB once rebuilt as a tensor), tuple() of such an array, a tensor
    rebuilt from a list DAG (4.4 GB), arrays in slices for paddle.load to join (2.3 GB)."""
    from paddle.base.dygraph.math_op_patch import _rebuild_tensor

    zero_stride = Call(np.ndarray, (2**29,), np.float32, b"\0" * 4, 0, (0,))
    crafted = {"ndarray": zero_stride, "tuple": Call(tuple, np.zeros(3, np.float32)),
               "rebuild": Call(_rebuild_tensor, [[1.0, 2.0]], "float32", "cpu", False),
               "slices": {"UnpackBigParamInfor@@": {}}}
    for name, payload in crafted.items():
        path = tmp_path / f"{name}.pdparams"
        path.write_bytes(pickle.dumps({"model": {}, "config": {"x": payload}}, protocol=3))
        with pytest.raises(checkpoint.CheckpointError, match="ForbiddenGlobal: it "):
            checkpoint.read(str(path))


def test_a_runs_best_checkpoint_kept_as_float32_weights_tests_as_the_whole_one(tmp_path):
    """runs/ carries a run's best checkpoint as weights only, in float32 (weights_only with
    half=False): testing it gives the whole checkpoint's figure."""
    config = get_config(tiny_args(tmp_path, "--epochs", "1"))
    main(config)
    best = str(tmp_path / "ckpt" / "ram_3_4x4_2/best.pdparams")
    slim = checkpoint.weights_only(checkpoint.read(best, checkpoint.TRAIN_KEYS), half=False)
    assert "optimizer" not in slim and all(v.dtype == paddle.float32 for v in slim["model"].values())
    checkpoint.save(slim, str(tmp_path / "slim.pdparams"))
    figures = []
    for path in (best, str(tmp_path / "slim.pdparams")):
        done = run_test_of(path, "--M", "2", "--batch_size", "32", "--logs_dir", str(tmp_path))
        figures.append([line for line in done.stdout.splitlines() if "Test Acc" in line])
    assert figures[0] == figures[1] and figures[0], figures


def test_a_damaged_checkpoint_is_never_given_fresh_digests(tmp_path):
    """N1: weights_only of a checkpoint whose digests fail is refused, not made 'valid'."""
    config = get_config(tiny_args(tmp_path, "--epochs", "1"))
    main(config)
    best = str(tmp_path / "ckpt" / "ram_3_4x4_2/best.pdparams")
    state = paddle.load(best)
    state["best_valid_acc"] = 99.5  # one changed field: the digest of the whole fails
    paddle.save(state, best)
    with pytest.raises(checkpoint.CheckpointError, match="digests fail"):
        checkpoint.weights_only(checkpoint.read(best, checkpoint.TRAIN_KEYS))


def test_publishing_a_run_makes_a_row_whose_command_prints_its_figure(tmp_path, monkeypatch):
    """checkpoint.publish: the run's best weights as float16, its log, the published file's own
    test result and its manifest row; a destination outside results/, or taken, is refused."""
    import json

    results = tmp_path / "results"
    results.mkdir()
    (results / "manifest.json").write_text("[\n]\n")
    os.symlink(os.path.join(ROOT, "data"), tmp_path / "data")  # the command runs beside results/
    monkeypatch.setattr(checkpoint, "MANIFEST", str(results / "manifest.json"))
    config = get_config(tiny_args(tmp_path, "--epochs", "1", "--logs_dir", str(tmp_path / "ckpt")))
    main(config)
    run = str(tmp_path / "ckpt" / "ram_3_4x4_2")
    with pytest.raises(checkpoint.CheckpointError, match="a new folder of results/"):
        checkpoint.publish(run, str(tmp_path / "elsewhere"), "x")
    row = checkpoint.publish(run, str(results / "mnist" / "tiny"), "a tiny run")
    assert row["checkpoint"] == "results/mnist/tiny/model.pdparams" and row["note"] == "a tiny run"
    assert json.loads((results / "manifest.json").read_text()) == [row]
    tested = json.loads((results / "mnist" / "tiny" / "test.json").read_text())
    assert tested["test_error"] == row["test_error"] and tested["total"] == 10000
    weights = paddle.load(str(results / "mnist" / "tiny" / "model.pdparams"))["model"]
    assert {str(value.dtype) for value in weights.values()} == {"paddle.float16"}
    with pytest.raises(checkpoint.CheckpointError, match="a new folder of results/"):
        checkpoint.publish(run, str(results / "mnist" / "tiny"), "again")
    best = os.path.join(run, "best.pdparams")  # its weights changed, its digests not
    state = paddle.load(best)
    state["model"]["rnn.h2h.bias"] = state["model"]["rnn.h2h.bias"] + 1.0
    paddle.save(state, best)
    with pytest.raises(checkpoint.CheckpointError, match="digests fail"):
        checkpoint.publish(run, str(results / "mnist" / "damaged"), "a damaged run")
    assert sorted(os.listdir(results / "mnist")) == ["tiny"]  # no folder left behind


# ----------------------- issue 51: one judge of whether a checkpoint fits a run

def fit_of(change=lambda state: None, options=None, resuming=False, data=None):
    """checkpoint.fit of the published 6-glimpse checkpoint, changed by change(state), for a
    run of its own options updated with `options`: the state it returns, or its refusal."""
    state = checkpoint.read(MNIST_6)
    change(state)
    own = vars(get_config(["--is_train=False", "--checkpoint", MNIST_6, "--use_gpu=False"]))
    saved = {name: value for name, value in state["config"].items() if name in own}
    run = {**own, **saved, **(options or {})}  # the run the checkpoint came from, and changes
    model = build_model(ModelConfig.from_options(state["config"]))
    try:
        return checkpoint.fit(state, MNIST_6, model, sections(run), resuming, data)
    except checkpoint.CheckpointError as err:
        assert "\n" not in str(err)
        return str(err)


def nan_weights(state):
    state["model"]["rnn.h2h.weight"] = state["model"]["rnn.h2h.weight"] * float("nan")


def test_fit_is_the_one_judge_of_a_checkpoint_and_names_each_refusal():
    """Every way a checkpoint may not serve a run, refused by checkpoint.fit in one line: other
    model or task options (to test or to resume), other split, optimizer or annealed --epochs
    (to resume only), other images (to resume), weights that do not fit the model or are not
    finite, and weights the digest does not vouch for; options free to differ are not refused."""
    assert isinstance(fit_of(), dict) and isinstance(fit_of(resuming=True, data="a"), dict)
    refusals = {
        "a model option": fit_of(options={"num_glimpses": 5}),
        "a task option": fit_of(options={"dataset": "translated", "image_size": 60}),
        "the split, resuming": fit_of(options={"valid_size": 0.2}, resuming=True),
        "the optimizer, resuming": fit_of(options={"optimizer": "sgd"}, resuming=True),
        "annealed epochs, resuming": fit_of(options={"epochs": 150}, resuming=True),
        "other images, resuming": fit_of(lambda s: s.update(data="a"), resuming=True, data="b"),
        "a weight's shape": fit_of(lambda s: s["model"].update(
            {"rnn.h2h.weight": paddle.zeros([3, 3])})),
        "NaN weights": fit_of(nan_weights),
        "an unvouched digest": fit_of(lambda s: s.update({checkpoint.UNVOUCHED: "digest off"})),
    }
    says = {
        "a model option": "--num_glimpses 6 (checkpoint) vs 5",
        "a task option": "--dataset mnist (checkpoint) vs translated",
        "the split, resuming": "--valid_size 0.1 (checkpoint) vs 0.2",
        "the optimizer, resuming": "--optimizer adam (checkpoint) vs sgd",
        "annealed epochs, resuming": "--epochs 100 (checkpoint) vs 150",
        "other images, resuming": "was trained on other data (a)",
        "a weight's shape": "rnn.h2h.weight is paddle.float32 [3, 3] in the checkpoint",
        "NaN weights": "rnn.h2h.weight holds NaN or infinite values",
        "an unvouched digest": "digest off",
    }
    for what, message in refusals.items():
        assert isinstance(message, str) and says[what] in message, (what, message)
    # What a test of the checkpoint may change: the split, the optimizer, the epochs, threads.
    free = {"valid_size": 0.2, "optimizer": "sgd", "epochs": 150, "num_threads": 1}
    assert isinstance(fit_of(options=free), dict)
