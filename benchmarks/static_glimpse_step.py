"""What a static graph of the glimpse step is worth, the retina left out: CPU time of a
training step (main.py's defaults, one thread, Adam, trainer.py's loss) with
RecurrentAttention.step as it is, against the same step whose layers after the retina
(glimpse network, core, policy, baseline) run as one paddle.jit.to_static program
(full_graph: one operator forward and one backward a glimpse, each running its ~30
operators in Paddle's executor). The policy's noise is drawn outside the program, in the
same order; the two take turns here, the retina's output copied into Paddle in both (see
main).

    python benchmarks/static_glimpse_step.py --repeats 5
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

import retina
from benchmark import take_turns, turns_lines
from config import get_config, sections
from model import build_model, make_optimizer, ram_loss


def static_step(model):
    """model.step with its layers after the retina as one static program."""
    sensor, core, locator = model.sensor, model.rnn, model.locator

    def after_retina(phi, l_t, h_prev, noise):
        g_t = F.relu(sensor.fc3(F.relu(sensor.fc1(phi))) + sensor.fc4(F.relu(sensor.fc2(l_t))))
        h_t = F.relu(core.i2h(g_t) + core.h2h(h_prev))
        mu = paddle.tanh(locator.fc_lt(F.relu(locator.fc(h_t.detach()))))
        sample = (mu + locator.std * noise).detach()
        z = (sample - mu) / locator.std
        log_pi = (-0.5 * z.square()).sum(axis=1) - locator.log_normaliser
        return h_t, paddle.clip(sample, -1.0, 1.0), log_pi, model.baseliner(h_t)

    program = paddle.jit.to_static(after_retina, full_graph=True)

    def step(x, l_t, state, table=None, noise=None):
        phi = sensor.retina.foveate(x, l_t, table)
        if state is None:  # h2h(0) is its bias, exactly
            state = paddle.zeros([l_t.shape[0], core.h2h.weight.shape[0]], x.dtype)
        if noise is None:
            noise = paddle.randn([l_t.shape[0], 2], x.dtype)
        h_t, l_next, log_pi, b_t = program(phi, l_t, state, noise)
        return h_t, h_t, l_next, log_pi, b_t

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(1)
    # Beside the static program's executor threads, Paddle's DLPack import of the retina's
    # output hung at times (in about half of the runs here): both ways copy it instead (32 KB).
    retina.as_tensor = lambda array, place: paddle.to_tensor(array, place=place)
    config = get_config(["--num_threads", "1"])
    models = {"dynamic": build_model(sections(config)["model"]),
              "static after the retina": build_model(sections(config)["model"])}
    models["static after the retina"].step = static_step(models["static after the retina"])
    optimizers = {way: make_optimizer(config, model.parameters())[1] for way, model in models.items()}
    rng = np.random.default_rng(0)
    batches = [(paddle.to_tensor(rng.random((128, 1, 28, 28)).astype("float32")),
                paddle.to_tensor(rng.integers(0, 10, 128))) for _ in range(10)]

    def step_ms(way):
        start = time.process_time()
        for i in range(args.steps):
            x, y = batches[i % len(batches)]
            log_probas, log_pi, baselines, _ = models[way](x)
            loss = ram_loss(log_probas, log_pi, baselines, y)
            optimizers[way].clear_grad()
            loss.total.backward()
            optimizers[way].step()
        return 1000 * (time.process_time() - start) / args.steps

    times = take_turns({way: lambda way=way: step_ms(way) for way in models}, args.repeats)
    print("\n".join(turns_lines(times, "ms of CPU a step")))
    medians = {way: statistics.median(values) for way, values in times.items()}
    print(f"static / dynamic: {medians['dynamic'] / medians['static after the retina']:.2f}x")


if __name__ == "__main__":
    main()
