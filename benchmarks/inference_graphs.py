"""Two exported models (export_model.py) of one checkpoint, timed in turns in one process:

    python benchmarks/inference_graphs.py BEFORE_DIR AFTER_DIR [--repeats 7]

e.g. the same checkpoint exported by an earlier commit's export_model.py and by this one's.
Prints images/s per second of this process's CPU time (M as exported, 1 thread, oneDNN
off, batches of 128 of the task's test images) and the ratio of the medians.
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import warnings

warnings.filterwarnings("ignore", message="No ccache found")
import numpy as np

from data_loader import load_mnist, make_canvases, prepare, read_digits
from infer import make_predictor, predict


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--data_dir", default="data/MNIST")
    args = parser.parse_args()
    with open(os.path.join(args.after, "ram.json")) as f:
        info = json.load(f)
    count = 384
    if info["dataset"] == "mnist":
        images = load_mnist(args.data_dir, "test")[0][:count]
    else:
        digits = read_digits(args.data_dir, "test")[0][:count]
        canvases = make_canvases(digits, info["image_size"], info["num_distractors"],
                                 info["distractor_size"], np.random.default_rng(0))[0]
        images = prepare(canvases[:, None], info["dataset"])
    predictors = {way: make_predictor(folder, 1, False, False)
                  for way, folder in (("before", args.before), ("after", args.after))}
    rates = {way: [] for way in predictors}
    for predictor in predictors.values():
        predict(predictor, images[:128])  # warm-up
    for _ in range(args.repeats):
        for way, predictor in predictors.items():
            start = time.process_time()
            for i in range(0, count, 128):
                predict(predictor, images[i:i + 128])
            rates[way].append(count / (time.process_time() - start))
    medians = {way: statistics.median(r) for way, r in rates.items()}
    print(f"{info['dataset']} {info['image_size']}x{info['image_size']}, M={info['M']}: before "
          f"{medians['before']:.0f}, after {medians['after']:.0f} images per CPU second: "
          f"{medians['after'] / medians['before']:.2f}x")


if __name__ == "__main__":
    main()
