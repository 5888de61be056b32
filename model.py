"""RecurrentAttention: the whole model, one episode of glimpses per forward; and the
paper's baselines, which see the whole image at once."""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from modules import (ActionNetwork, BaselineNetwork, CoreNetwork, GlimpseNetwork, Linear,
                     LocationNetwork, ModelConfig)


class RecurrentAttention(nn.Layer):
    """Recurrent Attention Model (Mnih et al., 2014).

    For t = 1..T: look at l_{t-1} (g_t), update the state (h_t), choose the next
    location (l_t, log_pi_t) and predict the reward (b_t). After T glimpses,
    classify from h_T. l_0 is uniform in [-1, 1]^2 and h_0 is zeros.

    Built from a ModelConfig (its options by name); config.retina_method chooses how
    the Retina cuts patches (see Retina): every method computes the same glimpses.
    config.core "lstm" makes the core an LSTM cell (beyond the paper). With
    config.random_glimpses, l_1 .. l_{T-1} are uniform in [-1, 1]^2 like l_0, the
    policy unused and log_pi zero: the paper's "RAM, random glimpses" baseline.

    Parameter names follow the PyTorch reference (sensor.fc1..fc4, rnn.i2h,
    rnn.h2h, locator.fc, locator.fc_lt, classifier.fc, baseliner.fc) so that
    weights map one to one.

    Input: x (B, C, H, W) and, optionally, l_0 (N, 2) and noise (N, T, 2), the
    policy's standard-normal draws, to use instead of Paddle's random numbers
    (align.py feeds PyTorch and Paddle the same ones), and repeats, M: the glimpse
    paths per image, N = M * B episodes, row m * B + b being path m of image b
    (evaluation; the images and the retina's work on them are not copied).
    Output: log_probas (N, num_classes), log_pi (N, T), baselines (N, T) and
    locations (N, T, 2), the place of each glimpse (l_0 .. l_{T-1}).
    """

    def __init__(self, config=ModelConfig()):
        super().__init__()
        self.num_glimpses = config.num_glimpses
        self.random_glimpses = config.random_glimpses
        self.sensor = GlimpseNetwork(config)
        glimpse_size = config.glimpse_hidden + config.loc_hidden
        self.rnn = (CoreNetwork(glimpse_size, config.hidden_size) if config.core == "rnn"
                    else nn.LSTMCell(glimpse_size, config.hidden_size))
        self.locator = LocationNetwork(config.hidden_size, config.std)
        self.classifier = ActionNetwork(config.hidden_size, config.num_classes)
        self.baseliner = BaselineNetwork(config.hidden_size)

    def forward(self, x, l_0=None, noise=None, repeats=1):
        if l_0 is None:
            l_0 = paddle.uniform([x.shape[0] * repeats, 2], dtype=x.dtype, min=-1.0, max=1.0)
        state = None  # h_0 = 0 (and c_0 = 0 in an LSTM core)
        l_t = l_0
        # The images are the same at every glimpse and in every path: the retina's work
        # on them is done once.
        table = self.sensor.retina.summed_area_table(x)
        locations, log_pi, baselines = [], [], []
        for t in range(self.num_glimpses):
            locations.append(l_t)
            h_t, state = self.rnn(self.sensor(x, l_t, table), state)
            # The location chosen after the last glimpse is never looked at, but
            # its log_pi still enters the loss, as in the PyTorch reference.
            l_t, log_pi_t = self.locator(h_t, None if noise is None else noise[:, t])
            if self.random_glimpses:
                l_t = paddle.uniform(l_t.shape, dtype=x.dtype, min=-1.0, max=1.0)
                log_pi_t = paddle.zeros_like(log_pi_t)  # nothing for REINFORCE to learn
            log_pi.append(log_pi_t)
            baselines.append(self.baseliner(h_t))
        log_probas = self.classifier(h_t)
        return (log_probas, paddle.stack(log_pi, axis=1), paddle.stack(baselines, axis=1),
                paddle.stack(locations, axis=1))


class FullyConnected(nn.Layer):
    """The paper's fully connected baseline: the whole image through two rectifier
    layers of `hidden` units, then log_softmax over the classes.

    Input: x (B, C, H, W); l_0 and noise are ignored (no glimpses), repeats M tiles
    the output as RecurrentAttention's paths. Output: log_probas (M * B, classes), and
    log_pi, baselines (M * B, 0) and locations (M * B, 0, 2): empty, no glimpse taken.
    """

    num_glimpses = 0

    def __init__(self, channels, image_size, hidden, num_classes):
        super().__init__()
        self.fc1 = Linear(channels * image_size * image_size, hidden)
        self.fc2 = Linear(hidden, hidden)
        self.fc3 = Linear(hidden, num_classes)

    def classify(self, x):
        return F.log_softmax(self.fc3(F.relu(self.fc2(F.relu(self.fc1(x.flatten(1)))))), axis=1)

    def forward(self, x, l_0=None, noise=None, repeats=1):
        return no_glimpses(self.classify(x), repeats)


class Convolutional(nn.Layer):
    """The paper's convolutional baseline: 8 filters of 10x10 at stride 5 and a rectifier,
    256 rectifier units, then log_softmax over the classes.

    Input and output: as FullyConnected's.
    """

    num_glimpses = 0

    def __init__(self, channels, image_size, num_classes):
        super().__init__()
        self.conv = nn.Conv2D(channels, 8, kernel_size=10, stride=5)
        side = (image_size - 10) // 5 + 1
        self.fc1 = Linear(8 * side * side, 256)
        self.fc2 = Linear(256, num_classes)

    def forward(self, x, l_0=None, noise=None, repeats=1):
        features = F.relu(self.conv(x)).flatten(1)
        return no_glimpses(F.log_softmax(self.fc2(F.relu(self.fc1(features))), axis=1), repeats)


def no_glimpses(log_probas, repeats):
    """A baseline's outputs in RecurrentAttention's form: its class log-probabilities
    once per path (every path is the same), and empty log_pi, baselines and locations."""
    log_probas = paddle.tile(log_probas, [repeats, 1])
    empty = paddle.zeros([log_probas.shape[0], 0], log_probas.dtype)
    return log_probas, empty, empty, empty.unsqueeze(2).tile([1, 1, 2])
