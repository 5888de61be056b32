"""What writing the location policy out is worth: CPU time of a 28x28 training step
(main.py's defaults, one thread) with modules.LocationNetwork as it is, against the
same network drawing and scoring through paddle.distribution.Normal, as it did before.
Both take the same draws (tests/test_modules.py); the two take turns in this process.

    python benchmarks/policy_ops.py --repeats 8
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils import before_paddle

before_paddle(quiet=True)
import numpy as np
import paddle
import paddle.nn.functional as F
from paddle.distribution import Normal

import modules
from benchmark import take_turns, turns_lines
from config import get_config
from trainer import Trainer

WRITTEN_OUT = modules.LocationNetwork.forward


def through_normal(self, h_t, noise=None):
    """The policy as it was: paddle.distribution.Normal's sample and log_prob."""
    mu = paddle.tanh(self.fc_lt(F.relu(self.fc(h_t.detach()))))
    policy = Normal(mu, paddle.full([], self.std, dtype=mu.dtype))
    sample = policy.sample() if noise is None else mu + self.std * noise
    sample = sample.detach()
    return paddle.clip(sample, -1.0, 1.0), policy.log_prob(sample).sum(axis=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(1)
    trainer = Trainer(get_config(["--num_threads", "1"]))
    rng = np.random.default_rng(0)
    batches = [(paddle.to_tensor(rng.normal(size=(128, 1, 28, 28)).astype("float32")),
                paddle.to_tensor(rng.integers(0, 10, 128))) for _ in range(10)]

    def step_ms():
        start = time.process_time()
        for i in range(args.steps):
            trainer.train_step(*batches[i % len(batches)])
        return 1000 * (time.process_time() - start) / args.steps

    def with_policy(forward):
        modules.LocationNetwork.forward = forward
        return step_ms()

    times = take_turns({"Normal": lambda: with_policy(through_normal),
                        "written out": lambda: with_policy(WRITTEN_OUT)}, args.repeats)
    print("\n".join(turns_lines(times, "ms of CPU a step")))
    medians = {way: statistics.median(values) for way, values in times.items()}
    print(f"written out / Normal: {medians['Normal'] / medians['written out']:.2f}x")


if __name__ == "__main__":
    main()
