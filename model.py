"""RecurrentAttention: the whole model, one episode of glimpses per forward."""
import paddle
import paddle.nn as nn

from modules import (ActionNetwork, BaselineNetwork, CoreNetwork, GlimpseNetwork, LocationNetwork,
                     ModelConfig)


class RecurrentAttention(nn.Layer):
    """Recurrent Attention Model (Mnih et al., 2014).

    For t = 1..T: look at l_{t-1} (g_t), update the state (h_t), choose the next
    location (l_t, log_pi_t) and predict the reward (b_t). After T glimpses,
    classify from h_T. l_0 is uniform in [-1, 1]^2 and h_0 is zeros.

    Built from a ModelConfig (its options by name); config.retina_method chooses how
    the Retina cuts patches (see Retina): every method computes the same glimpses.

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
        self.sensor = GlimpseNetwork(config)
        self.rnn = CoreNetwork(config.glimpse_hidden + config.loc_hidden, config.hidden_size)
        self.locator = LocationNetwork(config.hidden_size, config.std)
        self.classifier = ActionNetwork(config.hidden_size, config.num_classes)
        self.baseliner = BaselineNetwork(config.hidden_size)

    def forward(self, x, l_0=None, noise=None, repeats=1):
        if l_0 is None:
            l_0 = paddle.uniform([x.shape[0] * repeats, 2], dtype=x.dtype, min=-1.0, max=1.0)
        h_t = None  # h_0 = 0 (see CoreNetwork)
        l_t = l_0
        # The images are the same at every glimpse and in every path: the retina's work
        # on them is done once.
        table = self.sensor.retina.summed_area_table(x)
        locations, log_pi, baselines = [], [], []
        for t in range(self.num_glimpses):
            locations.append(l_t)
            h_t = self.rnn(self.sensor(x, l_t, table), h_t)
            # The location chosen after the last glimpse is never looked at, but
            # its log_pi still enters the loss, as in the PyTorch reference.
            l_t, log_pi_t = self.locator(h_t, None if noise is None else noise[:, t])
            log_pi.append(log_pi_t)
            baselines.append(self.baseliner(h_t))
        log_probas = self.classifier(h_t)
        return (log_probas, paddle.stack(log_pi, axis=1), paddle.stack(baselines, axis=1),
                paddle.stack(locations, axis=1))
