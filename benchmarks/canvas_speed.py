"""Training and evaluation speed on 28x28 MNIST and on the translated and cluttered
tasks' canvases, this checkout against an earlier commit, in one run:

    python benchmarks/canvas_speed.py 5690460 --json > logs/canvas_speed.jsonl

Each side runs in its own process from its own tree (the commit is checked out
with `git worktree` in a temporary folder) with main.py's settings on one
thread, and the two take turns, so that both see the same machine. A
measurement is images per second over --steps training steps of batch 128, or
over --eval_batches evaluations with M=10, on random images: 28x28 with the
defaults (one 8x8 patch, 6 glimpses), and 60x60 (3 scales) and 100x100 (4 scales)
with 12x12 patches and 8 glimpses; median of --repeats.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = [("28x28", 28, 1), ("60x60", 60, 3), ("100x100", 100, 4)]


def measure(tree, side, num_patches, steps, eval_batches):
    """Runs in the child: images/s of training and of evaluation in `tree`'s code."""
    sys.path.insert(0, tree)
    os.chdir(tree)
    from utils import fast_mkl_on_amd
    fast_mkl_on_amd()
    import numpy as np
    import paddle
    from config import get_config
    from trainer import Trainer, evaluate
    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(1)
    task = [] if side == 28 else [
        "--dataset", "cluttered", "--image_size", str(side), "--patch_size", "12",
        "--num_patches", str(num_patches), "--glimpse_scale", "2", "--num_glimpses", "8"]
    config = get_config(["--use_gpu=False", *task])
    paddle.seed(0)
    trainer = Trainer(config)
    rng = np.random.default_rng(0)
    batches = [(paddle.to_tensor(rng.uniform(size=(128, 1, side, side)).astype("float32")),
                paddle.to_tensor(rng.integers(0, 10, 128))) for _ in range(steps)]
    trainer.train_step(*batches[0])  # warm-up
    start = time.perf_counter()
    for x, y in batches:
        trainer.train_step(x, y)
    float(trainer.model.rnn.i2h.weight.sum())
    train = steps * 128 / (time.perf_counter() - start)
    evaluate(trainer.model, batches[:1], config.M)
    start = time.perf_counter()
    evaluate(trainer.model, batches[:eval_batches], config.M)
    return {"train": train, "eval": eval_batches * 128 / (time.perf_counter() - start)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the earlier commit to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--eval_batches", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="one JSON line per task")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # tree side num_patches
    args = parser.parse_args(argv)
    if args.child:
        tree, side, num_patches = args.child[0], int(args.child[1]), int(args.child[2])
        print(json.dumps(measure(tree, side, num_patches, args.steps, args.eval_batches)))
        return

    with tempfile.TemporaryDirectory() as folder:
        base_tree = os.path.join(folder, "base")
        subprocess.run(["git", "-C", HERE, "worktree", "add", "--detach", "-q", base_tree,
                        args.base], check=True)
        try:
            commit = subprocess.run(["git", "-C", base_tree, "rev-parse", "--short", "HEAD"],
                                    check=True, capture_output=True, text=True).stdout.strip()
            for name, side, num_patches in TASKS:
                runs = {"base": [], "this": []}
                for _ in range(args.repeats):
                    for which, tree in (("base", base_tree), ("this", HERE)):
                        out = subprocess.run(
                            [sys.executable, os.path.abspath(__file__), args.base,
                             "--steps", str(args.steps), "--eval_batches", str(args.eval_batches),
                             "--child", tree, str(side), str(num_patches)],
                            check=True, capture_output=True, text=True).stdout
                        runs[which].append(json.loads(out.strip().splitlines()[-1]))
                row = {"task": name, "base": commit}
                for part in ("train", "eval"):
                    base = statistics.median(run[part] for run in runs["base"])
                    this = statistics.median(run[part] for run in runs["this"])
                    row.update({f"{part}_base": round(base), f"{part}_this": round(this),
                                f"{part}_ratio": round(this / base, 2)})
                print(json.dumps(row) if args.json else
                      f"{name}: train {row['train_base']} -> {row['train_this']} images/s "
                      f"({row['train_ratio']}x), evaluate {row['eval_base']} -> "
                      f"{row['eval_this']} ({row['eval_ratio']}x) against {commit}", flush=True)
        finally:
            subprocess.run(["git", "-C", HERE, "worktree", "remove", "--force", base_tree],
                           check=False)


if __name__ == "__main__":
    main()
