"""The retina's work per batch of the canvas tasks, in one tree's code, as its
model does it: a training batch (the table of 128 canvases, then 8 glimpses of
128 locations) and an M=10 evaluation batch (8 glimpses of 1,280 locations; a
tree whose model takes no `repeats` tiles the images 10 times first, as its
evaluate() did). One thread, milliseconds of this process's CPU time (the work's
own time, which other work on the machine disturbs far less than wall time),
median of --repeats.

    python benchmarks/retina_parts.py TREE [--float_images] [--no_memory_setting]

--float_images gives uniform floats instead of 8-bit canvases (whole 255ths);
--no_memory_setting leaves glibc's malloc as it is. Run it in two trees (a
`git worktree` of an older commit and this one) to see what a change was worth.
"""
import argparse
import json
import os
import statistics
import sys
import time
import warnings


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tree")
    parser.add_argument("--float_images", action="store_true")
    parser.add_argument("--no_memory_setting", action="store_true")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.tree))
    warnings.filterwarnings("ignore")
    import utils
    utils.fast_mkl_on_amd()
    if hasattr(utils, "keep_freed_memory") and not args.no_memory_setting:
        utils.keep_freed_memory()
    import numpy as np
    import paddle
    try:
        from retina import Retina
    except ImportError:  # a tree from before retina.py
        from modules import Retina
    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(1)
    rng = np.random.default_rng(0)
    result = {}
    for side, scales in [(60, 3), (100, 4)]:
        pixels = (rng.uniform(size=(128, 1, side, side)) if args.float_images
                  else rng.integers(0, 256, size=(128, 1, side, side)) / 255)
        x = paddle.to_tensor(pixels.astype("float32"))
        retina = Retina(12, scales, 2, "numpy")
        train_l = [paddle.uniform([128, 2], min=-1, max=1) for _ in range(8)]
        eval_l = [paddle.uniform([1280, 2], min=-1, max=1) for _ in range(8)]
        shares = "repeats" in open(os.path.join(args.tree, "model.py")).read()

        def train():
            table = retina.summed_area_table(x)
            for l in train_l:
                retina.foveate(x, l, table)

        def evaluate():
            images = x if shares else paddle.tile(x, [10, 1, 1, 1])
            table = retina.summed_area_table(images)
            for l in eval_l:
                retina.foveate(images, l, table)

        for name, run in [("train", train), ("eval", evaluate)]:
            run()
            times = []
            for _ in range(args.repeats):
                start = time.process_time()
                run()
                times.append(1000 * (time.process_time() - start))
            result[f"{side}x{side} {name} ms"] = round(statistics.median(times), 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
