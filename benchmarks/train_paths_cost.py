"""What several glimpse paths per training image (--train_paths) cost: training steps of the
flagship model (cluttered 60x60, 8 glimpses, 3 scales of 12x12) at several batch sizes and
path counts, taking turns in one process:

    python benchmarks/train_paths_cost.py [--repeats 5] [--images 1024] [--num_threads 1]

Prints, for each setting, the median CPU time of a training image (all of its paths) and of
an episode (one path), each against the recipe's (--batch_size 128, one path), and the epochs
that cost as much as the recipe's 250: the length of an ablation at equal compute. Times are
this process's CPU time (time.process_time), which other processes on the machine disturb far
less than wall time; with one thread it is the step's time.
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
from data_loader import make_canvases, prepare, read_digits
from trainer import Trainer

FLAGSHIP = ["--dataset", "cluttered", "--image_size", "60", "--num_distractors", "4",
            "--patch_size", "12", "--num_patches", "3", "--glimpse_scale", "2",
            "--num_glimpses", "8", "--std", "0.1", "--use_gpu=False"]
# (batch size, paths): the recipe first; tfRAM trains 32 images x 10 paths a step.
SETTINGS = [(128, 1), (32, 10), (128, 10), (64, 2), (128, 4)]
RECIPE_EPOCHS = 250


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed turns of each setting")
    parser.add_argument("--images", type=int, default=1024, help="training images a turn")
    parser.add_argument("--num_threads", type=int, default=1)
    parser.add_argument("--data_dir", default="data/MNIST")
    args = parser.parse_args()
    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(args.num_threads)
    digits = read_digits(args.data_dir, "train")[0][:args.images]
    canvases = make_canvases(digits, 60, 4, 8, np.random.default_rng(0))[0]
    x = paddle.to_tensor(prepare(canvases[:, None], "cluttered"))
    y = paddle.to_tensor(np.arange(len(x)) % 10)
    print(f"paddle {paddle.__version__}, {args.num_threads} threads, {len(x)} images a turn, "
          f"{args.repeats} turns each")
    trainers, batches = {}, {}
    for batch, paths in SETTINGS:
        config = get_config(FLAGSHIP + ["--batch_size", str(batch), "--train_paths", str(paths)])
        with paddle.utils.unique_name.guard():
            trainers[batch, paths] = Trainer(config)
        batches[batch, paths] = [(x[i:i + batch], y[i:i + batch]) for i in range(0, len(x), batch)]
        trainers[batch, paths].train_step(*batches[batch, paths][0])  # warm up
    times = {setting: [] for setting in SETTINGS}
    for _ in range(args.repeats):
        for setting, trainer in trainers.items():
            start = time.process_time()
            for batch in batches[setting]:
                trainer.train_step(*batch)
            times[setting].append((time.process_time() - start) / len(x) * 1e3)
    per_image = {setting: statistics.median(t) for setting, t in times.items()}
    recipe = per_image[SETTINGS[0]]
    for (batch, paths), ms in per_image.items():
        per_episode = ms / paths
        print(f"--batch_size {batch:3d} --train_paths {paths:2d}: {ms:6.2f} ms of CPU an image "
              f"({ms / recipe:5.2f}x the recipe's), {per_episode:5.2f} ms an episode "
              f"({per_episode / recipe:4.2f}x); {RECIPE_EPOCHS} recipe epochs cost as much as "
              f"{RECIPE_EPOCHS * recipe / ms:5.1f} of these")


if __name__ == "__main__":
    main()
