"""The checkpoint format: checkpoints of every version still test and resume, a new one
carries its model_args, and a file is read once."""
import dataclasses
import fractions
import os
import re
import shutil
import subprocess
import sys

import paddle
import pytest

import checkpoint
from config import get_config, parse
from main import main
from model import ModelConfig
from tests.helpers import ROOT, tiny_args

# A checkpoint written by the code of 2026-12-04 before checkpoint.py (no model_args): the
# tiny_args model after one epoch, and the log line of its second epoch as that code wrote it.
DATA = os.path.join(ROOT, "tests", "data")
OLD_CHECKPOINT = os.path.join(DATA, "ckpt_format_20261204_epoch1.pdparams")
OLD_EPOCH_2 = os.path.join(DATA, "ckpt_format_20261204_epoch2.txt")


def figures(line):
    """The name -> value pairs of a log line, without its timings."""
    pairs = dict(zip(line.split()[::2], line.split()[1::2]))
    return {name: value for name, value in pairs.items() if name not in ("seconds", "samples_per_s")}


def test_a_checkpoint_of_the_format_before_model_args_tests_as_it_did(tmp_path):
    done = subprocess.run([sys.executable, "main.py", "--is_train=False", "--checkpoint",
                           OLD_CHECKPOINT, "--M", "2", "--batch_size", "32", "--num_threads", "1",
                           "--use_gpu=False",
                           "--logs_dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert "Test Acc: 1099/10000 (10.99% - 89.01%)" in done.stdout, done.stderr[-500:]


def test_a_checkpoint_of_the_format_before_model_args_resumes_exactly(tmp_path):
    os.makedirs(tmp_path / "ckpt")
    shutil.copy(OLD_CHECKPOINT, tmp_path / "ckpt" / "ram_3_4x4_2_ckpt.pdparams")
    main(get_config(tiny_args(tmp_path, "--epochs", "2", "--resume=True", "--best=False")))
    with open(tmp_path / "logs" / "ram_3_4x4_2.log") as f:
        line = [line for line in f if line.startswith("epoch 2 ")][0]
    with open(OLD_EPOCH_2) as f:
        expected = f.read()
    got, want = figures(line), figures(expected)
    assert got.keys() == want.keys()
    for name in want:  # the losses to float rounding on another CPU, the rest exactly
        if "loss" in name:
            assert float(got[name]) == pytest.approx(float(want[name]), abs=2e-4), name
        else:
            assert got[name] == want[name], name


def test_a_new_checkpoint_carries_the_model_args_that_rebuild_its_model(tmp_path):
    config = get_config(tiny_args(tmp_path, "--epochs", "1"))
    main(config)
    state = checkpoint.read(str(tmp_path / "ckpt" / "ram_3_4x4_2_ckpt.pdparams"))
    assert state["model_args"] == dataclasses.asdict(ModelConfig.from_options(config))
    model, options, _ = checkpoint.load_model(str(tmp_path / "ckpt" / "ram_3_4x4_2_ckpt.pdparams"))
    assert options.hidden_size == 32 and model.rnn.h2h.weight.shape == [32, 32]
    published = checkpoint.weights_only(state)
    assert published["model_args"] == state["model_args"]
    assert set(published) == set(checkpoint.TEST_KEYS) | {"model_args", checkpoint.DIGEST}


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
