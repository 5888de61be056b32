"""PyTorch <-> Paddle for RAM: convert the PyTorch reference's checkpoints both
ways, and check that the two frameworks compute the same model.

    python align.py --torch_ckpt ram_6_8x8_1_model_best.pth.tar
        -> ckpt/ram_6_8x8_1/best.pdparams, which `python main.py --is_train=False` tests
    python align.py --to_torch ckpt/ram_6_8x8_1/best.pdparams --out ram_6_8x8_1_model_best.pth.tar
        -> the reference's checkpoint dict: epoch, model_state, optim_state, best_valid_acc
    python align.py --to_torch results/mnist/ram_6_8x8_1/model.pdparams --out ram_6.pth.tar
        -> the same of a published row (float16 weights, no Adam state: a fresh Adam's)
    python align.py --check
        -> logs/align/report.txt; exits with 1 if any comparison fails

A reference checkpoint (kevinzakka/recurrent-visual-attention) is a torch.save'd
dict. Its model_state uses the names of our parameters (sensor.fc1 ... baseliner.fc);
a PyTorch Linear weight is [out, in] and Paddle's is [in, out], so every weight is
transposed, biases are copied. The layer widths (glimpse_hidden, loc_hidden,
hidden_size, the classes) are read from the shapes; what shapes cannot tell
(patch_size, num_patches, glimpse_scale, num_glimpses, std) comes from the options,
the reference's defaults unless given, and must agree with sensor.fc1's input width.
Adam's moments are converted too, so that --resume continues a converted run.

The check builds the reference's model in PyTorch (torch_ram.py, our
mirror of its code) and ours from the same weights, feeds both the same images,
the same l_0 and the same Gaussian draws of the policy, and compares, one line per
tensor: every glimpse's h_t, mu_t, l_t, b_t and log_pi_t, the log-probabilities,
each loss term, the gradient of every parameter, every weight after 3 Adam steps
and the accuracy. torch is needed here only (pip install torch==2.13.0).
"""
import argparse
import math
import os
import sys

from utils import before_paddle

before_paddle()
import numpy as np
import paddle

import checkpoint
from config import OneLineParser, get_config, model_name, writes_into_results
from data_loader import DataError, load_mnist
from model import ModelConfig, build_model, ram_loss

HERE = os.path.dirname(os.path.abspath(__file__))
BETA1, BETA2 = 0.9, 0.999  # Adam's defaults, in the reference and in trainer.py's
# Options that shapes cannot tell, and the widths that shapes do tell (name: how).
OPTIONS = ["patch_size", "num_patches", "glimpse_scale", "num_glimpses", "std"]
WIDTHS = {"glimpse_hidden": ("sensor.fc1.weight", 0), "loc_hidden": ("sensor.fc2.weight", 0),
          "hidden_size": ("rnn.h2h.weight", 0), "num_classes": ("classifier.fc.weight", 0)}
FORWARD_TOLERANCE, GRADIENT_TOLERANCE = 1e-6, 1e-5  # mean absolute differences


class AlignError(Exception):
    """A file or an option that cannot be converted; the message is one line."""


def import_torch():
    try:
        import torch
    except ImportError:
        raise AlignError("align.py needs PyTorch: pip install torch==2.13.0") from None
    return torch


def torch_mirror():
    """torch_ram.py, our PyTorch copy of the reference's model."""
    import torch_ram

    return torch_ram


def mirror_for(config):
    """The PyTorch mirror of the model `config` describes (MNIST: 1 channel, 10 classes)."""
    if (config.model, config.core, config.random_glimpses, config.channels) != ("ram", "rnn", False, 1):
        raise AlignError("the PyTorch reference has the paper's RAM alone: a rectifier core, "
                         "its policy, one channel (not --model fc/conv, --core lstm, "
                         "--random_glimpses or --channels 3)")
    return torch_mirror().RecurrentAttention(
        config.patch_size, config.num_patches, config.glimpse_scale, 1, config.glimpse_hidden,
        config.loc_hidden, config.std, config.hidden_size, 10, config.num_glimpses)


# ----------------------------------------------------------------- conversion


def swap_layout(array):
    """A PyTorch Linear weight [out, in] as Paddle's [in, out], or back: a 2-D array
    is transposed (and made contiguous), a bias is kept."""
    array = np.asarray(array)
    return np.ascontiguousarray(array.T) if array.ndim == 2 else array


def load_torch_checkpoint(path):
    torch = import_torch()
    if not os.path.isfile(path):
        raise AlignError(f"no file at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many kinds on a foreign or damaged file
        raise AlignError(f"{path}: not a PyTorch checkpoint, or damaged "
                         f"({type(err).__name__})") from None
    if not isinstance(state, dict) or "model_state" not in state:
        holds = sorted(state)[:6] if isinstance(state, dict) else type(state).__name__
        raise AlignError(f"{path}: not a checkpoint of the PyTorch reference (no model_state; "
                         f"it holds {holds})")
    return state


def config_for(model_state, args):
    """Our config for a reference model_state: widths from its shapes, the rest
    from the options; a disagreement is refused."""
    for name, (key, _) in WIDTHS.items():
        if key not in model_state:
            raise AlignError(f"model_state has no {key}: not the reference's RAM")
    widths = {name: int(model_state[key].shape[axis]) for name, (key, axis) in WIDTHS.items()}
    if widths["num_classes"] != 10:
        raise AlignError(f"classifier.fc has {widths['num_classes']} classes; main.py knows "
                         f"MNIST's 10")
    for name, width in widths.items():
        given = getattr(args, name, None)
        if given is not None and given != width:
            raise AlignError(f"--{name} {given}, but the checkpoint's shapes say {width}")
    argv = ["--use_gpu=False"]
    for name in ["glimpse_hidden", "loc_hidden", "hidden_size"]:
        argv += [f"--{name}", str(widths[name])]
    for name in OPTIONS + ["random_seed"]:
        if getattr(args, name, None) is not None:
            argv += [f"--{name}", str(getattr(args, name))]
    config = get_config(argv)
    inputs = int(model_state["sensor.fc1.weight"].shape[1])
    expected = config.num_patches * config.patch_size ** 2  # one channel: MNIST
    if inputs != expected:
        raise AlignError(f"sensor.fc1 takes {inputs} inputs, but --num_patches {config.num_patches} "
                         f"--patch_size {config.patch_size} give {expected}: pass the options "
                         f"the checkpoint was trained with")
    return config


def paddle_names(model):
    """Our parameter names (sensor.fc1.weight, ...) -> Paddle's generated ones, which
    key Adam's state. Build the model inside paddle.utils.unique_name.guard(), as main.py does."""
    return {name: param.name for name, param in model.named_parameters()}


def torch_to_paddle(state, config):
    """Our checkpoint dict for a reference checkpoint dict."""
    with paddle.utils.unique_name.guard():
        model = build_model(ModelConfig.from_options(config))
    ours = dict(model.named_parameters())
    theirs = state["model_state"]
    if set(theirs) != set(ours):
        missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
        raise AlignError(f"model_state does not match RAM's parameters: missing {missing}, "
                         f"unexpected {extra}")
    weights = {}
    for name, param in ours.items():
        # float32 whatever the file holds (a float64 model would not load in main.py).
        value = swap_layout(theirs[name].detach().cpu().numpy()).astype(np.float32)
        if list(value.shape) != list(param.shape):
            raise AlignError(f"{name}: shape {list(theirs[name].shape)} does not fit "
                             f"{list(param.shape)} (Paddle's layout)")
        weights[name] = paddle.to_tensor(value)
    try:
        optimizer, lr = adam_to_paddle(state.get("optim_state") or {}, model, config.init_lr)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
        raise AlignError(f"optim_state is not the reference's Adam state of this model "
                         f"({type(err).__name__}: {err})") from None
    best = float(state.get("best_valid_acc", 0.0))
    optimizer["LR_Scheduler"] = {"cooldown_counter": 0, "best": best, "num_bad_epochs": 0,
                                 "last_epoch": int(state.get("epoch", 0)), "last_lr": lr}
    paddle.seed(config.random_seed)
    return {"model": weights, "optimizer": optimizer, "epoch": int(state.get("epoch", 0)),
            "best_valid_acc": best, "counter": 0, "rng_state": paddle.get_rng_state(),
            "config": vars(config)}


def adam_to_paddle(optim_state, model, lr):
    """Paddle's Adam state and learning rate for the reference's torch Adam state_dict
    (none: an empty state and lr)."""
    optimizer = {}
    if optim_state.get("state"):
        lr = float(optim_state["param_groups"][0]["lr"])
        # torch numbers the parameters in model.parameters() order, which is ours.
        for index, (name, generated) in enumerate(paddle_names(model).items()):
            slot = optim_state["state"].get(index)
            if slot is None:  # a parameter Adam has not stepped yet
                continue
            step = int(float(slot["step"]))
            for key, moment in [("moment1", slot["exp_avg"]), ("moment2", slot["exp_avg_sq"])]:
                optimizer[f"{generated}_{key}_0"] = paddle.to_tensor(
                    swap_layout(moment.cpu().numpy()).astype(np.float32))
            # Paddle keeps beta^(step + 1), the power for the next step.
            for key, beta in [("beta1_pow_acc", BETA1), ("beta2_pow_acc", BETA2)]:
                optimizer[f"{generated}_{key}_0"] = paddle.to_tensor(
                    np.array([beta ** (step + 1)], np.float32))
    return optimizer, lr


def load_paddle_checkpoint(path):
    try:
        state = checkpoint.read(path, keys=("model", "config"))
    except checkpoint.CheckpointError as err:
        raise AlignError(str(err)) from None
    if state[checkpoint.UNVOUCHED]:
        raise AlignError(f"{path}: {state[checkpoint.UNVOUCHED]}")
    state.setdefault("optimizer", {})  # a published, weights-only checkpoint has none
    return state


def paddle_to_torch(state):
    """The reference's checkpoint dict for one of ours."""
    torch = import_torch()
    config = argparse.Namespace(**state["config"])
    with paddle.utils.unique_name.guard():
        model = build_model(ModelConfig.from_options(config))
    mirror = mirror_for(config)
    model_state = {}
    for name in mirror.state_dict():
        # float32 whatever was stored: published weights are float16 (checkpoint.weights_only)
        weight = np.asarray(state["model"][name], np.float32)
        model_state[name] = torch.from_numpy(swap_layout(weight))
    mirror.load_state_dict(model_state)
    lr = float(state["optimizer"].get("LR_Scheduler", {}).get("last_lr", config.init_lr))
    optimizer = torch.optim.Adam(mirror.parameters(), lr=lr)
    optim_state = optimizer.state_dict()
    for index, (name, generated) in enumerate(paddle_names(model).items()):
        if f"{generated}_moment1_0" not in state["optimizer"]:
            continue  # no Adam step taken yet
        beta2_pow = float(np.asarray(state["optimizer"][f"{generated}_beta2_pow_acc_0"])[0])
        if beta2_pow <= 0:
            raise AlignError("Adam's step count is lost (beta2^t underflows after ~100,000 steps)")
        slot = {"step": torch.tensor(float(round(math.log(beta2_pow) / math.log(BETA2)) - 1))}
        for key, moment in [("exp_avg", "moment1"), ("exp_avg_sq", "moment2")]:
            slot[key] = torch.from_numpy(swap_layout(state["optimizer"][f"{generated}_{moment}_0"]))
        optim_state["state"][index] = slot
    return {"epoch": state["epoch"], "model_state": model_state, "optim_state": optim_state,
            "best_valid_acc": state["best_valid_acc"]}


# -------------------------------------------------------------------- the check


class Report:
    """One line per compared tensor: name, max and mean absolute difference, verdict."""

    def __init__(self):
        self.lines, self.failures = [], 0

    def compare(self, name, ours, theirs, tolerance):
        ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
        if ours.shape != theirs.shape:
            self.add(name, math.inf, math.inf, tolerance, f"shapes {ours.shape} vs {theirs.shape}")
            return
        diff = np.abs(ours - theirs)
        self.add(name, float(diff.max()), float(diff.mean()), tolerance)

    def add(self, name, max_diff, mean_diff, tolerance, note=""):
        passed = mean_diff <= tolerance
        self.failures += not passed
        self.lines.append(f"{name:<40} max {max_diff:.3e}  mean {mean_diff:.3e}  "
                          f"(<= {tolerance:.0e})  {'pass' if passed else 'FAIL'} {note}".rstrip())


def compare_frameworks(batch_size=32, steps=3, seed=0, sizes=None, data_dir="data/MNIST"):
    """Run both frameworks side by side; returns the Report. sizes: keyword options of
    the model (the defaults if None); images: the first test images of data_dir."""
    torch = import_torch()
    torch_ram = torch_mirror()
    argv = ["--use_gpu=False"] + [f"--{k}={v}" for k, v in (sizes or {}).items()]
    config = get_config(argv)
    T = config.num_glimpses
    torch.manual_seed(seed)
    mirror = mirror_for(config)
    reference = {"epoch": 0, "model_state": mirror.state_dict(), "best_valid_acc": 0.0}
    with paddle.utils.unique_name.guard():
        model = build_model(ModelConfig.from_options(config))
        model.set_state_dict(torch_to_paddle(reference, config)["model"])
    images, labels = load_mnist(data_dir, "test")
    x, y = images[:batch_size], labels[:batch_size]
    rng = np.random.default_rng(seed)
    report = Report()

    # Every glimpse's intermediates, caught as the layers return them (a hook that
    # returns None leaves the output alone).
    caught = {}

    def catch(*names, transform=lambda out: out):
        def hook(layer, inputs, outputs):
            outputs = outputs if len(names) > 1 else (outputs,)
            for name, out in zip(names, outputs):
                caught.setdefault(name, []).append(transform(out))
        return hook

    layers_caught = [(model.rnn, catch("h", "state")),
                     (model.locator.fc_lt, catch("mu", transform=paddle.tanh)),
                     (model.locator, catch("l", "log_pi")), (model.baseliner, catch("b"))]
    optimizer = paddle.optimizer.Adam(config.init_lr, parameters=model.parameters())
    torch_optimizer = torch.optim.Adam(mirror.parameters(), lr=config.init_lr)
    for step in range(steps):
        l_0 = rng.uniform(-1, 1, size=(batch_size, 2)).astype(np.float32)
        noise = rng.standard_normal(size=(batch_size, T, 2)).astype(np.float32)
        record = {}
        if step == 0:  # glimpse by glimpse, as evaluation takes them: the values to compare
            hooks = [layer.register_forward_post_hook(hook) for layer, hook in layers_caught]
            with paddle.no_grad():
                model(paddle.to_tensor(x), paddle.to_tensor(l_0), paddle.to_tensor(noise))
            for hook in hooks:
                hook.remove()
        # Training's forward pass: the same values, its gradients by Glimpses' backward pass.
        outputs = model(paddle.to_tensor(x), paddle.to_tensor(l_0), paddle.to_tensor(noise))
        torch_outputs = mirror.episode(torch.from_numpy(x), torch.from_numpy(l_0),
                                       torch.from_numpy(noise), record)
        loss = ram_loss(*outputs[:3], paddle.to_tensor(y))
        action, baseline, reinforce, _ = torch_ram.loss_terms(*torch_outputs, torch.from_numpy(y))
        torch_total = action + baseline + 0.01 * reinforce
        if step == 0:  # the forward pass and the loss, glimpse by glimpse
            for t in range(T):
                for name in ["h", "mu", "l", "b", "log_pi"]:
                    report.compare(f"forward glimpse {t + 1} {name}_t", caught[name][t].numpy(),
                                   record[name][t].detach().numpy(), FORWARD_TOLERANCE)
            report.compare("forward log_probas", outputs[0].numpy(),
                           torch_outputs[0].detach().numpy(), FORWARD_TOLERANCE)
            for name, ours, theirs in [("action", loss.action, action),
                                       ("baseline", loss.baseline, baseline),
                                       ("reinforce", loss.reinforce, reinforce),
                                       ("total", loss.total, torch_total)]:
                report.compare(f"loss {name}", float(ours), theirs.item(), FORWARD_TOLERANCE)
        else:
            report.compare(f"step {step + 1} loss total", float(loss.total), torch_total.item(),
                           FORWARD_TOLERANCE)
        optimizer.clear_grad()
        loss.total.backward()
        torch_optimizer.zero_grad()
        torch_total.backward()
        if step == 0:
            for name, param in model.named_parameters():
                report.compare(f"gradient {name}", param.grad.numpy(),
                               swap_layout(mirror.get_parameter(name).grad.numpy()),
                               GRADIENT_TOLERANCE)
        optimizer.step()
        torch_optimizer.step()
    for name, param in model.named_parameters():
        report.compare(f"after {steps} Adam steps {name}", param.numpy(),
                       swap_layout(mirror.get_parameter(name).detach().numpy()), GRADIENT_TOLERANCE)
    # The metric: accuracy of the trained weights on the batch, same l_0 and draws.
    l_0 = rng.uniform(-1, 1, size=(batch_size, 2)).astype(np.float32)
    noise = rng.standard_normal(size=(batch_size, T, 2)).astype(np.float32)
    with paddle.no_grad():
        ours = model(paddle.to_tensor(x), paddle.to_tensor(l_0), paddle.to_tensor(noise))[0]
    with torch.no_grad():
        theirs = mirror.episode(*map(torch.from_numpy, (x, l_0, noise)))[0]
    accuracy = [100.0 * float((p.argmax(1) == y).mean()) for p in (ours.numpy(), theirs.numpy())]
    report.compare("metric accuracy (%)", accuracy[0], accuracy[1], 0.0)
    return report


# ------------------------------------------------------------------------ CLI


def refuse_results(out):
    if refusal := writes_into_results("--out", out):
        raise AlignError(refusal)


def main(argv=None):
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--torch_ckpt", help="a reference checkpoint (*.pth.tar) to convert to ours")
    action.add_argument("--to_torch", metavar="PDPARAMS", help="one of our checkpoints to convert")
    action.add_argument("--check", action="store_true", help="compare the two frameworks")
    parser.add_argument("--out", help="where to write the converted checkpoint (default: "
                                      "ckpt/<model_name>/best.pdparams, or the .pdparams "
                                      "path with .pth.tar for --to_torch; never inside results/)")
    parser.add_argument("--report", default="logs/align/report.txt", help="--check's report")
    parser.add_argument("--data_dir", default="data/MNIST")
    parser.add_argument("--random_seed", type=int, default=None,
                        help="seed of the RNG state stored in the converted checkpoint, which "
                             "draws the glimpses of `main.py --is_train=False` (default 1)")
    for name, kind in [("patch_size", int), ("num_patches", int), ("glimpse_scale", int),
                       ("num_glimpses", int), ("std", float), ("glimpse_hidden", int),
                       ("loc_hidden", int), ("hidden_size", int)]:
        parser.add_argument(f"--{name}", type=kind, default=None,
                            help="as in main.py; widths default to the checkpoint's shapes, "
                                 "the rest to main.py's defaults")
    args = parser.parse_args(argv)
    paddle.set_device("cpu")
    try:
        if args.torch_ckpt:
            state = load_torch_checkpoint(args.torch_ckpt)
            config = config_for(state["model_state"], args)
            converted = torch_to_paddle(state, config)
            out = args.out or os.path.join("ckpt", model_name(config), "best.pdparams")
            refuse_results(out)
            if not args.out and os.path.exists(out):
                raise AlignError(f"{out} exists and would be overwritten: pass --out to choose "
                                 f"where the converted checkpoint goes")
            os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
            checkpoint.save(converted, out)
            print(f"[*] {args.torch_ckpt} (epoch {converted['epoch']}, best valid acc "
                  f"{converted['best_valid_acc']:.2f}%) -> {out}")
        elif args.to_torch:
            torch = import_torch()
            state = load_paddle_checkpoint(args.to_torch)
            out = args.out or args.to_torch.removesuffix(".pdparams") + ".pth.tar"
            refuse_results(out)
            os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
            torch.save(paddle_to_torch(state), out)
            print(f"[*] {args.to_torch} -> {out}")
        else:
            names = OPTIONS + ["glimpse_hidden", "loc_hidden", "hidden_size"]
            sizes = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
            report = compare_frameworks(sizes=sizes, data_dir=args.data_dir)
            os.makedirs(os.path.dirname(args.report) or ".", exist_ok=True)
            summary = (f"{len(report.lines) - report.failures} of {len(report.lines)} comparisons "
                       f"pass (forward and loss: mean abs diff <= {FORWARD_TOLERANCE:.0e}; "
                       f"gradients and weights: <= {GRADIENT_TOLERANCE:.0e})")
            with open(args.report, "w") as f:
                f.write(f"# python align.py --check: paddle {paddle.__version__}, torch "
                        f"{import_torch().__version__}\n" + "\n".join(report.lines) +
                        f"\n# {summary}\n")
            print("\n".join(report.lines) + f"\n[*] {summary}; report: {args.report}")
            if report.failures:
                sys.exit(1)
    except (AlignError, DataError) as err:
        sys.exit(f"[!] {err}")
    except OSError as err:  # an --out or --report that cannot be written
        sys.exit(f"[!] cannot write {err.filename or args.out or args.report} ({err.strerror})")


if __name__ == "__main__":
    main()
