"""Classify your own images with a model exported by export_model.py, through Paddle
Inference:

    python infer.py --model_dir exported/ram_6 --images digit.png more_digits/ batch.npz
    python infer.py --model_dir exported/ram_6 --images digit.png --glimpses digit.gif

Each X of --images is an image file (PNG, JPEG, ...: any size, gray or RGB), a folder
of them (its files, sorted by name), or an .npz (its `images` array) or .npy of uint8
images (N, H, W) or (N, C, H, W), 0-255. Every image is prepared as the model's
training data was: converted to its channels, resized to its image size (bilinear)
and scaled (data_loader.read_image, resize_images, prepare). One JSON line per image:
{"image": ..., "class": ..., "probabilities": [...]}, in the order given.
--glimpses draws the first image's glimpses (those of the first glimpse path) as a GIF.
"""
import contextlib
import json
import os
import sys
import zipfile

from utils import before_paddle, usable_cores

before_paddle(quiet=True, hold_signals=__name__ == "__main__")  # Paddle Inference's notes

import numpy as np
import paddle
import paddle.inference
from PIL import Image

from config import (LIMITS, OneLineParser, saved_options_problem, str2bool,
                    writes_into_results)
from data_loader import (IMAGE_EXTENSIONS, DataError, prepare, read_image,
                         resize_images)
from export_model import FORMAT, INFO_DIGEST, MODEL_FILES, OUTPUTS, file_digest, info_digest
from utils import atomic_write, exit_on_signals

MIN_SIDE = 4  # pixels: smaller arrays are refused (an (N, H, W, C) array would pass as NCHW)


class InferError(Exception):
    """An input or model folder that cannot be used; the message is one line."""


def read_model_info(model_dir):
    """ram.json of an exported model: its options, classes and outputs."""
    path = os.path.join(model_dir, "ram.json")
    try:
        with open(path) as f:
            info = json.load(f)
    except (OSError, ValueError, RecursionError) as err:  # RecursionError: nested too deep
        raise InferError(f"{path}: unreadable ({type(err).__name__}); export a model with "
                         f"python export_model.py --checkpoint PATH --output {model_dir}") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT or info.get("outputs") != OUTPUTS:
        raise InferError(f"{path}: not a model of this export_model.py; export it again")
    if info.get(INFO_DIGEST) != info_digest(info):
        raise InferError(f"{path}: its contents are not those it was exported with (damaged or "
                         f"edited: its {INFO_DIGEST} differs); export the model again")
    if any(key.startswith("__") for key in info):  # JSON's keys are strings; these would not set
        raise InferError(f"{path}: not a model of this export_model.py; export it again")
    problem = saved_options_problem({key: value for key, value in info.items()
                                     if key not in ("checkpoint", "epoch")})
    if problem:
        raise InferError(f"{path}: {problem}; export the model again")
    files = info.get("files") if isinstance(info.get("files"), dict) else {}
    for name in MODEL_FILES:
        file = os.path.join(model_dir, name)
        if not os.path.isfile(file):
            raise InferError(f"{file}: missing; export the model again")
        if files.get(name) != file_digest(file):
            raise InferError(f"{file} is not the file {path} describes (an export cut short, "
                             f"or damaged bytes); export the model again")
    return info


def array_images(path, channels, size):
    """The uint8 images (N, channels, size, size) of an .npz (`images`) or .npy file."""
    try:
        # An .npy is mapped, not read: a header that claims more than the file holds fails here.
        loaded = np.load(path, mmap_mode="r", allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            images = loaded
        else:  # an .npz archive
            with loaded:
                if "images" not in loaded.files:
                    raise InferError(f"{path} holds no `images` array (it holds "
                                     f"{', '.join(loaded.files) or 'nothing'})")
                images = loaded["images"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise InferError(f"{path}: not a readable .npz or .npy file ({type(err).__name__})") from None
    except MemoryError:
        raise InferError(f"{path}: its header claims more images than this machine's memory "
                         f"holds") from None
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or 0 in images.shape:
        raise InferError(f"{path}: images must be uint8 (N, H, W) or (N, C, H, W), 0-255; "
                         f"got {images.dtype} {images.shape}")
    if min(images.shape[-2:]) < MIN_SIDE:
        raise InferError(f"{path}: images of {images.shape[-2]}x{images.shape[-1]} pixels; they "
                         f"must be at least {MIN_SIDE}x{MIN_SIDE}, as (N, H, W) or (N, C, H, W) "
                         f"(an (N, H, W, C) array must be transposed first)")
    if images.ndim == 3:
        images = images[:, None]
    if images.shape[1] not in (1, 3):
        raise InferError(f"{path}: images have {images.shape[1]} channels; 1 (gray) or 3 (RGB) "
                         f"are read")
    if images.shape[1] != channels:  # gray to RGB or RGB to gray, as PIL converts a file
        mode, to = ("L", "RGB") if images.shape[1] == 1 else ("RGB", "L")
        images = np.stack([np.asarray(Image.fromarray(image[0] if mode == "L" else
                                                      image.transpose(1, 2, 0)).convert(to))
                           for image in images])
        images = images[:, None] if to == "L" else images.transpose(0, 3, 1, 2)
    return resize_images(np.ascontiguousarray(images), size)


def gather_images(sources, channels, size):
    """The names and uint8 images (N, channels, size, size) of every source, in order."""
    names, batches = [], []
    for source in sources:
        if os.path.exists(source) and not (os.path.isdir(source) or os.path.isfile(source)):
            # a named pipe would wait for a writer for ever, a device give endless bytes
            raise InferError(f"{source} is neither a file nor a folder: nothing to read")
        if os.path.isdir(source):
            files = sorted(entry.path for entry in os.scandir(source)
                           if is_image_file(entry))
            if not files:
                raise InferError(f"{source} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        elif source.endswith((".npz", ".npy")):
            images = array_images(source, channels, size)
            names += [f"{source}[{i}]" for i in range(len(images))]
            batches.append(images)
            continue
        else:
            files = [source]
        names += files
        batches.append(np.stack([read_image(path, channels, size) for path in files]))
    return names, np.concatenate(batches)


def is_image_file(entry):
    """Whether a folder's entry is an image file to read: not hidden, an image's
    extension, a file (a link that loops or leads nowhere is none)."""
    try:
        return (not entry.name.startswith(".") and entry.name.lower().endswith(IMAGE_EXTENSIONS)
                and entry.is_file())
    except OSError:
        return False


def graph_input_shape(model_dir):
    """The shape of the images the exported graph takes, [-1, C, H, W], from the data op
    named "images" of inference.json (Paddle Inference checks none on its own: a graph fed
    images of another size predicts garbage). [] if the graph has no such op."""
    with open(os.path.join(model_dir, "inference.json")) as f:
        todo = [json.load(f)]
    while todo:  # the graph's JSON, walked without recursion
        node = todo.pop()
        if isinstance(node, dict):
            attributes = {a.get("N"): a.get("AT", {}).get("D") for a in node.get("A", [])
                          if isinstance(a, dict)}
            if node.get("#") == "1.data" and attributes.get("name") == "images":
                return list(attributes.get("shape") or [])
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return []


def make_predictor(model_dir, threads, onednn, use_gpu):
    """A Paddle Inference predictor of the exported model."""
    config = paddle.inference.Config(os.path.join(model_dir, "inference.json"),
                                     os.path.join(model_dir, "inference.pdiparams"))
    if use_gpu:
        config.enable_use_gpu(256, 0)
    else:
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(threads)
        if onednn:
            config.enable_mkldnn()
        else:
            config.disable_mkldnn()
    config.disable_glog_info()
    return paddle.inference.create_predictor(config)


@contextlib.contextmanager
def stdout_to_stderr():
    """Send what Paddle's C++ prints to stdout (oneDNN's kernels print notes there) to
    stderr: stdout holds the JSON lines alone."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def predict(predictor, images):
    """The exported graph's outputs, by name, for prepared images (B, C, H, W)."""
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(images.shape))
    handle.copy_from_cpu(np.ascontiguousarray(images, np.float32))
    with stdout_to_stderr():
        predictor.run()
    return {name: predictor.get_output_handle(fetch).copy_to_cpu()
            for name, fetch in zip(OUTPUTS, predictor.get_output_names())}


def glimpses_problem(out, sources, model_dir):
    """Why --glimpses `out` must not be written, or None: it must be a .gif, and neither
    an input, nor in the model's folder, nor under results/."""
    if not out.lower().endswith(".gif"):
        return f"--glimpses {out}: name a .gif file"
    real = os.path.realpath(out)
    if any(real == os.path.realpath(source) or os.path.dirname(real) == os.path.realpath(source)
           for source in sources):
        return f"--glimpses {out} is one of --images or in one of their folders: name another file"
    if os.path.dirname(real) == os.path.realpath(model_dir):
        return f"--glimpses {out} is in the model's folder {model_dir}: name a file elsewhere"
    return writes_into_results("--glimpses", out)


def draw_glimpses(info, image, locations, predicted, out):
    """A GIF of one image's glimpses (plot_glimpses.glimpse_gif), written atomically."""
    from retina import Retina
    from plot_glimpses import glimpse_gif
    saved = {"images": image[None], "locations": locations[None], "predicted": [predicted],
             "standardised": info["dataset"] == "mnist"}
    retina = Retina(info["patch_size"], info["num_patches"], info["glimpse_scale"])
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    atomic_write(out, lambda tmp: glimpse_gif(saved, retina, tmp, fps=1.5,
                                              title=os.path.basename(out)))


def main(argv=None):
    parser = OneLineParser(description="Classify images with a model exported by export_model.py.")
    parser.add_argument("--model_dir", required=True, help="the folder export_model.py wrote")
    parser.add_argument("--images", nargs="+", required=True,
                        help="image files, folders of them, or .npz/.npy of uint8 images")
    parser.add_argument("--batch_size", type=int, default=256, help="images per predictor call")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads (0: every core this process may use)")
    parser.add_argument("--onednn", type=str2bool, default=False, metavar="BOOL",
                        help="use oneDNN kernels on the CPU: slower for this model here (see "
                             "benchmark.py --inference)")
    parser.add_argument("--use_gpu", type=str2bool, default=None, metavar="BOOL",
                        help="run on GPU 0; by default True exactly when this Paddle has CUDA")
    parser.add_argument("--glimpses", default=None, metavar="OUT.gif",
                        help="draw the first image's glimpses into this GIF")
    args = parser.parse_args(argv)
    if not 1 <= args.batch_size <= 4096 or not 0 <= args.threads <= LIMITS["num_threads"]:
        parser.error(f"--batch_size must be 1 to 4096 and --threads 0 to "
                     f"{LIMITS['num_threads']}")
    if args.glimpses and (problem := glimpses_problem(args.glimpses, args.images, args.model_dir)):
        parser.error(problem)
    use_gpu = paddle.device.is_compiled_with_cuda() if args.use_gpu is None else args.use_gpu
    if use_gpu and not paddle.device.is_compiled_with_cuda():
        parser.error("--use_gpu=True but this Paddle has no CUDA")
    exit_on_signals("no file was written")  # the GIF, last, is written atomically
    try:
        info = read_model_info(args.model_dir)
        names, images = gather_images(args.images, info["channels"], info["image_size"])
    except (InferError, DataError) as err:
        sys.exit(f"[!] {err}")
    prepared = prepare(images, info["dataset"])
    try:
        predictor = make_predictor(args.model_dir, args.threads or usable_cores(), args.onednn,
                                   use_gpu)
    except Exception as err:  # Paddle Inference's C++ errors on a graph it cannot load
        sys.exit(f"[!] {args.model_dir}: Paddle Inference cannot load the model "
                 f"({type(err).__name__}); export it again")
    takes = graph_input_shape(args.model_dir)[1:]
    if takes != [info["channels"], info["image_size"], info["image_size"]]:
        sys.exit(f"[!] {args.model_dir}: the graph takes images of {takes}, not the "
                 f"{[info['channels'], info['image_size'], info['image_size']]} of its ram.json "
                 f"(another export's graph?); export the model again")
    first = None
    for start in range(0, len(prepared), args.batch_size):
        outputs = predict(predictor, prepared[start:start + args.batch_size])
        if outputs["probabilities"].shape[1:] != (len(info["classes"]),):
            sys.exit(f"[!] {args.model_dir}: the graph gives {outputs['probabilities'].shape[1:]} "
                     f"probabilities an image, not one per class of ram.json "
                     f"({len(info['classes'])}); export the model again")
        for name, probabilities in zip(names[start:], outputs["probabilities"]):
            print(json.dumps({"image": name, "class": info["classes"][int(probabilities.argmax())],
                              "probabilities": [round(float(p), 6) for p in probabilities]}),
                  flush=True)
        first = first or outputs
    if args.glimpses:
        predicted = info["classes"][int(first["probabilities"][0].argmax())]
        try:
            draw_glimpses(info, prepared[0], first["locations"][0], predicted, args.glimpses)
        except OSError as err:
            sys.exit(f"[!] could not write {args.glimpses} ({err.strerror or err}); the "
                     f"predictions are the lines above")
        print(f"[*] Glimpses of {names[0]}: {args.glimpses}", file=sys.stderr)


if __name__ == "__main__":
    main()
