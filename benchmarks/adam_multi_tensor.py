"""Training steps with Paddle's per-weight Adam (the trainer's) against its multi-tensor Adam,
taking turns in one process, on 28x28 MNIST (the default model) and cluttered 60x60 (the
paper's model, 8 glimpses, 3 scales):

    python benchmarks/adam_multi_tensor.py [--repeats 7] [--steps 10] [--num_threads 1]

Prints each median step time and their ratio, and the largest weight difference after the
same steps from the same weights and draws (the fused update rounds differently, not
otherwise). Times are this process's CPU time (time.process_time), which other processes
on the machine disturb far less than wall time; with one thread it is the step's time.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils import fast_mkl_on_amd, keep_freed_memory

fast_mkl_on_amd()
keep_freed_memory()
import numpy as np
import paddle

from config import get_config
from data_loader import load_mnist, make_canvases, prepare, read_digits
from trainer import Trainer

TASKS = {"28x28": [], "60x60": ["--dataset", "cluttered", "--patch_size", "12", "--num_patches",
                                "3", "--glimpse_scale", "2", "--num_glimpses", "8", "--std", "0.1"]}


def trainer_with(config, multi_tensor):
    paddle.seed(config.random_seed)
    with paddle.utils.unique_name.guard():
        trainer = Trainer(config)
        trainer.optimizer = paddle.optimizer.Adam(trainer.scheduler,
                                                  parameters=trainer.model.parameters(),
                                                  use_multi_tensor=multi_tensor)
    return trainer


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--num_threads", type=int, default=1)
    parser.add_argument("--data_dir", default="data/MNIST")
    args = parser.parse_args()
    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(args.num_threads)
    print(f"paddle {paddle.__version__}, {args.num_threads} threads, batch 128, "
          f"{args.steps} steps a turn, {args.repeats} turns each")
    for name, options in TASKS.items():
        config = get_config(options + ["--use_gpu=False"])
        count = 128 * args.steps
        if config.dataset == "mnist":
            images = load_mnist(args.data_dir, "train")[0][:count]
        else:
            digits = read_digits(args.data_dir, "train")[0][:count]
            canvases = make_canvases(digits, 60, 4, 8, np.random.default_rng(0))[0]
            images = prepare(canvases[:, None], "cluttered")
        x = paddle.to_tensor(images)
        y = paddle.to_tensor(np.arange(count) % 10)
        batches = [(x[i:i + 128], y[i:i + 128]) for i in range(0, count, 128)]
        trainers = {"per-weight Adam": trainer_with(config, False),
                    "multi-tensor Adam": trainer_with(config, True)}
        for trainer in trainers.values():  # the same steps from the same weights and draws first
            paddle.seed(config.random_seed)
            for batch in batches:
                trainer.train_step(*batch)
        weights = [t.model.state_dict() for t in trainers.values()]
        difference = max(float((weights[0][k] - weights[1][k]).abs().max()) for k in weights[0])
        times = {way: [] for way in trainers}
        for _ in range(args.repeats):
            for way, trainer in trainers.items():
                start = time.process_time()
                for batch in batches:
                    trainer.train_step(*batch)
                times[way].append((time.process_time() - start) / len(batches) * 1000)
        medians = {way: statistics.median(t) for way, t in times.items()}
        for way, median in medians.items():
            print(f"{name} {way}: {median:.1f} ms of CPU a step (min {min(times[way]):.1f}, "
                  f"max {max(times[way]):.1f})")
        print(f"{name} speed-up, per-weight / multi-tensor medians: "
              f"{medians['per-weight Adam'] / medians['multi-tensor Adam']:.2f}; largest weight "
              f"difference after {len(batches)} steps: {difference:.1e}")


if __name__ == "__main__":
    main()
