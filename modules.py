"""The small networks of the Recurrent Attention Model (Mnih et al., 2014); the retina is
retina.py's.

Shapes use B for the batch, C, H, W for the image's channels, height and width,
g for the patch size and k for the number of patches per glimpse.
"""
import math

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from retina import Retina


class Linear(nn.Linear):
    """nn.Linear initialised as PyTorch does (weight and bias uniform in
    +-1/sqrt(in_features)), so that training starts where the reference does.
    Its weight is (in_features, out_features), the transpose of PyTorch's.

    forward is x @ weight + bias as one addmm: F.linear adds the bias with a
    separate broadcast add, which is slow on CPU next to this model's small matmuls.
    Input: (B, in_features). Output: (B, out_features).
    """

    def __init__(self, in_features, out_features):
        bound = 1.0 / math.sqrt(in_features)
        init = nn.initializer.Uniform(-bound, bound)
        super().__init__(in_features, out_features, weight_attr=init, bias_attr=init)

    def forward(self, x):
        return paddle.addmm(self.bias, x, self.weight)


class GlimpseNetwork(nn.Layer):
    """Mixes what the retina sees with where it looked:

        g_t = relu(fc3(relu(fc1(phi))) + fc4(relu(fc2(l))))

    Built from a ModelConfig: the Retina's patch_size, num_patches, glimpse_scale and
    retina_method, the channels C, and the widths glimpse_hidden (fc1) and loc_hidden (fc2).
    Input: x (B, C, H, W), l (N, 2), N a multiple of B (see Retina.foveate) and,
    optionally, table: the retina's summed_area_table(x), kept by the caller for all
    of the batch's glimpses.
    Output: g_t (N, glimpse_hidden + loc_hidden).
    """

    def __init__(self, config):
        super().__init__()
        c = config
        self.retina = Retina(c.patch_size, c.num_patches, c.glimpse_scale, c.retina_method)
        self.fc1 = Linear(c.num_patches * c.patch_size * c.patch_size * c.channels, c.glimpse_hidden)
        self.fc2 = Linear(2, c.loc_hidden)
        self.fc3 = Linear(c.glimpse_hidden, c.glimpse_hidden + c.loc_hidden)
        self.fc4 = Linear(c.loc_hidden, c.glimpse_hidden + c.loc_hidden)

    def forward(self, x, l, table=None):
        phi = self.retina.foveate(x, l, table)
        what = self.fc3(F.relu(self.fc1(phi)))
        where = self.fc4(F.relu(self.fc2(l)))
        return F.relu(what + where)


class CoreNetwork(nn.Layer):
    """Rectifier RNN that accumulates the glimpses:

        h_t = relu(i2h(g_t) + h2h(h_{t-1}))

    Input: g_t (B, input_size), h_prev (B, hidden_size) or None for h_0 = 0, whose
    h2h is its bias alone (exactly: no batch size is needed to make zeros, so a
    traced graph takes any). Output: h_t (B, hidden_size), twice: the output and the
    state, as paddle.nn.LSTMCell returns them, so that either can be the core.
    """

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.i2h = Linear(input_size, hidden_size)
        self.h2h = Linear(hidden_size, hidden_size)

    def forward(self, g_t, h_prev=None):
        recurrent = self.h2h.bias if h_prev is None else self.h2h(h_prev)
        h_t = F.relu(self.i2h(g_t) + recurrent)
        return h_t, h_t


class LocationNetwork(nn.Layer):
    """Gaussian policy with a fixed std for where to look next:

        mu = tanh(fc_lt(relu(fc(h_t.detach()))))
        l_t = clamp(mu + std * noise, -1, 1)

    The detach keeps the policy's gradient (REINFORCE) out of the core network.
    The sample carries no gradient; log_pi is its log-density before the clamp,
    summed over the two coordinates, and the only path by which the loss reaches
    this network. Both are written out rather than taken from
    paddle.distribution.Normal: the same draws (paddle.randn is what Normal.sample
    draws) in a third of the operators: 1.05x on a 28x28 training step
    (benchmarks/policy_ops.py).

    Input: h_t (B, hidden_size) and, optionally, noise (B, 2): standard-normal
    draws to use instead of sampling (align.py gives PyTorch and Paddle the same).
    Output: l_t (B, 2) without gradient, log_pi (B,).
    """

    def __init__(self, hidden_size, std):
        super().__init__()
        self.std = std
        # Over the two coordinates, log N(x; mu, std) = -sum(z^2) / 2 - 2 (log(std) + log(2 pi) / 2),
        # z = (x - mu) / std: the second term is this constant.
        self.log_normaliser = 2 * (math.log(std) + 0.5 * math.log(2 * math.pi))
        self.fc = Linear(hidden_size, hidden_size // 2)
        self.fc_lt = Linear(hidden_size // 2, 2)

    def forward(self, h_t, noise=None):
        mu = paddle.tanh(self.fc_lt(F.relu(self.fc(h_t.detach()))))
        if noise is None:
            noise = paddle.randn(mu.shape, mu.dtype)
        sample = (mu + self.std * noise).detach()
        z = (sample - mu) / self.std
        log_pi = (-0.5 * z.square()).sum(axis=1) - self.log_normaliser
        return paddle.clip(sample, -1.0, 1.0), log_pi


class ActionNetwork(nn.Layer):
    """Classifies from the last hidden state: log_softmax(fc(h_T)).

    Input: h_t (B, hidden_size). Output: log-probabilities (B, num_classes).
    """

    def __init__(self, hidden_size, num_classes):
        super().__init__()
        self.fc = Linear(hidden_size, num_classes)

    def forward(self, h_t):
        return F.log_softmax(self.fc(h_t), axis=1)


class BaselineNetwork(nn.Layer):
    """Predicts the expected reward, b_t = fc(h_t.detach()), to reduce the
    variance of REINFORCE. The detach keeps its regression loss out of the core.

    Input: h_t (B, hidden_size). Output: b_t (B,).
    """

    def __init__(self, hidden_size):
        super().__init__()
        self.fc = Linear(hidden_size, 1)

    def forward(self, h_t):
        return self.fc(h_t.detach()).squeeze(1)
