"""align.py: checkpoints converted both ways, and the PyTorch/Paddle comparison."""
import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from tests.helpers import MNIST_DIR, ROOT, refusal, write_fake_mnist

torch = pytest.importorskip("torch", reason="align.py compares against PyTorch: "
                                             "pip install torch==2.13.0")
import align
from config import get_config, sections
from checkpoint import TRAIN_KEYS, load
from model import ModelConfig, build_model

torch_ram = align.torch_mirror()  # torch_ram.py
SMALL = {"patch_size": 4, "num_patches": 2, "glimpse_scale": 2, "num_glimpses": 3,
         "glimpse_hidden": 16, "loc_hidden": 16, "hidden_size": 32}


def test_check_passes_on_a_small_random_model():
    report = align.compare_frameworks(batch_size=8, sizes=SMALL, data_dir=MNIST_DIR)
    assert report.failures == 0, "\n".join(report.lines)
    # 5 tensors per glimpse, log_probas, 4 loss terms, 20 gradients, 2 later losses,
    # 20 weights after 3 Adam steps and the accuracy.
    assert len(report.lines) == 5 * 3 + 1 + 4 + 20 + 2 + 20 + 1


def test_check_catches_a_retina_that_looks_elsewhere(monkeypatch):
    foveate = torch_ram.Retina.foveate
    monkeypatch.setattr(torch_ram.Retina, "foveate", lambda self, x, l: foveate(self, x, l * 0.9))
    report = align.compare_frameworks(batch_size=8, sizes=SMALL, data_dir=MNIST_DIR)
    failed = [line.split("  ")[0].strip() for line in report.lines if line.endswith("FAIL")]
    assert "forward glimpse 1 h_t" in failed and report.failures > 10


def reference_checkpoint(path, steps=2):
    """A checkpoint as the reference's trainer writes it, after a few Adam steps."""
    torch.manual_seed(0)
    model = torch_ram.RecurrentAttention()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    for _ in range(steps):
        x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
        loss, _ = torch_ram.loss_fn(*model.episode(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    state = {"epoch": 7, "model_state": model.state_dict(), "optim_state": optimizer.state_dict(),
             "best_valid_acc": 91.5}
    torch.save(state, path)
    return state


def test_round_trip_gives_identical_tensors(tmp_path):
    original = reference_checkpoint(tmp_path / "ram_6_8x8_1_model_best.pth.tar")
    ours, back = tmp_path / "ours.pdparams", tmp_path / "back.pth.tar"
    align.main(["--torch_ckpt", str(tmp_path / "ram_6_8x8_1_model_best.pth.tar"), "--out", str(ours)])
    align.main(["--to_torch", str(ours), "--out", str(back)])
    again = torch.load(back, weights_only=True)
    assert again["model_state"].keys() == original["model_state"].keys()
    for name, value in original["model_state"].items():
        assert torch.equal(again["model_state"][name], value), name
    assert again["optim_state"]["state"].keys() == original["optim_state"]["state"].keys()
    for index, slot in original["optim_state"]["state"].items():
        for key, value in slot.items():
            assert torch.equal(again["optim_state"]["state"][index][key], value), (index, key)
    assert again["optim_state"]["param_groups"] == original["optim_state"]["param_groups"]
    assert (again["epoch"], again["best_valid_acc"]) == (7, 91.5)

    # Ours holds the weights in Paddle's layout, and main.py's loader accepts it.
    config = get_config(["--use_gpu=False"])
    with paddle.utils.unique_name.guard():
        state = load(str(ours), build_model(ModelConfig.from_options(config)), sections(config),
                     TRAIN_KEYS)
    weight = original["model_state"]["rnn.i2h.weight"].numpy()
    np.testing.assert_array_equal(np.asarray(state["model"]["rnn.i2h.weight"]), weight.T)
    assert state["epoch"] == 7 and state["best_valid_acc"] == 91.5


def test_converted_checkpoint_is_tested_by_main(tmp_path):
    reference_checkpoint(tmp_path / "ref.pth.tar")
    align.main(["--torch_ckpt", str(tmp_path / "ref.pth.tar"),
                "--out", str(tmp_path / "ckpt" / "ram_6_8x8_1/best.pdparams")])
    done = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "--use_gpu=False",
                           "--is_train=False", "--M", "1", "--data_dir",
                           str(write_fake_mnist(tmp_path / "mnist"))],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "(epoch 7, best valid acc 91.50%)" in done.stdout
    assert json.loads((tmp_path / "ckpt" / "ram_6_8x8_1/test.json").read_text())["total"] == 50


def test_refusals_are_one_line(tmp_path, capsys):
    assert "no file at" in refusal(align.main, "--torch_ckpt", str(tmp_path / "missing.pth.tar"))
    (tmp_path / "junk.pth.tar").write_bytes(b"not a checkpoint")
    assert "not a PyTorch checkpoint" in refusal(align.main, "--torch_ckpt", str(tmp_path / "junk.pth.tar"))
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pth.tar")
    assert "no model_state" in refusal(align.main, "--torch_ckpt", str(tmp_path / "other.pth.tar"))
    reference_checkpoint(tmp_path / "ref.pth.tar", steps=0)
    message = refusal(align.main, "--torch_ckpt", str(tmp_path / "ref.pth.tar"), "--num_patches", "3")
    assert "sensor.fc1 takes 64 inputs, but --num_patches 3 --patch_size 8 give 192" in message
    message = refusal(align.main, "--torch_ckpt", str(tmp_path / "ref.pth.tar"), "--hidden_size", "128")
    assert "--hidden_size 128, but the checkpoint's shapes say 256" in message
    paddle.save({"something": 1}, str(tmp_path / "foreign.pdparams"))
    assert "RAM-Paddle checkpoint" in refusal(align.main, "--to_torch",
                                                    str(tmp_path / "foreign.pdparams"))


def test_a_published_row_converts_to_the_reference_format(tmp_path):
    """A results/ checkpoint (float16 weights, no Adam state) becomes a reference checkpoint
    whose float32 weights are the published ones and whose optimizer state a fresh Adam
    loads; the default output, beside it in results/, is refused."""
    published = os.path.join(ROOT, "results", "mnist", "ram_6_8x8_1", "model.pdparams")
    assert "inside results/" in refusal(align.main, "--to_torch", published)
    out = tmp_path / "ram_6.pth.tar"
    align.main(["--to_torch", published, "--out", str(out)])
    converted = torch.load(out, weights_only=True)
    model = torch_ram.RecurrentAttention()
    model.load_state_dict(converted["model_state"])  # strict: every name and shape
    weights = paddle.load(published)["model"]
    for name, value in converted["model_state"].items():
        assert value.dtype == torch.float32
        expected = align.swap_layout(np.asarray(weights[name]).astype(np.float32))
        np.testing.assert_array_equal(value.numpy(), expected, err_msg=name)
    torch.optim.Adam(model.parameters()).load_state_dict(converted["optim_state"])
    assert converted["epoch"] == paddle.load(published)["epoch"]
