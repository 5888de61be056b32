"""Export a checkpoint as a Paddle Inference model whose graph is the whole test-time
episode, so that one call returns each image's class probabilities:

    python export_model.py --checkpoint results/mnist/ram_6_8x8_1/model.pdparams --output exported/ram_6
    python infer.py --model_dir exported/ram_6 --images digits/

The checkpoint carries its options, so its path suffices. --output gets
inference.json and inference.pdiparams (paddle.jit.save, any batch size) and ram.json:
what the images must be prepared as (data_loader.prepare), the class names, and the
outputs. The graph holds the retina (in Paddle ops), the glimpse, core and location
networks, the policy's sampling and the averaging of --M glimpse paths, as
`main.py --is_train=False` computes them; --deterministic starts every episode at the
centre and follows the policy's mean locations instead (one path: the same answer
every call).
"""
import errno
import glob
import hashlib
import json
import os
import sys

from utils import before_paddle

before_paddle(quiet=True, hold_signals=__name__ == "__main__")  # Paddle's notes while tracing

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from checkpoint import TASK_OPTIONS, CheckpointError, model_of
from config import LIMITS, OneLineParser, read_checkpoint, writes_into_results
from model import MODEL_OPTIONS
from utils import atomic_write_text, exit_on_signals, remove_orphans

OUTPUTS = ["log_probas", "probabilities", "locations"]  # the graph's outputs, in order
MODEL_FILES = ("inference.json", "inference.pdiparams")  # paddle.jit.save's graph and weights
# 2: ram.json holds the digests of MODEL_FILES (format 1, without them, is refused).
# 3: and the digest of its own contents (INFO_DIGEST): a flipped option is refused too.
FORMAT = "RAM-Paddle inference model 3"
INFO_DIGEST = "ram_json_sha256"


class Episodes(nn.Layer):
    """M glimpse paths per image from given draws, their class log-probabilities
    averaged as main.py's test averages them.

    Input: images (B, C, H, W), prepared (data_loader.prepare); l_0 (M * B, 2) and
    noise (M * B, T, 2), the start locations and the policy's standard-normal draws,
    row m * B + b of path m of image b (as model(x, repeats=M) takes them).
    Output: log_probas (B, K), the mean over the paths of each class's
    log-probability; probabilities (B, K), their softmax; locations (B, T, 2), the
    glimpses of the first path.
    """

    def __init__(self, model, M):
        super().__init__()
        self.model, self.M = model, M

    def forward(self, images, l_0, noise):
        log_probas, _, _, locations = self.model(images, l_0, noise, repeats=self.M)
        mean = log_probas.reshape([self.M, -1, log_probas.shape[1]]).mean(axis=0)
        first = locations.reshape([self.M, -1, locations.shape[1], 2])[0]
        return mean, F.softmax(mean, axis=1), first


class Predictor(Episodes):
    """Episodes that draws its own start locations (uniform in [-1, 1]^2) and policy
    noise (standard normal), as evaluation does; deterministic: starts at the centre
    and takes the policy's mean at every step. Input: images. Output: as Episodes."""

    def __init__(self, model, M, deterministic=False):
        super().__init__(model, 1 if deterministic else M)
        self.deterministic = deterministic

    def forward(self, images):
        episodes = paddle.shape(images)[0] * self.M
        steps = self.model.num_glimpses
        if self.deterministic:
            l_0, noise = paddle.zeros([episodes, 2]), paddle.zeros([episodes, steps, 2])
        else:
            l_0 = paddle.uniform([episodes, 2], min=-1.0, max=1.0)
            noise = paddle.randn([episodes, steps, 2])
        return super().forward(images, l_0, noise)


def export(checkpoint, output, M=10, deterministic=False, draws_as_inputs=False):
    """Write the inference model of `checkpoint` into the folder `output` (see
    save_inference_model). Returns ram.json's dict."""
    state = read_checkpoint(checkpoint)
    model, config = model_of(state, checkpoint, retina_method="paddle")
    return save_inference_model(model, config, output, M, deterministic, draws_as_inputs,
                                checkpoint=checkpoint, epoch=state["epoch"])


def save_inference_model(model, config, output, M=10, deterministic=False, draws_as_inputs=False,
                         **about):
    """Trace `model` (its retina method "paddle"), made with main.py's options `config`,
    into output/inference.json and .pdiparams, and write output/ram.json: its options,
    M, the inputs and outputs, and `about`. With draws_as_inputs the graph is Episodes,
    taking l_0 and noise as inputs (to check it against the dygraph model), else
    Predictor. Returns ram.json's dict."""
    model.eval()
    size = config.image_size
    spec = [paddle.static.InputSpec([None, config.channels, size, size], "float32", "images")]
    if draws_as_inputs:
        layer = Episodes(model, M)
        spec += [paddle.static.InputSpec([None, 2], "float32", "l_0"),
                 paddle.static.InputSpec([None, config.num_glimpses, 2], "float32", "noise")]
    else:
        layer = Predictor(model, M, deterministic)
    os.makedirs(output, exist_ok=True)
    # Every file is written in full under a temporary name first (the graph and weights
    # loaded back, as paddle.jit.save truncates them silently on a full disk), then each is
    # renamed into place, ram.json with their digests last: an export cut short keeps the
    # folder's earlier files, or leaves files that fail the digests (infer.py refuses them),
    # never a model that predicts wrong.
    staged = os.path.join(output, f".inference.tmp{os.getpid()}")
    remove_orphans(os.path.join(output, ".inference.tmp*"))  # of an export killed mid-way
    try:
        # Paddle's own writes fail in C++ on a folder it cannot write to (a RuntimeError with
        # a C++ stack): a file of ours first turns that into an OSError, one line.
        open(staged + ".probe", "w").close()
        paddle.jit.save(paddle.jit.to_static(layer, input_spec=spec, full_graph=True), staged,
                        input_spec=spec)
        files = {}
        for name in MODEL_FILES:
            with open(staged + os.path.splitext(name)[1], "rb") as f:
                os.fsync(f.fileno())
            files[name] = file_digest(staged + os.path.splitext(name)[1])
        loads_back(staged)
        info = {"format": FORMAT, **about, "M": layer.M, "deterministic": deterministic,
                "inputs": [s.name for s in spec], "outputs": OUTPUTS, "files": files,
                **{name: getattr(config, name) for name in MODEL_OPTIONS + TASK_OPTIONS}}
        info[INFO_DIGEST] = info_digest(info)
        atomic_write_text(json.dumps(info, indent=2) + "\n", staged + ".ram.json")
        for name in MODEL_FILES:
            os.replace(staged + os.path.splitext(name)[1], os.path.join(output, name))
        os.replace(staged + ".ram.json", os.path.join(output, "ram.json"))
    finally:
        for leftover in glob.glob(staged + ".*"):
            os.remove(leftover)
    return info


def loads_back(prefix):
    """Raise OSError unless Paddle Inference loads the graph and weights at prefix."""
    import paddle.inference

    config = paddle.inference.Config(prefix + ".json", prefix + ".pdiparams")
    config.disable_glog_info()
    try:
        paddle.inference.create_predictor(config)
    except Exception as err:  # its C++ errors on a truncated or damaged file
        raise OSError(errno.EIO, f"the traced model does not load back ({type(err).__name__}; "
                                 f"a full disk?)", prefix + ".pdiparams") from None


def info_digest(info):
    """SHA-256 of ram.json's contents but their own digest (INFO_DIGEST), keys sorted."""
    rest = {key: value for key, value in info.items() if key != INFO_DIGEST}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


def file_digest(path):
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv=None):
    parser = OneLineParser(description="Export a RAM-Paddle checkpoint for Paddle Inference.")
    parser.add_argument("--checkpoint", required=True, help="a checkpoint of main.py or results/")
    parser.add_argument("--output", required=True, help="folder for the inference model")
    parser.add_argument("--M", type=int, default=10, help="glimpse paths averaged per image")
    parser.add_argument("--deterministic", action="store_true",
                        help="start at the centre and follow the policy's mean locations "
                             "(one path) instead of sampling")
    args = parser.parse_args(argv)
    if not 1 <= args.M <= LIMITS["M"]:
        parser.error(f"--M must be 1 to {LIMITS['M']}, got {args.M}")
    if refusal := writes_into_results("--output", args.output):
        parser.error(refusal)
    paddle.set_device("cpu")  # the graph runs anywhere; tracing it needs no GPU
    exit_on_signals("the folder keeps its earlier export or fails its digests, which infer.py "
                    "checks")
    try:
        info = export(args.checkpoint, args.output, args.M, args.deterministic)
    except CheckpointError as err:
        sys.exit(f"[!] {err}")
    except OSError as err:
        sys.exit(f"[!] could not write the model into {args.output} ({err.strerror or err}: "
                 f"{err.filename or args.output}); its earlier export, if any, is whole")
    print(f"[*] Exported {args.checkpoint} (epoch {info['epoch']}, {info['dataset']} "
          f"{info['image_size']}x{info['image_size']}, M={info['M']}"
          f"{', deterministic' if args.deterministic else ''}) to {args.output}/inference.json")


if __name__ == "__main__":
    main()
