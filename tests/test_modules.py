"""Shapes and maths of the six modules; the retina against a per-image loop."""
import dataclasses
import math

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from model import RecurrentAttention
from modules import (ActionNetwork, BaselineNetwork, CoreNetwork, GlimpseNetwork, LocationNetwork,
                     Linear, ModelConfig, Retina)


def retina_oracle(images, locations, patch_size, num_patches, glimpse_scale):
    """The retina written the slow, obvious way: per image and scale, copy the
    pixels inside the image into a zero patch, then average-pool it to g x g."""
    B, C, H, W = images.shape
    phi = []
    for b in range(B):
        col = int(0.5 * (float(np.float32(locations[b, 0]) + np.float32(1.0)) * W))
        row = int(0.5 * (float(np.float32(locations[b, 1]) + np.float32(1.0)) * H))
        glimpse = []
        size = patch_size
        for _ in range(num_patches):
            patch = np.zeros((C, size, size), np.float32)
            top, left = row - size // 2, col - size // 2
            for r in range(size):
                for c in range(size):
                    if 0 <= top + r < H and 0 <= left + c < W:
                        patch[:, r, c] = images[b, :, top + r, left + c]
            f = size // patch_size
            pooled = np.zeros((C, patch_size, patch_size), np.float32)
            for r in range(patch_size):
                for c in range(patch_size):
                    pooled[:, r, c] = patch[:, r * f:(r + 1) * f, c * f:(c + 1) * f].mean(axis=(1, 2))
            glimpse.append(pooled)
            size *= glimpse_scale
        phi.append(np.concatenate(glimpse).reshape(-1))
    return np.stack(phi)


def random_locations(rng, batch):
    """Uniform locations plus corners, edges and places far outside the image."""
    special = np.array([[-1, -1], [1, 1], [-1, 1], [1, -1], [0, 0], [0.999, -0.999],
                        [-3.5, 0.2], [0.1, 4.0], [-7, -9], [2.2, 2.2]], np.float32)
    uniform = rng.uniform(-1.2, 1.2, size=(batch - len(special), 2)).astype(np.float32)
    return np.concatenate([special, uniform])


METHODS = ["auto", "numpy", "paddle", "loop"]


@pytest.mark.parametrize("num_patches", [1, 2, 3])
@pytest.mark.parametrize("glimpse_scale", [1, 2])
@pytest.mark.parametrize("channels,height,width,patch_size", [(1, 28, 28, 8), (3, 13, 17, 5),
                                                              (1, 21, 21, 3)])
def test_every_retina_method_matches_loop_oracle(num_patches, glimpse_scale, channels, height,
                                                 width, patch_size):
    rng = np.random.default_rng(num_patches * 10 + glimpse_scale)
    images = rng.normal(size=(24, channels, height, width)).astype(np.float32)
    locations = random_locations(rng, 24)
    expected = retina_oracle(images, locations, patch_size, num_patches, glimpse_scale)
    for method in METHODS:
        retina = Retina(patch_size, num_patches, glimpse_scale, method)
        phi = retina.foveate(paddle.to_tensor(images), paddle.to_tensor(locations))
        assert phi.shape == [24, num_patches * channels * patch_size ** 2], method
        np.testing.assert_allclose(phi.numpy(), expected, rtol=1e-5, atol=1e-6, err_msg=method)


@pytest.mark.parametrize("pixels,table", [("8-bit", "int32"), ("any float", "float64")])
@pytest.mark.parametrize("size,num_patches", [(60, 3), (100, 4)])
def test_retina_on_the_papers_canvases_matches_loop_oracle(size, num_patches, pixels, table):
    """The translated and cluttered tasks' retinas: 12x12 patches, each next one twice as
    wide; canvases (whole 255ths) are summed in integers, other images in float64."""
    rng = np.random.default_rng(size)
    images = rng.uniform(size=(16, 1, size, size)).astype(np.float32)
    if pixels == "8-bit":
        images = (rng.integers(0, 256, size=images.shape) / 255).astype(np.float32)
    locations = random_locations(rng, 16)
    expected = retina_oracle(images, locations, 12, num_patches, 2)
    assert Retina(12, num_patches, 2, "numpy").summed_area_table(paddle.to_tensor(images)).dtype == table
    for method in METHODS:
        phi = Retina(12, num_patches, 2, method).foveate(paddle.to_tensor(images),
                                                         paddle.to_tensor(locations))
        np.testing.assert_allclose(phi.numpy(), expected, rtol=1e-5, atol=1e-6, err_msg=method)


@pytest.mark.parametrize("size,patch_size,num_patches,glimpse_scale", [(28, 8, 1, 1), (60, 12, 3, 2)])
def test_every_retina_method_reads_image_n_mod_b_for_location_n(size, patch_size, num_patches,
                                                                glimpse_scale):
    """Evaluation's M glimpse paths per image: 3 locations per image, the images not copied."""
    rng = np.random.default_rng(size)
    images = rng.uniform(size=(5, 2, size, size)).astype(np.float32)
    locations = random_locations(rng, 15)
    expected = retina_oracle(np.tile(images, (3, 1, 1, 1)), locations, patch_size, num_patches,
                             glimpse_scale)
    for method in METHODS:
        retina = Retina(patch_size, num_patches, glimpse_scale, method)
        phi = retina.foveate(paddle.to_tensor(images), paddle.to_tensor(locations))
        np.testing.assert_allclose(phi.numpy(), expected, rtol=1e-5, atol=1e-6, err_msg=method)


@pytest.mark.parametrize("method", METHODS)
def test_retina_centre_pixel_and_zero_padding(method):
    images = np.arange(28 * 28, dtype=np.float32).reshape(1, 1, 28, 28) + 1
    retina = Retina(2, 1, 1, method)
    # Centre (row 14, col 14): the 2x2 patch covers rows 13-14, cols 13-14.
    phi = retina.foveate(paddle.to_tensor(images), paddle.zeros([1, 2])).numpy()
    np.testing.assert_array_equal(phi[0], [13 * 28 + 14, 13 * 28 + 15, 14 * 28 + 14, 14 * 28 + 15])
    # l[:, 0] is the column: l = (-1, 0) centres on column 0, row 14, half outside.
    phi = retina.foveate(paddle.to_tensor(images), paddle.to_tensor([[-1.0, 0.0]])).numpy()
    np.testing.assert_array_equal(phi[0], [0, 13 * 28 + 1, 0, 14 * 28 + 1])
    far = Retina(4, 2, 2, method).foveate(paddle.to_tensor(images), paddle.to_tensor([[5.0, -5.0]]))
    assert not far.numpy().any()


def test_retina_refuses_unknown_method():
    with pytest.raises(ValueError, match="retina method"):
        Retina(8, 1, 1, "fft")


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
        model = RecurrentAttention(ModelConfig(12, 3, 2, glimpse_hidden=16, loc_hidden=16, std=0.1,
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
    model = RecurrentAttention(ModelConfig(12, 3, 2, glimpse_hidden=16, loc_hidden=16, std=0.1,
                                               hidden_size=32, num_glimpses=3, retina_method=method))
    shared = model(paddle.to_tensor(x), l_0, noise, repeats=3)
    tiled = model(paddle.to_tensor(np.tile(x, (3, 1, 1, 1))), l_0, noise)
    for got, want in zip(shared, tiled):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)


def test_each_width_reaches_its_layer():
    """glimpse_hidden and loc_hidden given by name, unequal: a swap would show."""
    from config import get_config
    from trainer import build_model

    model = build_model(get_config(["--use_gpu=False", "--glimpse_hidden", "24",
                                    "--loc_hidden", "20", "--hidden_size", "32"]))
    assert model.sensor.fc1.weight.shape == [64, 24] and model.sensor.fc2.weight.shape == [2, 20]
    assert model.sensor.fc3.weight.shape == [24, 44] and model.sensor.fc4.weight.shape == [20, 44]
    assert model.rnn.i2h.weight.shape == [44, 32] and model.locator.fc.weight.shape == [32, 16]


@pytest.mark.parametrize("options,name", [(["--model", "fc", "--fc_hidden", "64"], "fc64_translated60"),
                                          (["--model", "conv"], "conv_translated60")])
def test_baselines_see_the_whole_image_and_take_no_glimpse(options, name):
    from config import get_config, model_name
    from trainer import build_model, ram_loss
    config = get_config(["--use_gpu=False", "--dataset", "translated", *options])
    assert model_name(config) == name
    model = build_model(config)
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
