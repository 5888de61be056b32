"""The model and what it is trained and judged by: ModelConfig, the options that build it
(the one list of them: main.py's options and a checkpoint's model_args come from it);
RecurrentAttention, the whole model, one episode of glimpses per forward; the paper's
baselines, which see the whole image at once; ram_loss and evaluate."""
import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.autograd import PyLayer

from modules import (ActionNetwork, BaselineNetwork, CoreNetwork, GlimpseNetwork, Linear,
                     LocationNetwork)
from retina import METHODS
from utils import sum_over_processes


# An option's role: what a checkpoint must have been made with to be used (checkpoint.fit).
TEST = "test"      # to test it: the model and the task
RESUME = "resume"  # to train it on: the split, the optimizer and its schedule
FREE = "free"      # may differ: how and where a run computes, writes and reports


def option(default, help, role=TEST, group=None, choices=None, least=None, most=None,
           above=None, below=None, recipe=True):
    """A field of an option section (ModelConfig, config.DataConfig, ...) that is also main.py's
    option --<name>: its help (in the help's `group`, else its section's), its `role`, its
    choices and bounds (least <= value <= most, above < value < below; `most` is the largest
    value this project's machine runs). recipe=False: an option that changes where or how,
    not what, a run trains, which a run's name leaves out."""
    return dataclasses.field(default=default, metadata=dict(
        help=help, role=role, group=group, choices=choices, least=least, most=most, above=above,
        below=below, recipe=recipe))


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The model: the options it is built from, which a checkpoint saves as its model_args.

    main.py's options of the same names; build_model rebuilds the model from them."""
    model: str = option("ram", "ram: the Recurrent Attention Model; the paper's baselines, which "
                        "see the whole image: fc, two rectifier layers of --fc_hidden units; conv, "
                        "8 filters of 10x10 at stride 5, then 256 rectifier units",
                        choices=("ram", "fc", "conv"))
    fc_hidden: int = option(64, "width of each of --model fc's two hidden layers", least=1,
                            most=65536)
    random_glimpses: bool = option(
        False, "RAM looking at uniformly random places instead of where its policy says (the "
        "paper's 'RAM, random glimpses' baseline)")
    patch_size: int = option(8, "side g of the smallest (sharpest) patch, in pixels",
                             group="glimpse network", least=1, most=64)
    glimpse_scale: int = option(1, "each patch is this many times wider than the previous one",
                                group="glimpse network", least=1, most=8)
    num_patches: int = option(1, "patches per glimpse, k", group="glimpse network", least=1,
                             most=8)
    loc_hidden: int = option(128, "width of the location layer (fc2)",
                             group="glimpse network", least=1, most=4096)
    glimpse_hidden: int = option(128, "width of the patch layer (fc1)",
                                 group="glimpse network", least=1, most=4096)
    channels: int = option(1, "channels of the images: 1 (gray) or 3 (RGB, --dataset folder "
                           "only; its images are converted to this)", group="glimpse network",
                           least=1, most=4)
    retina_method: str = option("auto", "how the retina cuts patches, all giving the same "
                                "glimpses; auto: numpy on the CPU (fastest there), paddle on a GPU",
                                role=FREE, group="glimpse network", choices=METHODS, recipe=False)
    core: str = option("rnn", "rnn: the paper's rectifier core, h_t = relu(i2h(g_t) + "
                       "h2h(h_{t-1})); lstm: an LSTM cell (paddle.nn.LSTMCell), the paper's "
                       "core for the game, and beyond the paper on images, as tfRAM",
                       group="core network", choices=("rnn", "lstm"))
    num_glimpses: int = option(6, "glimpses per image, T", group="core network", least=1,
                              most=64)
    hidden_size: int = option(256, "width of the recurrent state h_t (2 or more: the "
                             "location network is half as wide)", group="core network", least=2,
                             most=8192)
    std: float = option(0.05, "standard deviation of the location policy",
                        group="reinforce", above=0, most=1e6)
    # Not options of their own: the task's (--image_size, and the classes of the data).
    image_size: int = 28  # side of the images, which the baselines see whole
    num_classes: int = 10

    @classmethod
    def from_options(cls, options):
        """The ModelConfig of main.py's options (a dict or Namespace with `classes`, the
        class names, as config.get_config and a checkpoint's config hold them)."""
        options = vars(options) if not isinstance(options, dict) else options
        return cls(**{field.name: options[field.name] for field in dataclasses.fields(cls)
                      if field.name != "num_classes"}, num_classes=len(options["classes"]))


# The options a checkpoint must have been made with to load into a model: the compared
# options of ModelConfig (the task's image_size and classes are compared as the task's).
MODEL_OPTIONS = [field.name for field in dataclasses.fields(ModelConfig)
                 if field.metadata.get("role") == TEST]


def build_model(config):
    """The model a ModelConfig describes: RecurrentAttention or a baseline."""
    if config.model == "fc":
        return FullyConnected(config.channels, config.image_size, config.fc_hidden,
                              config.num_classes)
    if config.model == "conv":
        return Convolutional(config.channels, config.image_size, config.num_classes)
    return RecurrentAttention(config)


def make_optimizer(config, parameters):
    """The learning-rate schedule and the optimizer that --lr_schedule, --optimizer (with
    --momentum), --init_lr and --clip_grad_norm say."""
    if config.lr_schedule == "cosine":  # one step per epoch, reaching zero after the last
        scheduler = paddle.optimizer.lr.CosineAnnealingDecay(config.init_lr, config.epochs)
    elif config.lr_schedule == "linear":  # set after every batch to the epochs done, a fraction
        scheduler = paddle.optimizer.lr.PolynomialDecay(config.init_lr, decay_steps=config.epochs,
                                                        end_lr=0.0, power=1.0)
    else:
        scheduler = paddle.optimizer.lr.ReduceOnPlateau(
            config.init_lr, mode="max", factor=config.lr_factor, patience=config.lr_patience)
    clip = paddle.nn.ClipGradByGlobalNorm(config.clip_grad_norm) if config.clip_grad_norm else None
    if config.optimizer == "sgd":
        return scheduler, paddle.optimizer.Momentum(scheduler, config.momentum, parameters,
                                                    grad_clip=clip)
    # Multi-tensor Adam was no faster here (benchmarks/adam_multi_tensor.py).
    return scheduler, paddle.optimizer.Adam(scheduler, parameters=parameters, grad_clip=clip)


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
        if (self.training and paddle.is_grad_enabled() and isinstance(self.rnn, CoreNetwork)
                and not self.random_glimpses):
            return self.batched(x, l_0, noise)
        return self.glimpse_by_glimpse(x, l_0, noise)

    def glimpse_by_glimpse(self, x, l_0, noise=None):
        """forward, its T glimpses taken by step and differentiated by autograd: evaluation,
        and training with an LSTM core or random glimpses."""
        state = None  # h_0 = 0 (and c_0 = 0 in an LSTM core)
        l_t = l_0
        # The images are the same at every glimpse and in every path: the retina's work
        # on them is done once.
        table = self.sensor.retina.summed_area_table(x)
        locations, log_pi, baselines = [], [], []
        for t in range(self.num_glimpses):
            locations.append(l_t)
            # The location chosen after the last glimpse is never looked at, but
            # its log_pi still enters the loss, as in the PyTorch reference.
            h_t, state, l_t, log_pi_t, b_t = self.step(x, l_t, state, table,
                                                       None if noise is None else noise[:, t])
            log_pi.append(log_pi_t)
            baselines.append(b_t)
        log_probas = self.classifier(h_t)
        return (log_probas, paddle.stack(log_pi, axis=1), paddle.stack(baselines, axis=1),
                paddle.stack(locations, axis=1))

    def batched(self, x, l_0, noise=None):
        """forward for training: the same glimpses and values as glimpse_by_glimpse, its
        backward pass taken over all T glimpses at once (Glimpses)."""
        T, N = self.num_glimpses, l_0.shape[0]
        h_last, mu, h, samples, locations = Glimpses.apply(self, x, l_0, noise,
                                                            *self.gradient_parameters())
        log_pi = self.locator.log_pi(samples, mu).reshape([T, N]).t()  # (N, T)
        baselines = self.baseliner(h).reshape([T, N]).t()
        return self.classifier(h_last), log_pi, baselines, locations

    def gradient_parameters(self):
        """The weights whose gradients Glimpses' backward pass returns, in its order."""
        return [*self.sensor.parameters(), *self.rnn.parameters(), *self.locator.parameters()]

    def step(self, x, l_t, state, table=None, noise=None):
        """One glimpse: look at x (B, C, H, W) at l_t (N, 2), update the core's state (None
        for h_0 = 0), choose where to look next and predict the reward. The one glimpse
        step of both tasks: forward's T glimpses of an image, and catch.play's one glimpse
        per frame of a game. table: the retina's summed_area_table(x), if kept.
        Returns h_t (N, hidden_size), the state, l_{t+1} (N, 2), log_pi (N,) and b_t (N,)."""
        h_t, state = self.rnn(self.sensor(x, l_t, table), state)
        l_next, log_pi_t = self.locator(h_t, noise)
        if self.random_glimpses:
            l_next = paddle.uniform(l_next.shape, dtype=x.dtype, min=-1.0, max=1.0)
            log_pi_t = paddle.zeros_like(log_pi_t)  # nothing for REINFORCE to learn
        return h_t, state, l_next, log_pi_t, self.baseliner(h_t)


class Glimpses(PyLayer):
    """The T glimpses of a training batch, with their backward pass written out: each
    weight's gradient one product over all T * N rows (autograd makes T), only the core's
    recurrence walked back glimpse by glimpse, and no autograd node per operation. A
    training step 1.13x to 1.16x faster at batch 128, 1.33x to 1.40x at batch 20
    (benchmarks/batched_backward.py, docs/performance.md).

    forward takes the glimpses as RecurrentAttention.step does (the same operations, the
    same values and draws), keeping each network's values for backward.
    Input: the model, x (B, C, H, W), l_0 (N, 2), noise (N, T, 2) or None, and
    model.gradient_parameters(), which receive the gradients.
    Output: h_T (N, hidden); mu (T * N, 2), the policy's means, row t * N + n being
    glimpse t + 1 of episode n, as in the next outputs; h_t (T * N, hidden) and the
    samples (T * N, 2), both without gradient (the baseline and log_pi see h_t
    detached); the locations (N, T, 2) l_0 .. l_{T-1}.
    """

    @staticmethod
    def forward(ctx, model, x, l_0, noise, *parameters):
        table = model.sensor.retina.summed_area_table(x)
        l_t, h_t = l_0, None
        locations, glimpse_values, h, samples, policy_values = [], [], [], [], []
        for t in range(model.num_glimpses):
            locations.append(l_t)
            glimpse_values.append(model.sensor.values(x, l_t, table))
            h_t, _ = model.rnn(glimpse_values[-1][-1], h_t)
            l_t, sample, policy = model.locator.choose(h_t, None if noise is None else noise[:, t])
            h.append(h_t)
            samples.append(sample)
            policy_values.append(policy)
        # Every glimpse's values as one tensor each, row t * N + n: glimpse t + 1 of episode n.
        l, h, samples = (paddle.concat(part) for part in (locations, h, samples))
        glimpse_values, (hidden, mu) = ([paddle.concat(value) for value in zip(*part)]
                                        for part in (glimpse_values, policy_values))
        ctx.model = model
        ctx.tensors_before_parameters = 3 if noise is not None else 2  # x, l_0 (and noise)
        ctx.save_for_backward(l, *glimpse_values, h, hidden, mu)
        locations = paddle.stack(locations, axis=1)
        ctx.mark_non_differentiable(h, samples, locations)
        return h_t, mu, h, samples, locations

    @staticmethod
    def backward(ctx, d_h_last, d_mu, *no_gradient):
        model = ctx.model
        l, phi, what, where, g, h, hidden, mu = ctx.saved_tensor()
        policy = model.locator.gradients(h, (hidden, mu), d_mu)
        core, d_g = model.rnn.gradients(g, h, d_h_last)
        sensor = model.sensor.gradients((phi, what, where, g), l, d_g)
        return (None,) * ctx.tensors_before_parameters + (*sensor, *core, *policy)


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


class Loss(NamedTuple):
    """The hybrid loss and its parts: total = action + baseline + 0.01 * reinforce."""
    total: paddle.Tensor      # scalar
    action: paddle.Tensor     # scalar: NLL of the classifier
    baseline: paddle.Tensor   # scalar: MSE of the baselines against R
    reinforce: paddle.Tensor  # scalar: mean over the batch of sum_t -log_pi_t * (R - b_t)
    reward: paddle.Tensor     # (B,): R, 1 where the prediction is right


def ram_loss(log_probas, log_pi, baselines, labels, paths=1):
    """The hybrid loss of RAM: NLL for the classifier, MSE for the baseline and
    REINFORCE for the location policy, with reward R = 1 for a right answer.

        loss = NLL + MSE(b, R) + 0.01 * mean_batch(sum_t -log_pi_t * (R - b_t))

    With paths > 1 glimpse paths per image (--train_paths; row m * B + b is path m
    of image b), REINFORCE centres each path's R on the mean R of the image's other
    paths instead of b_t: an unbiased baseline of the image's own, which the learned
    b_t (still fitted by its MSE) cannot be.

    Args:
        log_probas: (B, num_classes). log_pi, baselines: (B, T). labels: int64 (B,).
    Returns:
        a Loss: the total, each term and the (B,) rewards.
    """
    if labels.ndim != 1:  # a (B, 1) label would broadcast `predicted == labels` to (B, B)
        raise ValueError(f"labels must have shape (B,), got {labels.shape}")
    reward = (log_probas.argmax(axis=1) == labels).astype(log_probas.dtype)
    rewards = reward.unsqueeze(1).expand_as(baselines)
    loss_action = F.nll_loss(log_probas, labels)
    # A baseline model (--model fc, conv) takes no glimpse: T = 0, nothing to regress.
    loss_baseline = F.mse_loss(baselines, rewards) if baselines.shape[1] else 0.0 * loss_action
    centre = baselines.detach()  # the baseline only centres R: no REINFORCE gradient into it
    if paths > 1:
        per_image = reward.reshape([paths, -1])
        others = (per_image.sum(axis=0, keepdim=True) - per_image) / (paths - 1)
        centre = others.reshape([-1, 1]).expand_as(baselines)
    loss_reinforce = (-log_pi * (rewards - centre)).sum(axis=1).mean()
    total = loss_action + loss_baseline + 0.01 * loss_reinforce
    return Loss(total, loss_action, loss_baseline, loss_reinforce, reward)


@paddle.no_grad()
def evaluate(model, loader, M, on_first_batch=None):
    """Loss and accuracy with M Monte-Carlo glimpse paths per image, whose class
    log-probabilities (and log_pi and baselines, for the loss) are averaged; in a
    data-parallel run, over every process's shard of the images.

    on_first_batch(x, y, locations, predicted), if given, sees the first batch,
    with the locations of the first of the M paths.
    Returns: mean loss, accuracy in percent, number correct, number of images.
    """
    model.eval()
    total_loss, correct, count = 0.0, 0.0, 0
    for i, (x, y) in enumerate(loader):
        B = len(y)
        # The repeats form one batch of M * B episodes, row m * B + b being image b.
        log_probas, log_pi, baselines, locations = model(x, repeats=M)
        log_probas, log_pi, baselines = (t.reshape([M, B, -1]).mean(axis=0)
                                         for t in (log_probas, log_pi, baselines))
        loss = ram_loss(log_probas, log_pi, baselines, y)
        total_loss += float(loss.total) * B
        correct += float(loss.reward.sum())
        count += B
        if i == 0 and on_first_batch is not None:
            on_first_batch(x, y, locations[:B], log_probas.argmax(axis=1))
    total_loss, correct, count = sum_over_processes(total_loss, correct, count)
    return total_loss / count, 100.0 * correct / count, int(round(correct)), int(count)


class Episode(NamedTuple):
    """One game in each of B games, played by RecurrentAttention (see play)."""
    log_pi: paddle.Tensor     # (B, T): log-probability of each frame's location and game action
    baselines: paddle.Tensor  # (B, T): b_t
    rewards: paddle.Tensor    # (B,): R, 1 where the ball was caught
    locations: paddle.Tensor  # (B, T, 2): where each frame was looked at
    actions: paddle.Tensor    # (B, T): the game actions
    entropy: paddle.Tensor    # (B,): the game actions' entropy, summed over the frames
    seen: object              # (B, T, C, H, W) NumPy array: each frame's screen (or None)


def play(model, games, screens, greedy=False, scale=1.0, keep_screens=False):
    """Play one game in each of `games` (a Gymnasium VectorEnv of Catch whose games all
    stand at their first frame, `screens`), one glimpse (RecurrentAttention.step) of the
    screen times `scale` and one game action a frame, from the model's classifier over the
    game's actions: sampled, or with greedy its most likely one. l_0 is uniform, as in
    classification. Returns an Episode, whose seen screens are kept only with keep_screens
    (evaluation draws and measures them; training needs none)."""
    B = len(screens)
    l_t = paddle.uniform([B, 2], min=-1.0, max=1.0)
    state = None
    log_pi, baselines, locations, actions, seen = [], [], [], [], []
    entropy = 0.0
    while True:
        locations.append(l_t)
        if keep_screens:
            seen.append(screens)
        x = paddle.to_tensor(screens * np.float32(scale))
        h_t, state, l_t, log_pi_t, b_t = model.step(x, l_t, state)
        log_probas = model.classifier(h_t)
        if greedy:
            action = log_probas.argmax(axis=1)
        else:
            action = paddle.multinomial(log_probas.exp(), 1).squeeze(1)
        log_pi.append(log_pi_t + paddle.take_along_axis(log_probas, action.unsqueeze(1),
                                                        axis=1).squeeze(1))
        baselines.append(b_t)
        actions.append(action)
        entropy = entropy - (log_probas.exp() * log_probas).sum(axis=1)
        screens, rewards, ended, _, _ = games.step(action.numpy())
        if ended.all():  # games started together end together
            break
    return Episode(paddle.stack(log_pi, axis=1), paddle.stack(baselines, axis=1),
                   paddle.to_tensor(rewards), paddle.stack(locations, axis=1),
                   paddle.stack(actions, axis=1), entropy,
                   np.stack(seen, axis=1) if keep_screens else None)


@paddle.no_grad()
def evaluate_games(model, games, on_episode=None, scale=1.0):
    """Play `games` (catch.FixedGames: batches of (games, screens)), each game action the
    model's most likely one, the screens times `scale` (see play). on_episode(i, episode),
    if given, sees each batch's Episode. Returns the mean game_loss, the catch rate in
    percent, the games caught and played."""
    model.eval()
    total_loss, caught, count = 0.0, 0.0, 0
    for i, (env, screens) in enumerate(games):
        episode = play(model, env, screens, greedy=True, scale=scale, keep_screens=True)
        total_loss += float(game_loss(episode).total) * len(screens)
        caught += float(episode.rewards.sum())
        count += len(screens)
        if on_episode is not None:
            on_episode(i, episode)
    return total_loss / count, 100.0 * caught / count, int(round(caught)), count


def fovea_on_ball(episode, retina):
    """Whether each frame's sharpest patch held the ball: a bool array (B, T), frame t's
    ball being the one bright pixel of row t (the ball falls a row a frame from the top)."""
    seen = episode.seen  # (B, T, 1, H, W)
    B, T, _, H, W = seen.shape
    rows = np.arange(T)
    cols = seen[:, rows, 0, rows].argmax(axis=-1)  # (B, T)
    boxes = retina.patch_boxes(episode.locations.numpy().reshape(-1, 2), H, W)[:, 0]
    top, left, bottom, right = boxes.reshape(B, T, 4).transpose(2, 0, 1)
    return (top <= rows) & (rows < bottom) & (left <= cols) & (cols < right)


def game_loss(episode, paths=1, entropy_weight=0.0):
    """The loss of a game, whose only reward R is the last frame's: MSE of the baselines
    against R, and REINFORCE for both policies (where to look and what to do):
    mean_batch(sum_t -log_pi_t * (R - b_t)). With paths > 1 plays of each game (row m * B +
    b: play m of game b, from the same start), REINFORCE centres each play's R on the mean R
    of the game's other plays instead of b_t, as ram_loss does for an image's glimpse paths.
    entropy_weight > 0 subtracts that much of the game actions' entropy (summed over the
    frames, averaged over the games), which keeps the policy from settling on one action
    before it has learned where the ball goes. Returns the Loss (action: the entropy term)."""
    rewards = episode.rewards.unsqueeze(1).expand_as(episode.baselines)
    loss_baseline = F.mse_loss(episode.baselines, rewards)
    centre = episode.baselines.detach()
    if paths > 1:
        per_game = episode.rewards.reshape([paths, -1])
        others = (per_game.sum(axis=0, keepdim=True) - per_game) / (paths - 1)
        centre = others.reshape([-1, 1]).expand_as(episode.baselines)
    loss_reinforce = (-episode.log_pi * (rewards - centre)).sum(axis=1).mean()
    loss_entropy = -entropy_weight * episode.entropy.mean()
    total = loss_baseline + loss_reinforce + loss_entropy
    return Loss(total, loss_entropy, loss_baseline, loss_reinforce, episode.rewards)
