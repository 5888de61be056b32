"""Training and evaluation speed on 28x28 MNIST and on the translated and cluttered
tasks' canvases, this checkout against an earlier commit, in one run:

    python benchmarks/canvas_speed.py 4a17cfd                   # steps and evaluations
    python benchmarks/canvas_speed.py 4a17cfd --whole_epochs    # main.py's epochs
    python benchmarks/canvas_speed.py acbbe70 --whole_epochs --epoch_images 0 \
        --num_threads 0 --processes 2                           # as a user types them

Each side runs in its own process from its own tree (the commit is checked out
with `git worktree` in a temporary folder) with main.py's settings on one
thread, and the sides take turns, so that all see the same machine; median of
--repeats. Tasks: 28x28 with the defaults (one 8x8 patch, 6 glimpses), and
cluttered 60x60 (4 distractors, 3 scales) and 100x100 (8 distractors, 4 scales)
with 12x12 patches and 8 glimpses.

Steps: images per second over --steps training steps of batch 128, or over
--eval_batches evaluations with M=10, on random 8-bit images (whole 255ths, as
canvases are; standardised for 28x28). Whole epochs: `main.py --epochs 1
--train_subset --epoch_images` (0: the whole training set) on MNIST's canvases,
with the published recipes (cosine from 1e-3, std 0.1; fresh canvases every epoch),
on --num_threads threads (0: main.py's default, every core); training images per
second (the log's samples_per_s), validation images per second with M=10 (the
validation images over the log's seconds less the training time) and the whole
epoch's seconds. --processes N adds a side: this tree data-parallel in N
processes (paddle.distributed.launch, --batch_size 128 / N, so that a step still
averages 128 images). --torch adds the PyTorch reference's epoch at 28x28
(torch_ram.py --epochs 1, torch's default threads, the reference's recipe).
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
    import utils
    utils.fast_mkl_on_amd()
    if hasattr(utils, "keep_freed_memory"):  # as the tree's main.py does
        utils.keep_freed_memory()
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
    pixels = [rng.integers(0, 256, size=(128, 1, side, side)) / 255 for _ in range(steps)]
    if side == 28:
        pixels = [(p - 0.1307) / 0.3081 for p in pixels]
    batches = [(paddle.to_tensor(p.astype("float32")), paddle.to_tensor(rng.integers(0, 10, 128)))
               for p in pixels]
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


def whole_epoch(tree, side, num_patches, images, scratch, num_threads, processes=1):
    """Training and validation images/s and the seconds of one epoch of `tree`'s main.py,
    from its log."""
    task = ["--lr_schedule", "cosine", "--init_lr", "1e-3", "--std", "0.1"]
    if side != 28:
        task += ["--dataset", "cluttered", "--image_size", str(side), "--num_distractors",
                 str(4 if side == 60 else 8), "--patch_size", "12", "--num_patches",
                 str(num_patches), "--glimpse_scale", "2", "--num_glimpses", "8",
                 "--fresh_canvases"]
    out = os.path.join(scratch, "run")
    launcher = []
    if processes > 1:
        launcher = ["-m", "paddle.distributed.launch", "--nproc_per_node", str(processes),
                    "--log_dir", os.path.join(out, "launch")]
        task += ["--batch_size", str(128 // processes)]
    if num_threads:
        task += ["--num_threads", str(num_threads)]
    # Each tree keeps its own canvas cache (their names differ); made on the first run,
    # outside the epoch's timing.
    subprocess.run([sys.executable, *launcher, "main.py", "--use_gpu=False", "--epochs", "1",
                    "--train_subset", str(images), *task,
                    "--ckpt_dir", out, "--logs_dir", out, "--plot_dir", out,
                    "--cache_dir", os.path.join(scratch, "cache", os.path.basename(tree))],
                   cwd=tree, check=True, capture_output=True, text=True)
    [log] = [name for name in os.listdir(out) if name.endswith(".log")]
    with open(os.path.join(out, log)) as f:
        line = [line.split() for line in f if line.startswith("epoch")][-1]
    values = dict(zip(line[::2], line[1::2]))
    num_train = images or 60000
    num_valid = int(num_train * 0.1)
    train_seconds = (num_train - num_valid) / float(values["samples_per_s"])
    subprocess.run(["rm", "-rf", out], check=True)
    return {"train": float(values["samples_per_s"]),
            "eval": num_valid / (float(values["seconds"]) - train_seconds),
            "epoch": float(values["seconds"])}


def torch_epoch(scratch):
    """Training and validation images/s and the seconds of one 28x28 epoch of the PyTorch
    reference (torch_ram.py), from its log."""
    log = os.path.join(scratch, "torch.log")
    subprocess.run([sys.executable, os.path.join(HERE, "torch_ram.py"), "--epochs",
                    "1", "--log", log], cwd=HERE, check=True, capture_output=True, text=True)
    with open(log) as f:
        line = [line.split() for line in f if line.startswith("epoch")][-1]
    values = dict(zip(line[::2], line[1::2]))
    train_seconds = 54000 / float(values["samples_per_s"])
    return {"train": float(values["samples_per_s"]),
            "eval": 6000 / (float(values["seconds"]) - train_seconds),
            "epoch": float(values["seconds"])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the earlier commit to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--eval_batches", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="one JSON line per task")
    parser.add_argument("--whole_epochs", action="store_true",
                        help="time main.py's epochs instead of steps and evaluations")
    parser.add_argument("--epoch_images", type=int, default=12000,
                        help="--train_subset of the whole epochs (a tenth validates; 0: all)")
    parser.add_argument("--num_threads", type=int, default=1,
                        help="main.py's --num_threads in whole epochs (0: its default)")
    parser.add_argument("--processes", type=int, default=1,
                        help="also time this tree's whole epochs in this many processes")
    parser.add_argument("--torch", action="store_true",
                        help="also time the PyTorch reference's whole 28x28 epoch")
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
            sides = [("base", base_tree, 1), ("this", HERE, 1)]
            if args.whole_epochs and args.processes > 1:
                sides.append((f"this_{args.processes}p", HERE, args.processes))
            for name, side, num_patches in TASKS:
                task_sides = sides + ([("torch", None, 1)] if args.torch and args.whole_epochs
                                      and side == 28 else [])
                runs = {which: [] for which, _, _ in task_sides}
                for _ in range(args.repeats):
                    for which, tree, processes in task_sides:
                        if which == "torch":
                            runs[which].append(torch_epoch(folder))
                            continue
                        if args.whole_epochs:
                            runs[which].append(whole_epoch(tree, side, num_patches,
                                                           args.epoch_images, folder,
                                                           args.num_threads, processes))
                            continue
                        out = subprocess.run(
                            [sys.executable, os.path.abspath(__file__), args.base,
                             "--steps", str(args.steps), "--eval_batches", str(args.eval_batches),
                             "--child", tree, str(side), str(num_patches)],
                            check=True, capture_output=True, text=True).stdout
                        runs[which].append(json.loads(out.strip().splitlines()[-1]))
                row = {"task": name, "base": commit}
                parts = ("train", "eval", "epoch") if args.whole_epochs else ("train", "eval")
                for part in parts:
                    base = statistics.median(run[part] for run in runs["base"])
                    row[f"{part}_base"] = round(base, 1)
                    for which, _, _ in task_sides[1:]:
                        this = statistics.median(run[part] for run in runs[which])
                        # Seconds: the ratio is base over this, so that > 1 is faster too.
                        ratio = base / this if part == "epoch" else this / base
                        row.update({f"{part}_{which}": round(this, 1),
                                    f"{part}_ratio_{which}": round(ratio, 2)})
                    if "torch" in runs:  # each Paddle side against the reference
                        torch = statistics.median(run[part] for run in runs["torch"])
                        for which, _, _ in sides:
                            mine = statistics.median(run[part] for run in runs[which])
                            row[f"{part}_{which}_vs_torch"] = round(
                                torch / mine if part == "epoch" else mine / torch, 2)
                print(json.dumps(row) if args.json else
                      f"{name}: " + "; ".join(
                          f"{which}: train {row[f'train_ratio_{which}']}x, evaluate "
                          f"{row[f'eval_ratio_{which}']}x"
                          + (f", epoch {row['epoch_base']} -> {row[f'epoch_{which}']} s "
                             f"({row[f'epoch_ratio_{which}']}x)" if args.whole_epochs else "")
                          for which, _, _ in task_sides[1:]) + f" against {commit}"
                      + ("; against torch: " + "; ".join(
                          f"{which} train {row[f'train_{which}_vs_torch']}x, evaluate "
                          f"{row[f'eval_{which}_vs_torch']}x, epoch "
                          f"{row[f'epoch_{which}_vs_torch']}x" for which, _, _ in sides)
                         if "torch" in runs else ""), flush=True)
        finally:
            subprocess.run(["git", "-C", HERE, "worktree", "remove", "--force", base_tree],
                           check=False)


if __name__ == "__main__":
    main()
