"""The whole model: one episode, shared tables, repeats, widths, the baselines, random glimpses."""
import dataclasses

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from model import ModelConfig, RecurrentAttention, evaluate, ram_loss
from tests.test_retina import random_locations


@pytest.mark.parametrize("method", ["numpy", "paddle"])
def test_model_shares_one_table_between_glimpses_and_matches_the_loop(method):
    """The model makes the summed-area table once and passes it to every glimpse:
    its episode equals the loop oracle's, which makes none."""
    rng = np.random.default_rng(3)
    x = paddle.to_tensor(rng.uniform(size=(8, 1, 60, 60)).astype(np.float32))
    l_0 = paddle.to_tensor(random_locations(rng, 10)[:8])
    noise = paddle.to_tensor(rng.normal(size=(8, 4, 2)).astype(np.float32))
    outputs = {}
    for name in ("loop", method):
        paddle.seed(0)
        model = RecurrentAttention(ModelConfig(patch_size=12, num_patches=3, glimpse_scale=2, glimpse_hidden=16, loc_hidden=16, std=0.1,
                                                   hidden_size=32, num_glimpses=4, retina_method=name))
        outputs[name] = [t.numpy() for t in model(x, l_0, noise)]
    for got, want in zip(outputs[method], outputs["loop"]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["numpy", "paddle", "loop"])
def test_repeats_give_the_episodes_of_the_tiled_images(method):
    """model(x, repeats=M) is model(tile(x, M)) without copying x or its table."""
    rng = np.random.default_rng(4)
    x = rng.uniform(size=(4, 1, 60, 60)).astype(np.float32)
    l_0 = paddle.to_tensor(random_locations(rng, 12))
    noise = paddle.to_tensor(rng.normal(size=(12, 3, 2)).astype(np.float32))
    paddle.seed(0)
    model = RecurrentAttention(ModelConfig(patch_size=12, num_patches=3, glimpse_scale=2, glimpse_hidden=16, loc_hidden=16, std=0.1,
                                               hidden_size=32, num_glimpses=3, retina_method=method))
    shared = model(paddle.to_tensor(x), l_0, noise, repeats=3)
    tiled = model(paddle.to_tensor(np.tile(x, (3, 1, 1, 1))), l_0, noise)
    for got, want in zip(shared, tiled):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("retina", [dict(patch_size=8), dict(patch_size=12, num_patches=3,
                                                              glimpse_scale=2)])
def test_training_takes_evaluations_glimpses_with_autograds_gradients(retina):
    """Training's forward pass (batched: its backward pass written out, model.Glimpses)
    gives exactly the outputs of the glimpse-by-glimpse one that evaluation runs, and
    autograd's gradients of the whole loss through it, to float rounding."""
    rng = np.random.default_rng(7)
    x = paddle.to_tensor(rng.uniform(size=(12, 1, 60, 60)).astype(np.float32))
    l_0 = paddle.to_tensor(random_locations(rng, 12))
    noise = paddle.to_tensor(rng.normal(size=(12, 4, 2)).astype(np.float32))
    labels = paddle.to_tensor(rng.integers(0, 10, 12))
    paddle.seed(0)
    model = RecurrentAttention(ModelConfig(**retina, glimpse_hidden=16, loc_hidden=12, std=0.1,
                                           hidden_size=32, num_glimpses=4))
    results = []
    for forward in (model.glimpse_by_glimpse, model.batched):
        outputs = forward(x, l_0, noise)
        model.clear_gradients()
        ram_loss(*outputs[:3], labels).total.backward()
        results.append(([t.numpy() for t in outputs],
                        [p.grad.numpy() for p in model.parameters()]))
    (outputs, grads), (batched_outputs, batched_grads) = results
    for got, want in zip(batched_outputs, outputs):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(batched_grads, grads):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_no_two_parameters_share_one_gradient_tensor():
    """Glimpses' backward pass gives the two biases summed alike (fc3 and fc4, i2h and h2h)
    a tensor each: a gradient accumulated or reduced in place never reaches two weights."""
    model = RecurrentAttention(ModelConfig(patch_size=4, glimpse_hidden=8, loc_hidden=8,
                                           hidden_size=16, num_glimpses=3))
    outputs = model(paddle.randn([5, 1, 12, 12]))
    ram_loss(*outputs[:3], paddle.to_tensor([0, 1, 2, 3, 4])).total.backward()
    pointers = [p.grad.data_ptr() for p in model.parameters()]
    assert len(set(pointers)) == len(pointers)


@pytest.mark.parametrize("options,training,batched", [
    ({}, True, True), ({}, False, False), (dict(core="lstm"), True, False),
    (dict(random_glimpses=True), True, False)])
def test_only_training_of_the_rectifier_core_takes_the_batched_path(options, training, batched):
    """Training (grad on, train mode) with the paper's core takes Glimpses; evaluation, an
    LSTM core and random glimpses take their glimpses one by one (RecurrentAttention.step)."""
    model = RecurrentAttention(ModelConfig(patch_size=4, glimpse_hidden=8, loc_hidden=8,
                                           hidden_size=16, num_glimpses=2, **options))
    taken = []
    for path in ("batched", "glimpse_by_glimpse"):
        method = getattr(model, path)
        setattr(model, path, lambda *args, path=path, method=method: taken.append(path) or method(*args))
    model.train(training)
    with paddle.set_grad_enabled(training):
        model(paddle.randn([3, 1, 12, 12]))
    assert taken == ["batched" if batched else "glimpse_by_glimpse"]


def test_each_width_reaches_its_layer():
    """glimpse_hidden and loc_hidden given by name, unequal: a swap would show."""
    from config import get_config
    from model import ModelConfig, build_model

    model = build_model(ModelConfig.from_options(get_config(
        ["--use_gpu=False", "--glimpse_hidden", "24", "--loc_hidden", "20", "--hidden_size", "32"])))
    assert model.sensor.fc1.weight.shape == [64, 24] and model.sensor.fc2.weight.shape == [2, 20]
    assert model.sensor.fc3.weight.shape == [24, 44] and model.sensor.fc4.weight.shape == [20, 44]
    assert model.rnn.i2h.weight.shape == [44, 32] and model.locator.fc.weight.shape == [32, 16]


@pytest.mark.parametrize("options,name", [(["--model", "fc", "--fc_hidden", "64"], "fc64_translated60"),
                                          (["--model", "conv"], "conv_translated60")])
def test_baselines_see_the_whole_image_and_take_no_glimpse(options, name):
    from config import get_config, model_name
    from model import ModelConfig, build_model, ram_loss
    config = get_config(["--use_gpu=False", "--dataset", "translated", *options])
    assert model_name(config) == name
    model = build_model(ModelConfig.from_options(config))
    x = paddle.rand([5, 1, 60, 60])
    log_probas, log_pi, baselines, locations = model(x, repeats=3)
    assert log_probas.shape == [15, 10] and log_pi.shape == [15, 0] and locations.shape == [15, 0, 2]
    np.testing.assert_allclose(np.exp(log_probas.numpy()).sum(1), 1, rtol=1e-5)
    np.testing.assert_array_equal(log_probas[:5].numpy(), log_probas[10:].numpy())  # paths alike
    # Every pixel counts: changing one far from the centre changes the answer.
    moved = x.clone()
    moved[:, :, 2, 57] += 1
    assert not np.allclose(model(moved)[0].numpy(), log_probas[:5].numpy())
    labels = paddle.to_tensor([0, 1, 2, 3, 4])
    loss = ram_loss(log_probas[:5], log_pi[:5], baselines[:5], labels)
    assert float(loss.baseline) == 0 and float(loss.reinforce) == 0
    assert float(loss.total) == pytest.approx(float(F.nll_loss(log_probas[:5], labels)))


def test_random_glimpses_ignore_the_policy():
    config = ModelConfig(patch_size=4, num_patches=2, glimpse_scale=2, num_glimpses=4,
                         glimpse_hidden=16, loc_hidden=16, hidden_size=32)
    paddle.seed(3)
    policy = RecurrentAttention(config)
    paddle.seed(3)
    random = RecurrentAttention(dataclasses.replace(config, random_glimpses=True))
    x = paddle.rand([6, 1, 28, 28])
    l_0 = paddle.zeros([6, 2])
    noise = paddle.zeros([6, 4, 2])  # the policy's mean, the same every time
    _, log_pi, _, locations = random(x, l_0, noise)
    _, policy_log_pi, _, policy_locations = policy(x, l_0, noise)
    assert float(log_pi.abs().sum()) == 0 and float(policy_log_pi.abs().sum()) > 0
    assert float(locations.abs().max()) <= 1
    # The same weights and noise: the first glimpse alike, the next ones anywhere.
    np.testing.assert_array_equal(locations[:, 0].numpy(), policy_locations[:, 0].numpy())
    assert not np.allclose(locations[:, 1:].numpy(), policy_locations[:, 1:].numpy())


def test_loss_matches_hand_computation():
    log_probas = np.log(np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]], np.float32))
    log_pi = np.array([[-1.0, 0.5], [2.0, -0.25]], np.float32)
    baselines = np.array([[0.2, 0.6], [0.9, -0.1]], np.float32)
    labels = np.array([0, 1])  # first right (argmax 0), second wrong (argmax 2)
    loss = ram_loss(*map(paddle.to_tensor, (log_probas, log_pi, baselines, labels)))
    R = np.array([[1.0, 1.0], [0.0, 0.0]])
    nll = -(np.log(0.7) + np.log(0.3)) / 2
    mse = ((baselines - R) ** 2).mean()
    reinforce = (-log_pi * (R - baselines)).sum(axis=1).mean()
    np.testing.assert_allclose(float(loss.total), nll + mse + 0.01 * reinforce, rtol=1e-6)
    for term, expected in [(loss.action, nll), (loss.baseline, mse), (loss.reinforce, reinforce)]:
        np.testing.assert_allclose(float(term), expected, rtol=1e-6)
    np.testing.assert_array_equal(loss.reward.numpy(), [1.0, 0.0])


def test_several_paths_centre_each_reward_on_the_images_other_paths():
    # 3 paths of 2 images, rows m * 2 + b; image 0 right on paths 0 and 1, image 1 on path 2.
    right = np.array([1, 0, 1, 0, 0, 1], np.float32)
    labels = np.array([0, 1, 0, 1, 0, 1])
    log_probas = np.log(np.where(right[:, None] == 1, np.eye(3)[labels], np.eye(3)[2]) * 0.98 + 0.01)
    log_pi = (np.arange(12, dtype=np.float32).reshape(6, 2) ** 2) / 10
    baselines = np.full((6, 2), 0.5, np.float32)
    loss = ram_loss(*map(paddle.to_tensor, (log_probas.astype(np.float32), log_pi, baselines,
                                            labels)), paths=3)
    np.testing.assert_array_equal(loss.reward.numpy(), right)
    # Image 0's rewards over its paths (rows 0, 2, 4) are 1, 1, 0; image 1's (1, 3, 5) 0, 0, 1.
    others = np.array([(1 + 0) / 2, (0 + 1) / 2, (1 + 0) / 2, (0 + 1) / 2, (1 + 1) / 2, (0 + 0) / 2])
    expected = (-log_pi * (right - others)[:, None]).sum(axis=1).mean()
    assert float(loss.reinforce) == pytest.approx(expected, rel=1e-6)
    # The learned baseline is still fitted, but no longer centres R.
    assert float(loss.baseline) == pytest.approx(0.25)


def test_loss_refuses_column_labels():
    with pytest.raises(ValueError, match=r"\(B,\)"):
        ram_loss(paddle.zeros([4, 10]), paddle.zeros([4, 2]), paddle.zeros([4, 2]),
                 paddle.zeros([4, 1], dtype="int64"))


def grads_after(loss_part):
    """Gradients of every parameter after backpropagating one part of the loss."""
    paddle.seed(0)
    model = RecurrentAttention(ModelConfig(patch_size=4, glimpse_hidden=8, loc_hidden=8, std=0.1,
                                           hidden_size=16, num_glimpses=3))
    log_probas, log_pi, baselines, _ = model(paddle.randn([6, 1, 12, 12]))
    labels = paddle.to_tensor([0, 1, 2, 3, 4, 5])
    getattr(ram_loss(log_probas, log_pi, baselines, labels), loss_part).backward()
    return {name: (0.0 if p.grad is None else float(p.grad.abs().sum()))
            for name, p in model.named_parameters()}


def test_classification_loss_does_not_reach_location_network():
    grads = grads_after("action")
    assert all(grads[n] == 0 for n in grads if n.startswith(("locator", "baseliner")))
    assert grads["rnn.h2h.weight"] > 0 and grads["sensor.fc1.weight"] > 0


def test_reinforce_reaches_only_the_location_network():
    grads = grads_after("reinforce")
    assert grads["locator.fc.weight"] > 0 and grads["locator.fc_lt.weight"] > 0
    # The sampled locations carry no gradient and h_t is detached: nothing else moves.
    assert all(grads[n] == 0 for n in grads if not n.startswith("locator"))


def test_baseline_loss_reaches_only_the_baseline():
    grads = grads_after("baseline")
    assert grads["baseliner.fc.weight"] > 0
    assert all(grads[n] == 0 for n in grads if not n.startswith("baseliner"))


class FixedModel:
    """Stands in for RecurrentAttention: returns preset log-probabilities for
    M * B episodes and records the images and repeats it was given."""

    def __init__(self, log_probas):
        self.log_probas = log_probas

    def eval(self):
        pass

    def __call__(self, x, repeats=1):
        self.seen = (x.numpy(), repeats)
        n, T = len(x) * repeats, 2
        return (paddle.to_tensor(self.log_probas), paddle.zeros([n, T]), paddle.zeros([n, T]),
                paddle.zeros([n, T, 2]))


def test_evaluate_averages_log_probas_over_repeats():
    # Two images, M = 3: image 0's first path says class 1, but the average says 0.
    p = np.array([[0.4, 0.6], [0.9, 0.1],    # repeat 0 (image 0, image 1)
                  [0.9, 0.1], [0.9, 0.1],    # repeat 1
                  [0.9, 0.1], [0.1, 0.9]],   # repeat 2
                 np.float32)
    x = np.arange(2 * 1 * 2 * 2, dtype=np.float32).reshape(2, 1, 2, 2)
    loader = [(paddle.to_tensor(x), paddle.to_tensor([0, 0]))]
    model = FixedModel(np.log(p))
    loss, acc, correct, total = evaluate(model, loader, M=3)
    np.testing.assert_array_equal(model.seen[0], x)  # the images once, with M paths each
    assert model.seen[1] == 3
    assert (correct, total, acc) == (2, 2, 100.0)
    mean_log_p = np.log(p).reshape(3, 2, 2).mean(axis=0)
    baseline_loss = 1.0  # baselines 0, rewards 1
    np.testing.assert_allclose(loss, -mean_log_p[:, 0].mean() + baseline_loss, rtol=1e-5)
