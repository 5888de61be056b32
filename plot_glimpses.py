"""See what the agent looked at.

    python plot_glimpses.py --plot_dir plots/ram_6_8x8_1/            # the latest epoch's GIF
    python plot_glimpses.py --plot_dir plots/ram_6_8x8_1/ --epoch 30 --fps 2 --out glimpses.gif
    python plot_glimpses.py --plot_dir results/mnist/ram_6_8x8_1 --figures \\
        --log results/mnist/ram_6_8x8_1/train.log                    # a published model

The GIF has one frame per glimpse: every image of the saved validation batch with
its current glimpse as k nested boxes (one per patch, clipped at the border), the
earlier fixations as a fading path, and the predicted and true labels on the last
frame. The boxes come from the Retina itself (Retina.patch_boxes), so they sit on
the pixels the network was given. It is written to
<out_dir>/<name>/glimpses_epoch<N>.gif, <name> being the last folder of --plot_dir:
beside main.py's .npz files for a run's own plot_dir, and never into results/.

--figures also writes <out_dir>/bbox.png (an MNIST digit with the k nested boxes of a
multi-scale glimpse), <out_dir>/glimpses.png (those k patches as the network sees them,
each pooled to g x g by the Retina) and <out_dir>/<name>_curves.png (training and
validation loss and error per epoch, from --log).
"""
import io
import os
import re
import sys
import zipfile

from utils import before_paddle

before_paddle()

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt
import numpy as np
import paddle
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from PIL import Image

from config import OneLineParser, writes_into_results
from data_loader import MNIST_MEAN, MNIST_STD, DataError, load_mnist
from retina import Retina, pixel_centres

BOX_COLOURS = ["#ff3b30", "#ffcc00", "#34c759", "#0a84ff"]  # the smallest patch first
GLIMPSE_KEYS = ("images", "labels", "locations", "predicted")  # what main.py saves and we draw
GAME_KEYS = ("frames", "locations", "rewards")  # a game's (--dataset catch)


class PlotError(Exception):
    """Missing or unusable input; the message is one line that names what exists."""


def saved_epochs(plot_dir):
    if not os.path.isdir(plot_dir):
        parent = os.path.dirname(os.path.normpath(plot_dir)) or "."
        there = sorted(os.listdir(parent)) if os.path.isdir(parent) else []
        raise PlotError(f"no plot directory {plot_dir} ({parent} holds {', '.join(there) or 'nothing'}"
                        f"); main.py saves glimpses under <plot_dir>/<run name>/")
    epochs = sorted(int(m.group(1)) for path in os.listdir(plot_dir)
                    if (m := re.fullmatch(r"glimpses_epoch(\d+)\.npz", path)))
    if not epochs:
        there = sorted(name for name in os.listdir(plot_dir) if not name.startswith("."))
        raise PlotError(f"{plot_dir} holds no glimpses_epoch<N>.npz (it holds "
                        f"{there[:5] or 'nothing'})")
    return epochs


def load_glimpses(plot_dir, epoch=None):
    """The saved batch of one epoch (the latest if None) as a dict of arrays."""
    epochs = saved_epochs(plot_dir)
    epoch = epochs[-1] if epoch is None else epoch
    if epoch not in epochs:
        raise PlotError(f"epoch {epoch} was not saved in {plot_dir}; saved epochs: "
                        f"{', '.join(map(str, epochs))}")
    path = os.path.join(plot_dir, f"glimpses_epoch{epoch}.npz")
    try:
        with np.load(path, allow_pickle=False) as data:
            saved = dict(data)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # truncated, empty, garbage
        raise PlotError(f"{path} is damaged ({type(err).__name__}); choose another --epoch "
                        f"(saved: {', '.join(map(str, epochs))})") from None
    keys = GAME_KEYS if "frames" in saved else GLIMPSE_KEYS
    missing = [key for key in keys if key not in saved]
    if missing:
        raise PlotError(f"{path} is not a glimpse file of main.py (it lacks {', '.join(missing)})")
    saved["epoch"] = epoch
    return saved


def retina_of(saved, args):
    """The Retina the glimpses were taken with: the options saved with them (older
    files lack them: then --patch_size, --num_patches and --glimpse_scale, which
    default to main.py's)."""
    options = {}
    for name, default in [("patch_size", 8), ("num_patches", 1), ("glimpse_scale", 1)]:
        given = getattr(args, name)
        if name in saved:
            if given is not None and given != int(saved[name]):
                raise PlotError(f"--{name} {given}, but the glimpses were saved with {int(saved[name])}")
            options[name] = int(saved[name])
        else:
            options[name] = default if given is None else given
    return Retina(options["patch_size"], options["num_patches"], options["glimpse_scale"])


def draw_boxes(ax, boxes, alpha=1.0):
    """k nested boxes (k, 4) of top, left, bottom, right in pixels. A pixel (r, c) of
    imshow covers [c - 0.5, c + 0.5] x [r - 0.5, r + 0.5]."""
    patches = []
    for i, (top, left, bottom, right) in enumerate(boxes):
        patches.append(ax.add_patch(Rectangle(
            (left - 0.5, top - 0.5), right - left, bottom - top, fill=False, linewidth=1.5,
            edgecolor=BOX_COLOURS[i % len(BOX_COLOURS)], alpha=alpha)))
    return patches


def glimpse_gif(saved, retina, out, fps, title=None):
    """One frame per glimpse step, every saved image in a grid. Returns the frame count.
    saved: images (n, C, H, W), locations (n, T, 2), predicted (n,) as class names or
    numbers, labels (n,) if known; title: above the grid (default: the epoch)."""
    game = "frames" in saved  # a game's: a screen per frame, not one image per glimpse path
    images = saved["frames"][:, :, 0] if game else saved["images"].transpose(0, 2, 3, 1)
    images = images[..., 0] if not game and images.shape[-1] == 1 else images
    # 28x28 MNIST is standardised, canvases are not; files from before the flag are MNIST.
    if not game and ("standardised" not in saved or saved["standardised"]):
        images = images * MNIST_STD + MNIST_MEAN  # back to [0, 1] for display
    n, steps = len(images), saved["locations"].shape[1]
    H, W = images.shape[-2:] if game else images.shape[1:3]
    boxes = np.stack([retina.patch_boxes(saved["locations"][:, t], H, W) for t in range(steps)],
                     axis=1)  # (n, T, k, 4)
    rows, cols = (a.reshape(n, steps) for a in pixel_centres(saved["locations"].reshape(-1, 2), H, W))
    side = int(np.ceil(np.sqrt(n)))
    height = 2.3 * side + 0.3  # the title's own strip on top, clear of the first image's
    fig, axes = plt.subplots(side, side, figsize=(2.2 * side, height), squeeze=False)
    fig.subplots_adjust(top=1 - 0.55 / height, bottom=0.02, left=0.02, right=0.98)
    for ax in axes.flat:
        ax.axis("off")
    artists, frames = [], []
    for t in range(steps):
        for artist in artists:
            artist.remove()
        artists.clear()
        for i, ax in enumerate(axes.flat[:n]):
            if game:
                artists.append(ax.imshow(images[i, t], cmap="gray", vmin=0, vmax=1))
            elif t == 0:
                ax.imshow(images[i], cmap="gray", vmin=0, vmax=1)
            # Earlier fixations fade with age; the current one is a dot.
            for s in range(t):
                artists.extend(ax.plot(cols[i, s:s + 2], rows[i, s:s + 2], color="#0a84ff",
                                       alpha=0.25 + 0.5 * (s + 1) / steps, linewidth=1.2))
            artists.extend(ax.plot(cols[i, t], rows[i, t], "o", color="#0a84ff", markersize=3))
            artists.extend(draw_boxes(ax, boxes[i, t]))
            last = t == steps - 1
            if game:
                caught = saved["rewards"][i] > 0
                answer, colour = ("caught" if caught else "missed"), ("green" if caught else "red")
            elif "labels" in saved:
                right = saved["predicted"][i] == saved["labels"][i]
                answer = f"pred {saved['predicted'][i]} / true {saved['labels'][i]}"
                colour = "green" if right else "red"
            else:  # an image of one's own: no label
                answer, colour = f"class {saved['predicted'][i]}", "black"
            ax.set_title(answer if last else f"{'frame' if game else 'glimpse'} {t + 1} of {steps}",
                         fontsize=9,
                         color=colour if last else "black")
        fig.suptitle(title or f"epoch {saved['epoch']}", fontsize=10)
        fig.canvas.draw()
        frames.append(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3]))
    # One palette of 32 colours, taken from all frames: half the bytes of a palette per
    # frame, the same look (gray images, four box colours, the path), and GIF then stores
    # what a frame changes.
    palette = Image.fromarray(np.concatenate([np.asarray(f) for f in frames])).quantize(32)
    frames = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    frames[0].save(out, format="gif", save_all=True, append_images=frames[1:], loop=0,
                   duration=round(1000 / fps), optimize=True)
    plt.close(fig)
    return steps


def figures(retina, location, data_dir, out_dir):
    """bbox.png and glimpses.png: the first MNIST test digit seen by `retina` at `location`."""
    images, labels = load_mnist(data_dir, "test")
    image = images[:1]
    l = np.array([location], np.float32)
    H, W = image.shape[2:]
    fig, ax = plt.subplots(figsize=(3.2, 3.4))
    ax.imshow(image[0, 0] * MNIST_STD + MNIST_MEAN, cmap="gray", vmin=0, vmax=1)
    draw_boxes(ax, retina.patch_boxes(l, H, W)[0])
    ax.set_title(f"{retina.num_patches} patches of {', '.join(map(str, retina.sizes))} px "
                 f"at l = ({location[0]:g}, {location[1]:g}), clipped at the border", fontsize=8)
    ax.axis("off")
    bbox = os.path.join(out_dir, "bbox.png")
    fig.savefig(bbox, dpi=150, bbox_inches="tight")
    plt.close(fig)

    g, k = retina.patch_size, retina.num_patches
    phi = retina.foveate(paddle.to_tensor(image), paddle.to_tensor(l)).numpy().reshape(k, g, g)
    fig, axes = plt.subplots(1, k, figsize=(2.2 * k, 2.7), squeeze=False)
    fig.suptitle("what the network sees; outside the image the retina reads zeros of the "
                 "normalised image, shown grey", fontsize=8)
    for i, ax in enumerate(axes[0]):
        ax.imshow(phi[i] * MNIST_STD + MNIST_MEAN, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{retina.sizes[i]}x{retina.sizes[i]} -> {g}x{g}", fontsize=9,
                     color=BOX_COLOURS[i % len(BOX_COLOURS)])
        ax.axis("off")
    glimpses = os.path.join(out_dir, "glimpses.png")
    fig.savefig(glimpses, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return bbox, glimpses


def read_log(path):
    """Per epoch (the last line of each, if a resumed run repeated one): train and
    valid loss and error (%), and the validation-selected model's test error (%)
    where --test_freq measured it (NaN elsewhere)."""
    if not os.path.isfile(path):
        raise PlotError(f"no training log at {path}: pass --log, or train first")
    epochs, damaged = {}, 0
    with open(path) as f:
        for line in f:
            if line.startswith("epoch "):
                fields = line.split()
                values = dict(zip(fields[0::2], fields[1::2]))
                try:
                    epochs[int(values["epoch"])] = (float(values["train_loss"]),
                                                    float(values["valid_loss"]),
                                                    100 - float(values["train_acc"]),
                                                    float(values["valid_err"]),
                                                    float(values.get("selected_test_err", "nan")))
                except (KeyError, ValueError):  # cut short by a full disk in an older run
                    damaged += 1
    if damaged:
        print(f"[!] {path}: left out {damaged} damaged epoch lines")
    if not epochs:
        raise PlotError(f"{path} has no epoch lines yet")
    numbers = sorted(epochs)
    return numbers, np.array([epochs[e] for e in numbers])


def curves(log_path, out):
    """Draws a training log (main.py's) as the PNG `out`: loss, and training and validation
    error per epoch, with the selected checkpoint's test error where the log has it."""
    numbers, values = read_log(log_path)
    fig, (loss_ax, error_ax) = plt.subplots(1, 2, figsize=(9, 3.4))
    for column, ax, label in [(0, loss_ax, "train"), (1, loss_ax, "validation"),
                              (2, error_ax, "train"), (3, error_ax, "validation")]:
        ax.plot(numbers, values[:, column], marker="." if len(numbers) < 40 else None, label=label)
    tested = ~np.isnan(values[:, 4])
    title = f"error (validation: M repeats); best {values[:, 3].min():.2f}%"
    if tested.any():  # --test_freq: the test error of the validation-selected model
        error_ax.plot(np.array(numbers)[tested], values[tested, 4], "o", markersize=3,
                      label="test, best-validation model")
        title = f"error; test (best-validation model) {values[tested, 4][-1]:.2f}%"
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss (NLL + MSE + 0.01 REINFORCE)")
    error_ax.set(xlabel="epoch", ylabel="error (%)", yscale="log", title=title)
    error_ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    error_ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    error_ax.yaxis.set_minor_formatter(NullFormatter())
    for ax in (loss_ax, error_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return save_png(fig, out, dpi=150)


def save_png(fig, out, dpi):
    """Save a figure of a few curves as the PNG `out` and close it. 16 colours, undithered,
    take a quarter of full colour's bytes and look the same (curves, a grid, text)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    plt.close(fig)
    Image.open(buffer).convert("RGB").quantize(16, dither=Image.Dither.NONE).save(
        out, format="png", optimize=True)
    return out


def catch_curves(log_paths, out):
    """Draws the game's learning curves as the PNG `out`: the validation catch rate of each
    training log (main.py's, one a seed) against the millions of frames trained on, an
    epoch being a million frames."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for path in log_paths:
        numbers, values = read_log(path)
        ax.plot(numbers, 100 - values[:, 3], marker=".", label=path)
    ax.axhline(85, color="grey", linestyle="--", label="the paper: about 85%")
    ax.set(xlabel="frames trained on (millions)", ylabel="catch rate (%)", ylim=(0, 100),
           title="validation catch rate (1,000 games)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_png(fig, out, dpi=120)


def tracking(result_path, out):
    """<out>: the share of test frames whose sharpest patch held the ball, by the ball's
    row, from a game's test.json (main.py --is_train=False: fovea_on_ball_by_row)."""
    import json

    with open(result_path) as f:
        result = json.load(f)
    shares = 100 * np.array(result["fovea_on_ball_by_row"])
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(np.arange(len(shares)), shares, color="#0a84ff")
    ax.set_xlabel("the ball's row (0: the top; the paddle's row is below the last)")
    ax.set_ylabel("frames with the ball in the fovea (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"Where the agent looks: {result['total']:,} test games, "
                 f"{result['catch_rate']:.1f}% caught", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv=None):
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plot_dir", required=True,
                        help="the glimpses of one run: <plot_dir>/<run name>/ of main.py")
    parser.add_argument("--epoch", type=int, default=None, help="which epoch (default: the latest)")
    parser.add_argument("--out", default=None,
                        help="the GIF (default: <out_dir>/<name>/glimpses_epoch<N>.gif)")
    parser.add_argument("--fps", type=float, default=1.5, help="frames (glimpse steps) per second")
    parser.add_argument("--figures", action="store_true",
                        help="also write bbox.png, glimpses.png and <name>_curves.png")
    parser.add_argument("--out_dir", default="plots", help="where the drawings go")
    parser.add_argument("--log", default=None,
                        help="the training log of --figures' curves (default: the run's, "
                             "<plot_dir>/train.log)")
    parser.add_argument("--result", default=None,
                        help="a game's test result for --figures' tracking figure (default: "
                             "the run's, <plot_dir>/test.json)")
    parser.add_argument("--catch_curves", nargs="*", default=None, metavar="LOG",
                        help="draw only the game's learning curves, <out_dir>/<name>_curves.png: "
                             "the run's train.log and these other seeds' logs")
    parser.add_argument("--data_dir", default="data/MNIST", help="MNIST, for bbox.png")
    parser.add_argument("--location", type=float, nargs=2, default=[0.1, -0.15],
                        metavar=("X", "Y"), help="the glimpse of bbox.png, in [-1, 1]^2")
    for name in ["patch_size", "num_patches", "glimpse_scale"]:
        parser.add_argument(f"--{name}", type=int, default=None,
                            help="the retina, if the saved glimpses do not say (main.py's "
                                 "default); for --figures' bbox.png, default 8, 3, 2")
    args = parser.parse_args(argv)
    if not args.fps > 0:
        parser.error(f"--fps must be positive, got {args.fps}")
    for option, path in (("--out", args.out), ("--out_dir", args.out_dir)):
        if path and (refusal := writes_into_results(option, path)):
            sys.exit(f"[!] {refusal}")
    name = os.path.basename(os.path.normpath(args.plot_dir))
    try:
        if args.catch_curves is not None:
            os.makedirs(args.out_dir, exist_ok=True)
            path = catch_curves([os.path.join(args.plot_dir, "train.log")] + args.catch_curves,
                                os.path.join(args.out_dir, f"{name}_curves.png"))
            print(f"[*] {path}")
            return
        saved = load_glimpses(args.plot_dir, args.epoch)
        retina = retina_of(saved, args)
        out = args.out or os.path.join(args.out_dir, name, f"glimpses_epoch{saved['epoch']}.gif")
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        frames = glimpse_gif(saved, retina, out, args.fps)
        what = "frames of games" if "frames" in saved else "glimpses) of images"
        print(f"[*] {out}: {frames} frames ({what.split(')')[0]}) of "
              f"{len(saved['locations'])} {what.split(' of ')[-1]}, epoch {saved['epoch']}")
        result = args.result or os.path.join(args.plot_dir, "test.json")
        if args.figures and "frames" in saved and os.path.exists(result):
            path = tracking(result, os.path.join(args.out_dir, f"{name}_tracking.png"))
            print(f"[*] {path}")
        elif args.figures:
            figure_retina = Retina(args.patch_size or 8, args.num_patches or 3,
                                   args.glimpse_scale or 2)
            for path in figures(figure_retina, args.location, args.data_dir, args.out_dir):
                print(f"[*] {path}")
            path = curves(args.log or os.path.join(args.plot_dir, "train.log"),
                          os.path.join(args.out_dir, f"{name}_curves.png"))
            print(f"[*] {path}")
    except (PlotError, DataError) as err:
        sys.exit(f"[!] {err}")
    except OSError as err:  # --out or --out_dir that cannot be written
        sys.exit(f"[!] cannot write {err.filename or args.out or args.out_dir} ({err.strerror})")


if __name__ == "__main__":
    main()
