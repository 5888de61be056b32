"""The retina: every method against a per-image loop, the paper's canvases, zero padding."""
import numpy as np
import paddle
import pytest

from retina import METHODS, Retina


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


@pytest.mark.parametrize("pixels,table", [("8-bit", "float32"), ("any float", "float64")])
@pytest.mark.parametrize("size,num_patches", [(60, 3), (100, 4)])
def test_retina_on_the_papers_canvases_matches_loop_oracle(size, num_patches, pixels, table):
    """The translated and cluttered tasks' retinas: 12x12 patches, each next one twice as
    wide; canvases (whole 255ths) are counted in float32, other images summed in float64."""
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


def test_8_bit_images_too_large_for_exact_float32_counts_are_summed_in_float64():
    """Counts of 255ths stay exact in float32 while a sum stays below 2^24: a 256x256 white
    image sums to 16,711,680 255ths, one 257x257 to past 2^24, so it takes the float64 table,
    and the patch at its far corner still averages to exactly 1."""
    for side, table_type in [(256, "float32"), (257, "float64")]:
        images = paddle.ones([1, 1, side, side])
        retina = Retina(4, 2, 2, "numpy")
        assert retina.summed_area_table(images).dtype == table_type
        phi = retina.foveate(images, paddle.to_tensor([[0.99, 0.99]]))
        assert phi.numpy()[0, :16].min() == 1.0  # the sharp patch lies inside the image
