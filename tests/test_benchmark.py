"""benchmark.py runs and reports what the issue asks for; no timing is asserted."""
import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import paddle
import pytest

import benchmark
from config import get_config
from tests.helpers import ROOT
from trainer import Trainer

TINY = ["--json", "--repeats", "2", "--train_steps", "1", "--eval_batches", "1",
        "--retina_calls", "1", "--settle", "0"]


def shell_environment():
    """This process's environment without the OMP_NUM_THREADS=1 that importing Paddle
    put there, as a user's shell would start benchmark.py."""
    return {name: value for name, value in os.environ.items() if name != "OMP_NUM_THREADS"}


def run_benchmark(*args):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmark.py"), *TINY, *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=shell_environment())
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1  # one JSON line, nothing else on stdout
    return json.loads(lines[0])


def check_retina(retina_ms, methods):
    assert sorted(retina_ms) == sorted(methods)
    for by_image in retina_ms.values():
        assert sorted(by_image) == ["100x100", "28x28", "60x60"]
        assert all(ms > 0 for ms in by_image.values())


def test_paddle_only():
    result = run_benchmark()
    assert result["train_samples_per_s"] > 0 and result["eval_samples_per_s"] > 0
    check_retina(result["retina_ms"], ["loop", "numpy", "paddle"])
    assert "train_ratio" not in result and "torch" not in result["setup"]
    assert sorted(result["canvas"]) == ["100x100", "60x60"]
    for task in result["canvas"].values():
        assert task["train_samples_per_s"] > 0 and task["eval_samples_per_s"] > 0


def check_profile(result):
    for task in [result, *result["canvas"].values()]:  # 28x28 and each canvas task
        assert sorted(task["step_ms"]) == sorted(["retina", "forward (rest)", "loss", "backward",
                                                   "finite check", "adam"])


def test_compare_torch():
    pytest.importorskip("torch")
    result = run_benchmark("--compare-torch", "--profile")  # one run for both: they are slow
    check_profile(result)
    check_retina(result["retina_ms"], ["loop", "numpy", "paddle", "torch_loop"])
    for key in ["torch_train_samples_per_s", "torch_eval_samples_per_s"]:
        assert result[key] > 0
    # The ratios, rounded to 2 decimals, are those of the medians reported beside them.
    for ratio, paddle_rate, torch_rate in [("train_ratio", "train_samples_per_s",
                                            "torch_train_samples_per_s"),
                                           ("eval_ratio", "eval_samples_per_s",
                                            "torch_eval_samples_per_s")]:
        assert result[ratio] == pytest.approx(result[paddle_rate] / result[torch_rate],
                                              rel=0.01, abs=0.0051)
    # torch keeps its own default threads, not the OMP_NUM_THREADS=1 that Paddle's import sets.
    default = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                             capture_output=True, text=True, env=shell_environment())
    assert result["setup"]["torch_threads"] == int(default.stdout)


def test_inference():
    result = run_benchmark("--inference")
    ways = ["dygraph", "inference, oneDNN off", "inference, oneDNN on"]
    for task in ["28x28", "60x60"]:
        rates = result[task]
        assert all(rates[way] > 0 for way in ways)
        # Each ratio, rounded to 2 decimals, is that of the medians reported beside it.
        for way in ways[1:]:
            # 0.005 of the ratio's rounding, plus that of the integer rates beside it
            assert rates["ratios_to_dygraph"][way] == pytest.approx(rates[way] / rates["dygraph"],
                                                                   rel=0.01, abs=0.007)
    assert result["setup"]["M"] == 10 and result["setup"]["repeats"] == 2


def test_the_games_training_frames_a_second_at_64_games_and_the_recipes_batch():
    result = run_benchmark("--catch")
    assert [name.split(":")[0] for name in result] == [
        "train catch, 64 games a batch", "train catch, the recipe's batch"]
    assert all(frames > 0 for frames in result.values())


def test_the_floor_table_has_each_task_at_each_batch_and_shares_of_its_own_figures():
    result = run_benchmark("--floor", "--floor_batches", "8")
    assert list(result) == ["8", "game"]
    for batch, tasks in result.items():
        assert [name.split(",")[0] for name in tasks] == (
            ["Catch"] if batch == "game" else ["28x28", "60x60", "100x100"])
        for f in tasks.values():
            for what in ("train", "eval"):
                assert f[f"{what} now"] > 0 and f[f"{what} floor"] > 0
                assert f[f"{what} share"] == pytest.approx(f[f"{what} now"] / f[f"{what} floor"],
                                                          rel=0.01, abs=0.002)


def test_the_floor_counts_each_product_of_a_step_forward_and_backward():
    """28x28 with the defaults: per glimpse (T = 6) fc1..fc4, i2h, the locator's two layers
    and the baseline's; h2h from the second glimpse on (h_0 = 0); the classifier once. The
    backward pass needs dx only where a gradient flows: not into phi, l or the detached h of
    the locator and baseline, but into the locator's hidden layer from fc_lt."""
    config = get_config(["--batch_size", "4"])
    trainer = Trainer(config)
    x = paddle.to_tensor(np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype("float32"))
    calls = benchmark.training_calls(trainer.model, x)
    counts = Counter((tuple(w), dx) for _, w, dx in calls)
    assert counts == {((64, 128), False): 6, ((2, 128), False): 6,  # fc1 on phi, fc2 on l
                      ((128, 256), True): 12,  # fc3, fc4
                      ((256, 256), True): 6 + 5,  # i2h, h2h
                      ((256, 128), False): 6, ((128, 2), True): 6,  # the locator
                      ((256, 1), False): 6, ((256, 10), True): 1}  # baseline, classifier
    assert all(x[0] == 4 for x, _, _ in calls)


def test_the_floor_counts_both_products_of_each_lstm_step():
    """The game's core, nn.LSTMCell: each call makes the input's product and the state's (of
    zeros at the first glimpse, which no gradient reaches), weights (16, 4 x 16) here."""
    from model import ModelConfig, RecurrentAttention

    model = RecurrentAttention(ModelConfig(core="lstm", patch_size=4, glimpse_hidden=8,
                                           loc_hidden=8, hidden_size=16, num_glimpses=3))
    calls = benchmark.linear_calls(model, lambda: model(paddle.randn([5, 1, 12, 12])))
    cell = Counter(dx for x, w, dx in calls if tuple(w) == (16, 64))
    assert cell == {True: 3 + 2, False: 1}  # inputs g_t; states h_1, h_2 (h_0: zeros)
    assert all(x[0] == 5 for x, _, _ in calls)
