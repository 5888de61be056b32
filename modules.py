"""The six parts of the Recurrent Attention Model (Mnih et al., 2014).

Shapes use B for the batch, C, H, W for the image's channels, height and width,
g for the patch size and k for the number of patches per glimpse.
"""
import math

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.distribution import Normal


def linear(in_features, out_features):
    """nn.Linear initialised as PyTorch does (weight and bias uniform in
    +-1/sqrt(in_features)), so that training starts where the reference does.
    Its weight is (in_features, out_features), the transpose of PyTorch's."""
    bound = 1.0 / math.sqrt(in_features)
    init = nn.initializer.Uniform(-bound, bound)
    return nn.Linear(in_features, out_features, weight_attr=init, bias_attr=init)


class Retina:
    """Foveated glimpse sensor: k square patches centred on one location.

    The first patch is g x g, each next one glimpse_scale times wider; pixels
    outside the image are zeros. Each wider patch is average-pooled down to
    g x g, so the network sees the centre sharply and the surround coarsely.

    A location l is (column, row) in [-1, 1]^2, (-1, -1) the top-left corner.
    Its centre pixel is int(0.5 * (l + 1) * size) on each axis, as in the
    PyTorch reference, and a patch of side `size` covers the pixels
    [centre - size // 2, centre - size // 2 + size) on both axes.
    """

    def __init__(self, patch_size, num_patches, glimpse_scale):
        self.patch_size = patch_size
        self.num_patches = num_patches
        self.glimpse_scale = glimpse_scale
        # Integer scales keep every side a multiple of g, so pooling is exact.
        self.sizes = [patch_size * glimpse_scale**i for i in range(num_patches)]

    def patch_corners(self, locations, height, width):
        """Top-left pixel (row, column) of every patch.

        Args:
            locations: float32 array (B, 2) of (column, row) in [-1, 1].
        Returns:
            rows, cols: int64 arrays (B, k), possibly outside the image.
        """
        col_centre = (0.5 * ((locations[:, 0] + 1.0) * width)).astype(np.int64)
        row_centre = (0.5 * ((locations[:, 1] + 1.0) * height)).astype(np.int64)
        half = np.array([size // 2 for size in self.sizes])
        return row_centre[:, None] - half, col_centre[:, None] - half

    def extract_patches(self, images, locations):
        """Cut the k patches of every image with one fancy index per scale.

        Args:
            images: float32 array (B, C, H, W).
            locations: float32 array (B, 2).
        Returns:
            list of k float32 arrays (B, C, size_i, size_i).
        """
        B, C, H, W = images.shape
        pad = self.sizes[-1]
        padded = np.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        tops, lefts = self.patch_corners(locations, H, W)
        batch = np.arange(B)[:, None, None]
        patches = []
        for i, size in enumerate(self.sizes):
            # A padding of `pad` >= size means a corner outside [0, H + 2 pad - size]
            # belongs to a patch wholly outside the image: clipping moves it to
            # another all-zero place instead of out of the array.
            top = np.clip(tops[:, i] + pad, 0, H + 2 * pad - size)
            left = np.clip(lefts[:, i] + pad, 0, W + 2 * pad - size)
            offsets = np.arange(size)
            rows = (top[:, None] + offsets)[:, :, None]
            cols = (left[:, None] + offsets)[:, None, :]
            # Advanced indices around a slice put their dims first: (B, size, size, C).
            patches.append(padded[batch, :, rows, cols].transpose(0, 3, 1, 2))
        return patches

    def foveate(self, x, l):
        """The glimpse phi of every image at its location.

        Args:
            x: Tensor (B, C, H, W), the images.
            l: Tensor (B, 2), the locations.
        Returns:
            phi: float32 Tensor (B, k * C * g * g), patches in order of size,
            each flattened as (C, g, g), on x's device.
        """
        patches = self.extract_patches(x.numpy(), l.numpy())
        g = self.patch_size
        pooled = []
        for patch in patches:
            B, C, size, _ = patch.shape
            factor = size // g
            pooled.append(patch.reshape(B, C, g, factor, g, factor).mean(axis=(3, 5)))
        phi = np.concatenate(pooled, axis=1).reshape(len(x), -1)
        return paddle.to_tensor(phi, place=x.place)


class GlimpseNetwork(nn.Layer):
    """Mixes what the retina sees with where it looked:

        g_t = relu(fc3(relu(fc1(phi))) + fc4(relu(fc2(l))))

    Args:
        glimpse_hidden, loc_hidden: widths of fc1 and fc2.
        patch_size, num_patches, glimpse_scale: the Retina's g, k, s.
        channels: C, the image's channels.
    Input: x (B, C, H, W), l (B, 2). Output: g_t (B, glimpse_hidden + loc_hidden).
    """

    def __init__(self, glimpse_hidden, loc_hidden, patch_size, num_patches, glimpse_scale, channels):
        super().__init__()
        self.retina = Retina(patch_size, num_patches, glimpse_scale)
        self.fc1 = linear(num_patches * patch_size * patch_size * channels, glimpse_hidden)
        self.fc2 = linear(2, loc_hidden)
        self.fc3 = linear(glimpse_hidden, glimpse_hidden + loc_hidden)
        self.fc4 = linear(loc_hidden, glimpse_hidden + loc_hidden)

    def forward(self, x, l):
        phi = self.retina.foveate(x, l)
        what = self.fc3(F.relu(self.fc1(phi)))
        where = self.fc4(F.relu(self.fc2(l)))
        return F.relu(what + where)


class CoreNetwork(nn.Layer):
    """Rectifier RNN that accumulates the glimpses:

        h_t = relu(i2h(g_t) + h2h(h_{t-1}))

    Input: g_t (B, input_size), h_prev (B, hidden_size). Output: h_t (B, hidden_size).
    """

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.i2h = linear(input_size, hidden_size)
        self.h2h = linear(hidden_size, hidden_size)

    def forward(self, g_t, h_prev):
        return F.relu(self.i2h(g_t) + self.h2h(h_prev))


class LocationNetwork(nn.Layer):
    """Gaussian policy with a fixed std for where to look next:

        mu = tanh(fc_lt(relu(fc(h_t.detach()))))
        l_t = clamp(mu + std * noise, -1, 1)

    The detach keeps the policy's gradient (REINFORCE) out of the core network.
    The sample carries no gradient; log_pi is its log-density before the clamp,
    summed over the two coordinates, and the only path by which the loss reaches
    this network.

    Input: h_t (B, hidden_size). Output: l_t (B, 2) without gradient, log_pi (B,).
    """

    def __init__(self, hidden_size, std):
        super().__init__()
        self.std = std
        self.fc = linear(hidden_size, hidden_size // 2)
        self.fc_lt = linear(hidden_size // 2, 2)

    def forward(self, h_t):
        mu = paddle.tanh(self.fc_lt(F.relu(self.fc(h_t.detach()))))
        policy = Normal(mu, paddle.full([], self.std, dtype=mu.dtype))
        sample = policy.sample().detach()  # Normal.sample() is differentiable in Paddle
        log_pi = policy.log_prob(sample).sum(axis=1)
        return paddle.clip(sample, -1.0, 1.0), log_pi


class ActionNetwork(nn.Layer):
    """Classifies from the last hidden state: log_softmax(fc(h_T)).

    Input: h_t (B, hidden_size). Output: log-probabilities (B, num_classes).
    """

    def __init__(self, hidden_size, num_classes):
        super().__init__()
        self.fc = linear(hidden_size, num_classes)

    def forward(self, h_t):
        return F.log_softmax(self.fc(h_t), axis=1)


class BaselineNetwork(nn.Layer):
    """Predicts the expected reward, b_t = fc(h_t.detach()), to reduce the
    variance of REINFORCE. The detach keeps its regression loss out of the core.

    Input: h_t (B, hidden_size). Output: b_t (B,).
    """

    def __init__(self, hidden_size):
        super().__init__()
        self.fc = linear(hidden_size, 1)

    def forward(self, h_t):
        return self.fc(h_t.detach()).squeeze(1)
