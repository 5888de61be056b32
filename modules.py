"""The small networks of the Recurrent Attention Model (Mnih et al., 2014); the retina is
retina.py's.

Shapes use B for the batch, C, H, W for the image's channels, height and width,
g for the patch size and k for the number of patches per glimpse.
"""
import math

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import _C_ops

from retina import Retina

# The gradients of RecurrentAttention's batched backward pass (model.Glimpses): through a
# rectifier or tanh from its output y, as autograd's own kernels take them (one kernel each).
relu_backward = _C_ops.relu_grad  # (y, dL/dy) -> dL/dx, y = relu(x)
tanh_backward = _C_ops.tanh_grad  # (y, dL/dy) -> dL/dx, y = tanh(x)


def linear_gradients(x, dy):
    """dL/dW and dL/db of y = x @ W + b (Linear, W of shape (in, out)), from x (R, in) and
    dL/dy (R, out): summed over the R rows, all of a batch's glimpses at once."""
    return paddle.matmul(x, dy, transpose_x=True), dy.sum(axis=0)


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

    values and gradients are forward's values and its weights' gradients, for the
    batched backward pass (model.Glimpses).
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
        return self.values(x, l, table)[-1]

    def values(self, x, l, table=None):
        """forward's values on the way: phi (N, k * C * g * g), relu(fc1(phi)) (N,
        glimpse_hidden), relu(fc2(l)) (N, loc_hidden) and g_t."""
        phi = self.retina.foveate(x, l, table)
        # Rectifiers and sums in place, in the products' fresh outputs: the same values
        # without a new tensor each (evaluation 1.04x to 1.06x: benchmarks/in_place.py).
        what = F.relu_(self.fc1(phi))
        where = F.relu_(self.fc2(l))
        return phi, what, where, F.relu_(self.fc3(what).add_(self.fc4(where)))

    def gradients(self, values, l, d_g):
        """dL/d of fc1, fc2, fc3 and fc4's weights and biases, in parameters()' order, from
        `values` of R rows (any number of glimpses: all T of a batch at once), their
        locations l (R, 2) and dL/dg_t (R, glimpse_hidden + loc_hidden)."""
        phi, what, where, g = values
        d_g = relu_backward(g, d_g)
        d_what = relu_backward(what, paddle.matmul(d_g, self.fc3.weight, transpose_y=True))
        d_where = relu_backward(where, paddle.matmul(d_g, self.fc4.weight, transpose_y=True))
        d_fc3_weight, d_bias = linear_gradients(what, d_g)  # fc3's and fc4's bias: one sum
        return [*linear_gradients(phi, d_what), *linear_gradients(l, d_where), d_fc3_weight,
                d_bias, paddle.matmul(where, d_g, transpose_x=True), d_bias.clone()]


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
        h_t = F.relu_(self.i2h(g_t).add_(recurrent))
        return h_t, h_t

    def gradients(self, g, h, d_h_last):
        """Back through time from dL/dh_T alone (only the classifier's gradient reaches
        the core: the location and baseline networks see h_t detached), given every
        glimpse's g_t (T * N, input_size) and h_t (T * N, hidden_size), row t * N + n
        being glimpse t + 1 of episode n: dL/d of i2h and h2h's weights and biases, in
        parameters()' order, and dL/dg_t (T * N, input_size). Glimpse by glimpse only
        the recurrence; each weight's gradient is one product over every glimpse."""
        N = d_h_last.shape[0]
        T = h.shape[0] // N
        d_pre = [None] * T  # dL/d(i2h(g_t) + h2h(h_{t-1}))
        d_h = d_h_last
        for t in reversed(range(T)):
            d_pre[t] = relu_backward(h[t * N:(t + 1) * N], d_h)
            if t:
                d_h = paddle.matmul(d_pre[t], self.h2h.weight, transpose_y=True)
        d_pre = paddle.concat(d_pre)
        d_h2h_weight = paddle.matmul(h[:-N], d_pre[N:], transpose_x=True)  # h_0 = 0
        d_i2h_weight, d_bias = linear_gradients(g, d_pre)  # both biases: the same sum
        d_g = paddle.matmul(d_pre, self.i2h.weight, transpose_y=True)
        # A copy for the second bias: two parameters' .grad never share one tensor.
        return [d_i2h_weight, d_bias, d_h2h_weight, d_bias.clone()], d_g


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
        l_t, sample, (_, mu) = self.choose(h_t, noise)
        return l_t, self.log_pi(sample, mu)

    def choose(self, h_t, noise=None):
        """l_t, the sample before its clamp and the mean's values: relu(fc(h_t)) (B,
        hidden_size // 2) and mu (B, 2)."""
        hidden = F.relu_(self.fc(h_t.detach()))
        mu = paddle.tanh(self.fc_lt(hidden))
        if noise is None:
            noise = paddle.randn(mu.shape, mu.dtype)
        sample = (mu + self.std * noise).detach()
        return paddle.clip(sample, -1.0, 1.0), sample, (hidden, mu)

    def log_pi(self, sample, mu):
        """log N(sample; mu, std), summed over the two coordinates: (B,)."""
        z = (sample - mu) / self.std
        return (-0.5 * z.square()).sum(axis=1) - self.log_normaliser

    def gradients(self, h, values, d_mu):
        """dL/d of fc and fc_lt's weights and biases, in parameters()' order, from R rows of
        h_t (R, hidden_size), choose's values and dL/dmu (R, 2): all T glimpses at once."""
        hidden, mu = values
        d_mu = tanh_backward(mu, d_mu)
        d_hidden = relu_backward(hidden, paddle.matmul(d_mu, self.fc_lt.weight, transpose_y=True))
        return [*linear_gradients(h, d_hidden), *linear_gradients(hidden, d_mu)]


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
