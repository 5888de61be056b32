"""How fast RAM-Paddle trains and evaluates on this machine, against the PyTorch reference.

    python benchmark.py                  # Paddle only: retina, training step, evaluation
    python benchmark.py --compare-torch  # and the PyTorch reference, alternating, with ratios
    python benchmark.py --profile        # where the time of one training step goes
    python benchmark.py --operators 100x100  # Paddle's profile of 20 steps of a task, by operator
    python benchmark.py --json           # one JSON line instead of the table
    python benchmark.py --inference      # the exported model (Paddle Inference) against dygraph
    python benchmark.py --catch          # the game's training frames a second
    python benchmark.py --floor          # each task beside its floor: its matrix products alone

It also times the paper's canvas tasks (cluttered 60x60 with 3 scales, 100x100 with 4,
12x12 patches, 8 glimpses, std 0.1): a training step and evaluation with M=10 on
canvases made from MNIST's digits, and with --profile the parts of their step.

Every figure is timed after a warm-up, over --repeats runs (min / median / max);
ratios divide medians measured in this one run. Paddle runs as `python main.py`
does (the same model, optimiser, loss, evaluation and thread and MKL settings);
both frameworks get the same MNIST batches, already in memory as tensors.

--inference times, instead, test-time prediction with M=10 of 28x28 MNIST (the
default model) and of cluttered 60x60 (the paper's model): dygraph evaluation as
main.py --is_train=False runs it, against the model exported by export_model.py run
by Paddle Inference (infer.py's predictor) with oneDNN off and on, taking turns, all
in this process; it counts this process's CPU time, which other work on the machine
disturbs far less than wall time (with one thread, the work's own time).

The PyTorch side (torch_ram.py --serve) is the reference's model,
loss and per-image-loop retina with torch's default threads. It runs in its
own process, so neither framework's thread settings touch the other's, and the
two take turns: a Paddle run, then a torch run, and so on.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from utils import before_paddle, usable_cores

before_paddle()  # as main.py does
# Importing Paddle sets OMP_NUM_THREADS=1 in this process's environment; the torch
# worker gets the environment from before, so that it runs with torch's defaults.
ENVIRONMENT_BEFORE_PADDLE = dict(os.environ)
import numpy as np
import paddle

from catch import FRAMES, FixedGames, TrainingGames
from config import get_config
from data_loader import DataError, load_mnist, make_canvases, read_digits
from model import ModelConfig, build_model, evaluate, evaluate_games, ram_loss
from retina import Retina
from trainer import Trainer, check_finite

HERE = os.path.dirname(os.path.abspath(__file__))
# (name, image side, g, k, s): the default glimpse, and those of the translated and
# cluttered tasks.
RETINAS = [("28x28", 28, 8, 1, 1), ("60x60", 60, 12, 3, 2), ("100x100", 100, 12, 4, 2)]
# (name, canvas side, distractors, scales): the paper's cluttered tasks, as main.py runs them.
CANVAS_TASKS = [("60x60", 60, 4, 3), ("100x100", 100, 8, 4)]


def spread(values):
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


SETTLE_SECONDS = 0.3  # --settle


def settle():
    """Let the other process's worker threads go idle: OpenMP threads keep
    spinning for a while after their last task, and would take cores from
    whichever framework is timed next."""
    time.sleep(SETTLE_SECONDS)


def time_runs(run, repeats, warmup=1, clock=time.perf_counter):
    """Seconds of each of `repeats` calls of run(), after `warmup` untimed ones, by
    clock: wall time, or this process's CPU time (time.process_time)."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        settle()
        start = clock()
        run()
        times.append(clock() - start)
    return times


def take_turns(ways, repeats):
    """{way: [figure of each turn]}: ways ({name: a function timing one turn}) measured in
    turns, `repeats` rounds after one warm-up each, so that a busy moment of the machine
    falls on all of them alike."""
    for measure in ways.values():
        measure()
    times = {way: [] for way in ways}
    for _ in range(repeats):
        for way, measure in ways.items():
            times[way].append(measure())
    return times


def turns_lines(times, unit):
    """A line a way of take_turns' figures: its median, min and max, in `unit`."""
    return [f"{way}: {statistics.median(values):.2f} {unit} (median of {len(values)}; "
            f"{min(values):.2f} to {max(values):.2f})" for way, values in times.items()]


class TorchWorker:
    """torch_ram.py --serve in a child process, one command at a time."""

    def __init__(self, batches_path):
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "torch_ram.py"), "--serve",
             batches_path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=ENVIRONMENT_BEFORE_PADDLE)
        self.info = self.read()

    def read(self):
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the PyTorch worker stopped (is torch installed? "
                               "pip install torch==2.13.0)")
        return json.loads(line)

    def seconds(self, op, **args):
        settle()
        self.process.stdin.write(json.dumps({"op": op, "args": args}) + "\n")
        self.process.stdin.flush()
        return self.read()["seconds"]

    def close(self):
        self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
        self.process.stdin.close()
        self.process.wait()


def retina_ms(methods, repeats, calls, batch_size, torch_worker=None):
    """Milliseconds per foveate() of a batch, by method and retina. Each call makes
    the batch's summed-area table, which the model makes once for all T glimpses."""
    result = {}
    for name, side, g, k, s in RETINAS:
        x = paddle.rand([batch_size, 1, side, side])
        l = paddle.uniform([batch_size, 2], min=-1.0, max=1.0)
        for method in methods:
            retina = Retina(g, k, s, method)
            times = time_runs(lambda: [retina.foveate(x, l) for _ in range(calls)], repeats)
            result.setdefault(method, {})[name] = spread([1000 * t / calls for t in times])
        if torch_worker:
            times = [torch_worker.seconds("retina", calls=calls, size=side, g=g, k=k, s=s)
                     for _ in range(repeats + 1)][1:]
            result.setdefault("torch_loop", {})[name] = spread([1000 * t / calls for t in times])
    return result


def profile_step(trainer, batches, steps):
    """Milliseconds per training step spent in the retina, the rest of the forward
    pass, the loss, the backward pass, the check for NaN and Adam's update."""
    parts = dict.fromkeys(["retina", "forward (rest)", "loss", "backward", "finite check",
                           "adam"], 0.0)
    retina = trainer.model.sensor.retina
    untimed = {name: getattr(retina, name) for name in ("summed_area_table", "foveate")}

    def timed(name):
        def run(*args):
            start = time.perf_counter()
            result = untimed[name](*args)
            parts["retina"] += time.perf_counter() - start
            return result
        return run

    for name in untimed:
        setattr(retina, name, timed(name))
    trainer.model.train()  # as main.py trains (the batched path: model.Glimpses)
    try:
        for i in range(steps):
            x, y = batches[i % len(batches)]
            t0 = time.perf_counter()
            outputs = trainer.model(x)
            t1 = time.perf_counter()
            loss = ram_loss(*outputs[:3], y).total
            t2 = time.perf_counter()
            trainer.optimizer.clear_grad()
            loss.backward()
            t3 = time.perf_counter()
            check_finite(trainer.model, loss)
            t4 = time.perf_counter()
            trainer.optimizer.step()
            t5 = time.perf_counter()
            for part, seconds in [("forward (rest)", t1 - t0), ("loss", t2 - t1),
                                  ("backward", t3 - t2), ("finite check", t4 - t3),
                                  ("adam", t5 - t4)]:
                parts[part] += seconds
    finally:
        for name, method in untimed.items():
            setattr(retina, name, method)
    parts["forward (rest)"] -= parts["retina"]
    return {part: 1000 * seconds / steps for part, seconds in parts.items()}


def as_batches(images, labels, batch_size):
    """(images, labels) Tensors of batch_size consecutive images each."""
    return [(paddle.to_tensor(images[i:i + batch_size]), paddle.to_tensor(labels[i:i + batch_size]))
            for i in range(0, len(labels), batch_size)]


def train_steps(trainer, batches, steps):
    """steps Adam steps over batches in turn, in training mode as main.py's epochs take
    them (the batched path: model.Glimpses), waited for."""
    trainer.model.train()
    for i in range(steps):
        trainer.train_step(*batches[i % len(batches)])
    float(trainer.model.rnn.i2h.weight.sum())  # wait for the device


def canvas_setup(side, distractors, scales, num_batches, digits, batch_size=128):
    """A Trainer of the paper's model for a canvas task, as main.py builds it, and
    num_batches batches of batch_size of its canvases made from digits."""
    config = get_config(["--dataset", "cluttered", "--image_size", str(side), "--num_distractors",
                         str(distractors), "--patch_size", "12", "--num_patches", str(scales),
                         "--glimpse_scale", "2", "--num_glimpses", "8", "--std", "0.1",
                         "--batch_size", str(batch_size)])
    count = config.batch_size * num_batches
    canvases, _ = make_canvases(digits[:count], side, distractors, 8, np.random.default_rng(0))
    pixels = (canvases[:, None] / np.float32(255)).astype("float32")  # as CanvasDataset gives
    batches = as_batches(pixels, np.random.default_rng(1).integers(0, 10, count), config.batch_size)
    with paddle.utils.unique_name.guard():
        return Trainer(config), batches


def canvas_task(name, side, distractors, scales, args, digits):
    """Training and evaluation (M=10) images/s on one canvas task, and with --profile
    the parts of its step, as main.py runs it."""
    trainer, batches = canvas_setup(side, distractors, scales,
                                    max(args.train_steps, args.eval_batches), digits)
    config = trainer.config
    train_times = time_runs(lambda: train_steps(trainer, batches, args.train_steps), args.repeats)
    eval_times = time_runs(lambda: evaluate(trainer.model, batches[:args.eval_batches], config.M),
                           args.repeats)
    rates = {f"train {name}": spread([args.train_steps * config.batch_size / t for t in train_times]),
             f"eval {name}": spread([args.eval_batches * config.batch_size / t for t in eval_times])}
    result = {"train_samples_per_s": round(rates[f"train {name}"]["median"]),
              "eval_samples_per_s": round(rates[f"eval {name}"]["median"])}
    if args.profile:
        result["step_ms"] = {part: round(ms, 3) for part, ms in
                             profile_step(trainer, batches, args.train_steps * 2).items()}
    return result, rates


def catch_speed(args):
    """Training frames a second of the game as main.py runs configs/catch.toml (one frame: one
    glimpse and one game action of one game), at 64 games a batch (each played once) and at
    the recipe's batch."""
    rates = {}
    for label, extra in [("64 games a batch", ["--batch_size", "64", "--train_paths", "1"]),
                         ("the recipe's batch", [])]:
        config = get_config(["--config", os.path.join(HERE, "configs", "catch.toml"), *extra])
        with paddle.utils.unique_name.guard():
            trainer = Trainer(config)
        games = iter(TrainingGames(config.batch_size, 10**12, 1, config.train_paths))
        frames = config.batch_size * config.train_paths * FRAMES

        def train():
            for _ in range(args.train_steps):
                trainer.train_step(*next(games))

        times = time_runs(train, args.repeats)
        name = f"train catch, {label}: {config.batch_size * config.train_paths} games (frames/s)"
        rates[name] = spread([args.train_steps * frames / t for t in times])
    return rates


def linear_calls(model, run):
    """What run() asks of model's matrix products: for each call of an nn.Linear layer, and
    the two products of each call of an LSTM cell (the input's and the state's, the initial
    zeros' too), the input's shape, the weight's shape (in, out) and whether a gradient flows
    back to the input (dx)."""
    calls = []

    def record(layer, inputs, output):
        calls.append((inputs[0].shape, layer.weight.shape, not inputs[0].stop_gradient))

    def record_cell(cell, inputs, output):
        x, state = inputs[0], inputs[1] if len(inputs) > 1 else None
        calls.append((x.shape, cell.weight_ih.shape[::-1], not x.stop_gradient))
        state_grad = state is not None and not state[0].stop_gradient
        calls.append(([x.shape[0], cell.hidden_size], cell.weight_hh.shape[::-1], state_grad))

    hooks = [layer.register_forward_post_hook(record) for layer in model.sublayers()
             if isinstance(layer, paddle.nn.Linear)]
    hooks += [cell.register_forward_post_hook(record_cell) for cell in model.sublayers()
              if isinstance(cell, paddle.nn.LSTMCell)]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return calls


def training_calls(model, x):
    """linear_calls of a training step on images x, as autograd takes it: glimpse by glimpse
    (RecurrentAttention.glimpse_by_glimpse; the step itself, Glimpses, makes the same
    products, its weight gradients over all glimpses at once)."""
    l_0 = paddle.uniform([x.shape[0], 2], min=-1.0, max=1.0)
    return linear_calls(model, lambda: model.glimpse_by_glimpse(x, l_0))


def products_times(calls, backward, repeats, steps=1):
    """Seconds of `steps` times the matrix products of `calls` alone (linear_calls'), back
    to back on preallocated tensors of the same shapes: each forward product and, with
    backward, each weight gradient (x^T dy) and input gradient (dy W^T) where one flows. No
    step of RAM can take less: this is its floor on this machine. Timed as many steps in a
    row as the step it is the floor of: one step's products alone, after time_runs' pause,
    run on a cold core at half the speed (2026-12-06: 8.9 against 3.3 ms)."""
    work = [(paddle.rand(x), paddle.rand(w), paddle.rand([x[0], w[1]]), dx) for x, w, dx in calls]

    def run():
        for _ in range(steps):
            for x, w, dy, dx in work:
                paddle.matmul(x, w)
                if backward:
                    paddle.matmul(x, dy, transpose_x=True)
                    if dx:
                        paddle.matmul(dy, w, transpose_y=True)

    return time_runs(run, repeats)


def floor_task(trainer, batches, args):
    """Training and evaluation (M=10) images/s of one task now, beside its floor (the same
    step's matrix products alone) and the share of the floor reached, medians."""
    model, config = trainer.model, trainer.config
    return floor_figures(args, config.batch_size,
                         lambda: train_steps(trainer, batches, args.train_steps),
                         lambda: evaluate(model, batches[:args.eval_batches], config.M),
                         training_calls(model, batches[0][0]),
                         linear_calls(model, lambda: evaluate(model, batches[:1], config.M)))


def floor_figures(args, per_step, train, evaluation, train_calls, eval_calls):
    """The rates of train() (--train_steps steps) and evaluation() (--eval_batches batches),
    each step or batch `per_step` images or frames, now and at their floors (the products
    of train_calls and eval_calls alone, as many in a row), and the shares: medians."""
    now = {"train": time_runs(train, args.repeats), "eval": time_runs(evaluation, args.repeats)}
    floor = {"train": products_times(train_calls, True, args.repeats, args.train_steps),
             "eval": products_times(eval_calls, False, args.repeats, args.eval_batches)}
    count = {"train": args.train_steps * per_step, "eval": args.eval_batches * per_step}
    figures = {}
    for what in ("train", "eval"):
        figures[f"{what} now"] = count[what] / statistics.median(now[what])
        figures[f"{what} floor"] = count[what] / statistics.median(floor[what])
        figures[f"{what} share"] = figures[f"{what} now"] / figures[f"{what} floor"]
    return figures


GAME = "game"  # floor_table's key of the game's row


def floor_table(args, images, labels, digits):
    """floor_task of 28x28 (main.py's defaults) and the two cluttered canvas tasks, at each
    batch of --floor_batches, and the game's (game_floor_task): {batch or GAME: {task:
    figures}}."""
    table = {}
    batches_needed = max(args.train_steps, args.eval_batches)
    for batch in args.floor_batches:
        config = get_config(["--batch_size", str(batch)])
        with paddle.utils.unique_name.guard():
            trainer = Trainer(config)
        count = batch * batches_needed
        table[batch] = {"28x28, 6 glimpses": floor_task(
            trainer, as_batches(images[:count], labels[:count], batch), args)}
        for name, side, distractors, scales in CANVAS_TASKS:
            trainer, task_batches = canvas_setup(side, distractors, scales, batches_needed, digits,
                                                 batch)
            table[batch][f"{name}, 8 glimpses, {scales} scales"] = floor_task(trainer, task_batches,
                                                                              args)
    table[GAME] = {f"Catch, {FRAMES} frames a game, LSTM core": game_floor_task(args)}
    return table


def game_floor_task(args):
    """floor_task of the game (configs/catch.toml's model, an LSTM core) in frames a second:
    training on 64 games a step, each played once, and evaluation: 64 games played greedily."""
    config = get_config(["--config", os.path.join(HERE, "configs", "catch.toml"), "--batch_size",
                         "64", "--train_paths", "1"])
    with paddle.utils.unique_name.guard():
        trainer = Trainer(config)
    model = trainer.model
    games = iter(TrainingGames(64, 10**12, 1))

    def train():
        model.train()
        for _ in range(args.train_steps):
            trainer.train_step(*next(games))

    model.train()
    train_calls = linear_calls(model, lambda: trainer.train_step(*next(games)))
    return floor_figures(
        args, 64 * FRAMES, train,
        lambda: evaluate_games(model, FixedGames(64 * args.eval_batches, 64, 0, 1)), train_calls,
        linear_calls(model, lambda: evaluate_games(model, FixedGames(64, 64, 0, 1))))


def print_floor(table, threads):
    print(f"paddle {paddle.__version__}, {threads} thread(s); medians; the floor is the same "
          f"step's matrix products alone, timed in this run\n")
    for batch, tasks in table.items():
        print("the game, 64 games a step, each played once; frames a second:\n" if batch == GAME
              else f"batch {batch}, images a second:\n")
        print(f"| task | training: floor | training: now | share | evaluation"
              f"{' (greedy play)' if batch == GAME else ' M=10'}: floor | evaluation: now | share |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, f in tasks.items():
            print(f"| {name} | {f['train floor']:,.0f} | {f['train now']:,.0f} | "
                  f"{100 * f['train share']:.0f}% | {f['eval floor']:,.0f} | {f['eval now']:,.0f} | "
                  f"{100 * f['eval share']:.0f}% |")
        print()


def inference_speed(args, threads):
    """Images/s of test-time prediction (M=10) on 28x28 and 60x60: dygraph evaluation,
    and the exported graph through Paddle Inference with oneDNN off and on."""
    from export_model import save_inference_model
    from infer import make_predictor, predict
    result, rates = {}, {}
    tasks = [("28x28", []), ("60x60", ["--dataset", "cluttered", "--patch_size", "12",
                                       "--num_patches", "3", "--glimpse_scale", "2",
                                       "--num_glimpses", "8", "--std", "0.1"])]
    digits = read_digits(args.data_dir, "test")[0]
    for name, options in tasks:
        config = get_config(options + ["--use_gpu=False"])
        count = config.batch_size * args.eval_batches
        if config.dataset == "mnist":
            images = load_mnist(args.data_dir, "test")[0][:count]
        else:
            canvases, _ = make_canvases(digits[:count], 60, 4, 8, np.random.default_rng(0))
            images = (canvases[:, None] / np.float32(255)).astype("float32")
        batches = as_batches(images, np.zeros(count, np.int64), config.batch_size)
        with paddle.utils.unique_name.guard():
            model = build_model(ModelConfig.from_options(config))
        with tempfile.TemporaryDirectory() as folder:
            config.retina_method = "paddle"  # what the graph holds; the same weights
            with paddle.utils.unique_name.guard():
                save_inference_model(build_model(ModelConfig.from_options(config)), config, folder, config.M)
            predictors = {onednn: make_predictor(folder, threads, onednn, use_gpu=False)
                          for onednn in (False, True)}
        runs = {"dygraph": lambda: evaluate(model, batches, config.M)}
        for onednn, predictor in predictors.items():
            runs[f"inference, oneDNN {'on' if onednn else 'off'}"] = (
                lambda p=predictor: [predict(p, x.numpy()) for x, _ in batches])
        times = {way: [] for way in runs}
        for run in runs.values():
            run()  # warm-up
        for _ in range(args.repeats):  # taking turns
            for way, run in runs.items():
                settle()
                times[way].append(time_runs(run, 1, warmup=0, clock=time.process_time)[0])
        for way, seconds in times.items():
            rates[f"{way} {name}"] = spread([count / t for t in seconds])
        dygraph = rates[f"dygraph {name}"]["median"]
        result[name] = {way: round(rates[f"{way} {name}"]["median"]) for way in runs}
        result[name]["ratios_to_dygraph"] = {
            way: round(rates[f"{way} {name}"]["median"] / dygraph, 2) for way in runs if way != "dygraph"}
    return result, rates


def main(argv=None):
    global SETTLE_SECONDS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare-torch", action="store_true",
                        help="also time the PyTorch reference (needs torch), alternating runs")
    parser.add_argument("--json", action="store_true", help="print one JSON line, no table")
    parser.add_argument("--profile", action="store_true",
                        help="also split one training step into its parts")
    parser.add_argument("--operators", choices=[name for name, *_ in RETINAS],
                        help="print Paddle's profile of 20 training steps of this task, by "
                             "operator, and nothing else")
    parser.add_argument("--inference", action="store_true",
                        help="time test-time prediction instead: dygraph against the exported "
                             "model in Paddle Inference")
    parser.add_argument("--catch", action="store_true",
                        help="the game's training frames a second (configs/catch.toml)")
    parser.add_argument("--floor", action="store_true",
                        help="each task's training and evaluation beside its floor: the same "
                             "step's matrix products alone")
    parser.add_argument("--floor_batches", type=int, nargs="+", default=[128, 20],
                        help="the batches of --floor's tables")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each measurement")
    parser.add_argument("--train_steps", type=int, default=15, help="training steps per run")
    parser.add_argument("--eval_batches", type=int, default=3, help="evaluation batches per run")
    parser.add_argument("--retina_calls", type=int, default=20, help="foveate() calls per run")
    parser.add_argument("--num_threads", type=int, default=0,
                        help="Paddle's CPU threads, as main.py's option (0: every usable core)")
    parser.add_argument("--data_dir", default="data/MNIST")
    parser.add_argument("--settle", type=float, default=SETTLE_SECONDS,
                        help="seconds to wait before each timed run, for the threads of what ran "
                             "before to go idle (the tests, which time nothing, give 0)")
    args = parser.parse_args(argv)
    SETTLE_SECONDS = args.settle

    config = get_config([])
    paddle.set_device("gpu" if config.use_gpu else "cpu")
    threads = args.num_threads or usable_cores()
    if not config.use_gpu:
        paddle.base.core.set_num_threads(threads)
    paddle.seed(config.random_seed)
    try:
        images, labels = load_mnist(args.data_dir, "train")
    except DataError as err:
        sys.exit(f"[!] {err}")
    if args.operators:
        if args.operators == "28x28":
            trainer = Trainer(config)
            batches = as_batches(images[:20 * config.batch_size], labels[:20 * config.batch_size],
                                 config.batch_size)
        else:
            trainer, batches = canvas_setup(
                *[task for task in CANVAS_TASKS if task[0] == args.operators][0][1:],
                20, read_digits(args.data_dir, "train")[0])
        print(f"Paddle's profiler over 20 training steps of {args.operators}, {threads} "
              f"thread(s), by operator:")
        operator_profile(trainer, batches, 20)
        return
    if args.floor:
        table = floor_table(args, images, labels, read_digits(args.data_dir, "train")[0])
        if args.json:
            print(json.dumps({batch: {task: {k: round(v, 3) for k, v in f.items()}
                                      for task, f in tasks.items()} for batch, tasks in table.items()}))
        else:
            print_floor(table, threads)
        return
    if args.catch:
        rates = catch_speed(args)
        if args.json:
            print(json.dumps({name: round(rate["median"]) for name, rate in rates.items()}))
        else:
            print(f"paddle {paddle.__version__}, {threads} threads; {args.train_steps} training "
                  f"steps a run, {args.repeats} runs after a warm-up\n")
            print_rows(list(rates.items()))
        return
    if args.inference:
        result, rates = inference_speed(args, threads)
        result["setup"] = {"paddle": paddle.__version__, "threads": threads, "M": config.M,
                           "batch_size": config.batch_size, "images": args.eval_batches
                           * config.batch_size, "repeats": args.repeats}
        if args.json:
            print(json.dumps(result))
            return
        setup = result["setup"]
        print(f"paddle {setup['paddle']}, {threads} threads; test-time prediction with "
              f"M={setup['M']}, {setup['images']} images in batches of {setup['batch_size']}; "
              f"{setup['repeats']} turns each, after a warm-up; per second of CPU time\n")
        print_rows([(f"{key} (images/s)", value) for key, value in rates.items()])
        for name in ("28x28", "60x60"):
            for way, ratio in result[name]["ratios_to_dygraph"].items():
                print(f"{name}: {way} / dygraph (medians): {ratio:.2f}")
        return
    count = config.batch_size * max(args.train_steps, args.eval_batches)
    images, labels = images[:count], labels[:count]
    batches = as_batches(images, labels, config.batch_size)
    with paddle.utils.unique_name.guard():
        trainer = Trainer(config)

    def paddle_train():
        train_steps(trainer, batches, args.train_steps)

    def paddle_eval():
        evaluate(trainer.model, batches[:args.eval_batches], config.M)

    torch_worker = None
    with tempfile.TemporaryDirectory() as folder:
        if args.compare_torch:
            path = os.path.join(folder, "batches.npz")
            np.savez(path, images=images, labels=labels, batch_size=config.batch_size)
            torch_worker = TorchWorker(path)
        try:
            methods = ["loop", "numpy", "paddle"]
            retina = retina_ms(methods, args.repeats, args.retina_calls, config.batch_size,
                               torch_worker)
            train, torch_train, evals, torch_evals = [], [], [], []
            paddle_train()  # warm-up
            if torch_worker:
                torch_worker.seconds("train", steps=args.train_steps)
            for _ in range(args.repeats):
                train.append(time_runs(paddle_train, 1, warmup=0)[0])
                if torch_worker:
                    torch_train.append(torch_worker.seconds("train", steps=args.train_steps))
            paddle_eval()
            if torch_worker:
                torch_worker.seconds("eval", count=args.eval_batches, M=config.M)
            for _ in range(args.repeats):
                evals.append(time_runs(paddle_eval, 1, warmup=0)[0])
                if torch_worker:
                    torch_evals.append(torch_worker.seconds("eval", count=args.eval_batches,
                                                            M=config.M))
        finally:
            if torch_worker:
                torch_worker.close()

    samples = args.train_steps * config.batch_size
    eval_images = args.eval_batches * config.batch_size
    rates = {"train": spread([samples / t for t in train]),
             "eval": spread([eval_images / t for t in evals])}
    result = {"train_samples_per_s": round(rates["train"]["median"]),
              "eval_samples_per_s": round(rates["eval"]["median"]),
              "retina_ms": {method: {name: round(s["median"], 4) for name, s in by_name.items()}
                            for method, by_name in retina.items()}}
    if torch_worker:
        rates["torch_train"] = spread([samples / t for t in torch_train])
        rates["torch_eval"] = spread([eval_images / t for t in torch_evals])
        result.update({
            "torch_train_samples_per_s": round(rates["torch_train"]["median"]),
            "torch_eval_samples_per_s": round(rates["torch_eval"]["median"]),
            "train_ratio": round(rates["train"]["median"] / rates["torch_train"]["median"], 2),
            "eval_ratio": round(rates["eval"]["median"] / rates["torch_eval"]["median"], 2)})
    setup = {"paddle": paddle.__version__, "device": paddle.device.get_device(),
             "paddle_threads": threads,
             "MKL_DEBUG_CPU_TYPE": os.environ.get("MKL_DEBUG_CPU_TYPE", ""),
             "batch_size": config.batch_size, "num_glimpses": config.num_glimpses,
             "patch_size": config.patch_size, "M": config.M, "repeats": args.repeats}
    if torch_worker:
        setup.update(torch=torch_worker.info["torch"], torch_threads=torch_worker.info["threads"])
    result["setup"] = setup
    if args.profile:
        result["step_ms"] = {part: round(ms, 3) for part, ms in
                             profile_step(trainer, batches, args.train_steps * 2).items()}
    digits = read_digits(args.data_dir, "train")[0]
    result["canvas"] = {}
    for name, side, distractors, scales in CANVAS_TASKS:
        result["canvas"][name], task_rates = canvas_task(name, side, distractors, scales, args,
                                                         digits)
        rates.update(task_rates)

    if args.json:
        print(json.dumps(result))
    else:
        print_table(result, rates, retina)
        if args.profile:
            print("\nPaddle's profiler over 20 training steps, by operator:")
            operator_profile(trainer, batches, 20)


def operator_profile(trainer, batches, steps):
    """Print paddle.profiler's table of where `steps` training steps spend their time."""
    import paddle.profiler as profiler

    prof = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU], scheduler=(1, steps + 1),
                             on_trace_ready=lambda prof: None)  # no trace file
    trainer.model.train()  # as main.py trains (the batched path: model.Glimpses)
    prof.start()
    for i in range(steps + 1):
        trainer.train_step(*batches[i % len(batches)])
        prof.step()
    prof.stop()
    prof.summary(sorted_by=profiler.SortedKeys.CPUTotal, op_detail=False, thread_sep=False,
                 time_unit="ms")


def print_rows(rows):
    """A Markdown table of (measure, min / median / max) rows."""
    width = max(len(name) for name, _ in rows)
    print(f"| {'measure':<{width}} | {'min':>9} | {'median':>9} | {'max':>9} |")
    print(f"|{'-' * (width + 2)}|{'-' * 11}|{'-' * 11}|{'-' * 11}|")
    for name, s in rows:
        digits = 3 if "ms" in name else 0
        print(f"| {name:<{width}} | " + " | ".join(f"{s[k]:>9.{digits}f}" for k in
                                                    ("min", "median", "max")) + " |")


def print_table(result, rates, retina):
    setup = result["setup"]
    line = (f"paddle {setup['paddle']} on {setup['device']}, {setup['paddle_threads']} threads, "
            f"MKL_DEBUG_CPU_TYPE={setup['MKL_DEBUG_CPU_TYPE'] or 'unset'}")
    if "torch" in setup:
        line += f"; torch {setup['torch']}, {setup['torch_threads']} threads"
    print(line)
    print(f"batch {setup['batch_size']}, {setup['num_glimpses']} glimpses of "
          f"{setup['patch_size']}x{setup['patch_size']}, M={setup['M']}; "
          f"{setup['repeats']} timed runs each, after a warm-up\n")
    rows = [(f"retina {name}, {method} (ms per batch)", by_name[name])
            for name, *_ in RETINAS for method, by_name in retina.items()]
    labels = {"train": "train step, paddle (samples/s)", "torch_train": "train step, torch (samples/s)",
              "eval": "evaluate M=10, paddle (images/s)", "torch_eval": "evaluate M=10, torch (images/s)"}
    for name, *_ in CANVAS_TASKS:
        labels[f"train {name}"] = f"train step {name}, paddle (samples/s)"
        labels[f"eval {name}"] = f"evaluate M=10 {name}, paddle (images/s)"
    rows += [(labels[key], rates[key]) for key in labels if key in rates]
    print_rows(rows)
    if "train_ratio" in result:
        print(f"\ntrain ratio (paddle / torch, medians): {result['train_ratio']:.2f}")
        print(f"eval ratio  (paddle / torch, medians): {result['eval_ratio']:.2f}")
    steps = [("28x28", result)] + [(f"{name} canvas", task)
                                   for name, task in result["canvas"].items()]
    for name, task in steps:
        if "step_ms" in task:
            total = sum(task["step_ms"].values())
            print(f"\none training step, {name}: {total:.2f} ms")
            for part, ms in task["step_ms"].items():
                print(f"  {part:<15} {ms:7.2f} ms  {100 * ms / total:5.1f}%")


if __name__ == "__main__":
    main()
