"""What the networks' rectifiers and sums in place are worth: evaluation with M=10 and a
training step, 28x28 (main.py's defaults) and cluttered 60x60, batch 128, with
modules.GlimpseNetwork, CoreNetwork and LocationNetwork as they are, against the same
formulas each making a new tensor, as before (the same values: tests/test_model.py). The
two take turns in this process, with every core; wall time, medians.

    python benchmarks/in_place.py --repeats 5
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils import before_paddle, usable_cores

before_paddle(quiet=True)
import paddle
import paddle.nn.functional as F

import modules
from benchmark import as_batches, canvas_setup, take_turns, train_steps
from config import get_config
from data_loader import load_mnist, read_digits
from model import evaluate
from trainer import Trainer

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IN_PLACE = (modules.GlimpseNetwork.values, modules.CoreNetwork.forward,
            modules.LocationNetwork.choose)


def glimpse_values(self, x, l, table=None):
    phi = self.retina.foveate(x, l, table)
    what = F.relu(self.fc1(phi))
    where = F.relu(self.fc2(l))
    return phi, what, where, F.relu(self.fc3(what) + self.fc4(where))


def core_forward(self, g_t, h_prev=None):
    recurrent = self.h2h.bias if h_prev is None else self.h2h(h_prev)
    h_t = F.relu(self.i2h(g_t) + recurrent)
    return h_t, h_t


def choose(self, h_t, noise=None):
    hidden = F.relu(self.fc(h_t.detach()))
    mu = paddle.tanh(self.fc_lt(hidden))
    if noise is None:
        noise = paddle.randn(mu.shape, mu.dtype)
    sample = (mu + self.std * noise).detach()
    return paddle.clip(sample, -1.0, 1.0), sample, (hidden, mu)


def use(methods):
    (modules.GlimpseNetwork.values, modules.CoreNetwork.forward,
     modules.LocationNetwork.choose) = methods


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(usable_cores())
    images, labels = load_mnist(os.path.join(HERE, "data", "MNIST"), "train")
    digits = read_digits(os.path.join(HERE, "data", "MNIST"), "train")[0]
    tasks = {"28x28": (Trainer(get_config([])), as_batches(images[:512], labels[:512], 128)),
             "60x60": canvas_setup(60, 4, 3, 4, digits)}
    print(f"paddle {paddle.__version__}, {usable_cores()} thread(s); ms, medians of "
          f"{args.repeats} turns\n")
    print("| task | what | new tensors | in place | speed-up |")
    print("| --- | --- | --- | --- | --- |")
    for task, (trainer, batches) in tasks.items():
        def evaluation():
            start = time.perf_counter()
            evaluate(trainer.model, batches[:2], 10)
            return 1000 * (time.perf_counter() - start) / 2

        def training():
            start = time.perf_counter()
            train_steps(trainer, batches, 10)
            return 1000 * (time.perf_counter() - start) / 10

        for what, measure in (("evaluation M=10, a batch", evaluation),
                              ("training step", training)):
            times = take_turns({way: lambda methods=methods: use(methods) or measure()
                                for way, methods in (("new", (glimpse_values, core_forward, choose)),
                                                     ("in place", IN_PLACE))}, args.repeats)
            before, after = (statistics.median(times[way]) for way in ("new", "in place"))
            print(f"| {task} | {what} | {before:.2f} | {after:.2f} | {before / after:.2f}x |")


if __name__ == "__main__":
    main()
