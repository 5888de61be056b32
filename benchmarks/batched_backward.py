"""What the batched backward pass (model.Glimpses) is worth: a training step of each task
(28x28 with main.py's defaults, the cluttered 60x60 and 100x100 canvases as
benchmark.py builds them) at batches of 128 and 20, taken as main.py trains (batched),
against the same step differentiated by autograd glimpse by glimpse, as before (the
model in eval mode, which takes that path: the same values and draws); and a lever tried
and not taken: the batched pass taking its bias gradients as products with a row of ones
(MKL's) instead of Paddle's sum over axis 0 (modules.linear_gradients). The three take
turns in this process, with every core (two threads here); wall time, medians.

    python benchmarks/batched_backward.py --repeats 5
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

import modules
from benchmark import CANVAS_TASKS, as_batches, canvas_setup, take_turns
from config import get_config
from data_loader import load_mnist, read_digits
from trainer import Trainer

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


BY_COLUMN_SUM = modules.linear_gradients


def by_product(x, dy):
    ones = paddle.ones([1, dy.shape[0]], dy.dtype)
    return paddle.matmul(x, dy, transpose_x=True), paddle.matmul(ones, dy).reshape([-1])


def step_ms(trainer, batches, steps, batched, linear_gradients=BY_COLUMN_SUM):
    """Milliseconds a training step, the batched path (its bias gradients by
    linear_gradients) or glimpse by glimpse."""
    modules.linear_gradients = linear_gradients
    trainer.model.train(batched)
    start = time.perf_counter()
    for i in range(steps):
        trainer.train_step(*batches[i % len(batches)])
    float(trainer.model.rnn.i2h.weight.sum())  # wait for the device
    return 1000 * (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=15)
    args = parser.parse_args()
    paddle.set_device("cpu")
    threads = usable_cores()
    paddle.base.core.set_num_threads(threads)
    images, labels = load_mnist(os.path.join(HERE, "data", "MNIST"), "train")
    digits = read_digits(os.path.join(HERE, "data", "MNIST"), "train")[0]
    print(f"paddle {paddle.__version__}, {threads} thread(s); ms a training step, medians of "
          f"{args.repeats} turns of {args.steps} steps\n")
    print("| task | batch | glimpse by glimpse | batched | speed-up | batched, bias by products "
          "| against batched |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for batch in (128, 20):
        tasks = {"28x28, 6 glimpses": (Trainer(get_config(["--batch_size", str(batch)])),
                                       as_batches(images[:batch * 4], labels[:batch * 4], batch))}
        for name, side, distractors, scales in CANVAS_TASKS:
            tasks[f"{name}, 8 glimpses"] = canvas_setup(side, distractors, scales, 4, digits, batch)
        for task, (trainer, batches) in tasks.items():
            ways = {"autograd": (False, BY_COLUMN_SUM), "batched": (True, BY_COLUMN_SUM),
                    "products": (True, by_product)}
            times = take_turns({way: lambda how=how: step_ms(trainer, batches, args.steps, *how)
                                for way, how in ways.items()}, args.repeats)
            before, after, products = (statistics.median(times[way]) for way in ways)
            print(f"| {task} | {batch} | {before:.2f} | {after:.2f} | {before / after:.2f}x | "
                  f"{products:.2f} | {after / products:.2f}x |")


if __name__ == "__main__":
    main()
