"""Shapes and maths of the small networks."""
import math

import numpy as np
import paddle

from model import ModelConfig
from modules import (ActionNetwork, BaselineNetwork, CoreNetwork, GlimpseNetwork, LocationNetwork,
                     Linear)


def test_linear_init_is_pytorch_like():
    paddle.seed(0)
    layer = Linear(400, 300)
    bound = 1 / math.sqrt(400)
    for param in (layer.weight, layer.bias):
        values = param.numpy()
        assert np.abs(values).max() <= bound
        assert np.abs(values).max() > 0.95 * bound  # spread over the whole range, not Xavier's
    assert layer.weight.shape == [400, 300]


def plain(layer, x):
    """The layer as F.linear computes it: the unfused formula."""
    return paddle.nn.functional.linear(x, layer.weight, layer.bias)


def values_and_grads(output, layer):
    weights = paddle.to_tensor(np.random.default_rng(1).normal(size=output.shape), "float32")
    grads = paddle.grad((output * weights).sum(), layer.parameters())
    return [output.numpy()] + [grad.numpy() for grad in grads]


def test_networks_compute_their_formulas():
    """With Linear's addmm, the networks give the docstrings' formulas as F.linear
    computes them: values and gradients."""
    paddle.seed(5)
    relu = paddle.nn.functional.relu
    x, l = paddle.randn([16, 2, 12, 12]), paddle.uniform([16, 2], min=-1, max=1)
    glimpse = GlimpseNetwork(ModelConfig(patch_size=4, num_patches=2, glimpse_scale=2, channels=2,
                                         glimpse_hidden=24, loc_hidden=20))
    phi = glimpse.retina.foveate(x, l)
    expected = relu(plain(glimpse.fc3, relu(plain(glimpse.fc1, phi)))
                    + plain(glimpse.fc4, relu(plain(glimpse.fc2, l))))
    for got, want in zip(values_and_grads(glimpse(x, l), glimpse),
                         values_and_grads(expected, glimpse)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

    core = CoreNetwork(44, 32)
    g_t, h_prev = paddle.randn([16, 44]), paddle.randn([16, 32])
    expected = relu(plain(core.i2h, g_t) + plain(core.h2h, h_prev))
    h_t, state = core(g_t, h_prev)
    assert state is h_t
    for got, want in zip(values_and_grads(h_t, core), values_and_grads(expected, core)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_each_networks_written_out_gradients_are_autograds():
    """gradients() of the glimpse, core and location networks, over R rows (the batched
    backward pass, model.Glimpses) against paddle.grad of the same loss; the core's back
    through T = 3 glimpses from dL/dh_T alone."""
    paddle.seed(6)
    T, N = 3, 5
    x, l = paddle.randn([T * N, 2, 12, 12]), paddle.uniform([T * N, 2], min=-1, max=1)
    glimpse = GlimpseNetwork(ModelConfig(patch_size=4, num_patches=2, glimpse_scale=2, channels=2,
                                         glimpse_hidden=24, loc_hidden=20))
    d_g = paddle.randn([T * N, 44])
    values = glimpse.values(x, l)
    want = paddle.grad((values[-1] * d_g).sum(), glimpse.parameters())
    check_gradients(glimpse.gradients(values, l, d_g), want)

    core = CoreNetwork(44, 32)
    g = paddle.randn([T * N, 44])
    g.stop_gradient = False
    h_t, h = None, []
    for t in range(T):
        h_t, _ = core(g[t * N:(t + 1) * N], h_t)
        h.append(h_t)
    d_h_last = paddle.randn([N, 32])
    want = paddle.grad((h_t * d_h_last).sum(), core.parameters() + [g])
    weights, d_g = core.gradients(g, paddle.concat(h), d_h_last)
    check_gradients(weights + [d_g], want)

    locator = LocationNetwork(32, 0.1)
    h = paddle.randn([T * N, 32])
    _, _, (hidden, mu) = locator.choose(h)
    d_mu = paddle.randn([T * N, 2])
    want = paddle.grad((mu * d_mu).sum(), locator.parameters())
    check_gradients(locator.gradients(h, (hidden, mu), d_mu), want)


def check_gradients(got, want):
    assert len(got) == len(want)
    for got_one, want_one in zip(got, want):
        np.testing.assert_allclose(got_one.numpy(), want_one.numpy(), rtol=1e-5, atol=1e-6)


def test_module_shapes():
    B = 5
    x = paddle.randn([B, 3, 20, 20])
    l = paddle.uniform([B, 2], min=-1, max=1)
    g_t = GlimpseNetwork(ModelConfig(patch_size=4, num_patches=2, glimpse_scale=2, channels=3,
                                     glimpse_hidden=32, loc_hidden=16))(x, l)
    assert g_t.shape == [B, 48]
    h_t, _ = CoreNetwork(48, 64)(g_t, paddle.zeros([B, 64]))
    assert h_t.shape == [B, 64]
    l_t, log_pi = LocationNetwork(64, 0.1)(h_t)
    assert l_t.shape == [B, 2] and log_pi.shape == [B]
    assert float(l_t.abs().max()) <= 1.0 and l_t.stop_gradient
    log_probas = ActionNetwork(64, 7)(h_t)
    assert log_probas.shape == [B, 7]
    np.testing.assert_allclose(paddle.exp(log_probas).sum(axis=1).numpy(), 1.0, rtol=1e-5)
    assert BaselineNetwork(64)(h_t).shape == [B]


def test_location_log_pi_is_density_of_unclamped_sample():
    paddle.seed(3)
    std = 0.5  # wide enough that many samples fall outside [-1, 1] and get clamped
    net = LocationNetwork(8, std)
    h_t = paddle.randn([256, 8])
    l_t, log_pi = net(h_t)
    mu = paddle.tanh(net.fc_lt(paddle.nn.functional.relu(net.fc(h_t)))).numpy()
    # Recover the unclamped sample where no clamp happened and check its density.
    inside = (np.abs(l_t.numpy()) < 1).all(axis=1)
    assert 10 < inside.sum() < 256
    z = (l_t.numpy() - mu) / std
    density = (-0.5 * z ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)).sum(axis=1)
    np.testing.assert_allclose(log_pi.numpy()[inside], density[inside], rtol=1e-4, atol=1e-4)
    # Where a clamp happened, the unclamped sample lay further from mu than the clamped
    # point, so log_pi is lower than the clamped point's density (equal if taken after).
    gap = density[~inside] - log_pi.numpy()[~inside]
    assert (gap > -1e-4).all() and gap.sum() > 1.0


def test_location_draws_are_those_of_paddle_distribution_normal():
    """The policy's sampling, written out, draws what Normal(mu, std).sample() draws from
    the same RNG state (runs and checkpoints from before it continue alike), and its
    log_pi is Normal's log_prob to float rounding."""
    from paddle.distribution import Normal
    net = LocationNetwork(16, 0.1)
    h_t = paddle.randn([64, 16])
    mu = paddle.tanh(net.fc_lt(paddle.nn.functional.relu(net.fc(h_t))))
    paddle.seed(11)
    l_t, log_pi = net(h_t)
    paddle.seed(11)
    policy = Normal(mu, paddle.full([], 0.1))
    sample = policy.sample()
    np.testing.assert_array_equal(l_t.numpy(), paddle.clip(sample, -1.0, 1.0).numpy())
    np.testing.assert_allclose(log_pi.numpy(), policy.log_prob(sample).sum(axis=1).numpy(),
                               rtol=1e-6, atol=1e-5)
