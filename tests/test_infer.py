"""infer.py: images of every kind prepared as the training data, one JSON line each."""
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from data_loader import Canvases, CanvasDataset, load_canvases, load_mnist, prepare, read_digits
from export_model import INFO_DIGEST, export, info_digest
from infer import gather_images, main
from tests.helpers import MNIST_DIR, ROOT, refusal

MNIST_6 = os.path.join(ROOT, "results", "mnist", "ram_6_8x8_1", "model.pdparams")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exported")
    export(MNIST_6, str(folder), M=10)
    return str(folder)


def write_pngs(folder, images):
    os.makedirs(folder, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(os.path.join(folder, f"{i:03d}.png"))
    return str(folder)


def test_png_digits_are_prepared_exactly_as_the_training_data(tmp_path):
    digits, _ = read_digits(MNIST_DIR, "test")
    folder = write_pngs(tmp_path / "digits", digits[:50])
    names, images = gather_images([folder], channels=1, size=28)
    assert names == [os.path.join(folder, f"{i:03d}.png") for i in range(50)]
    np.testing.assert_array_equal(prepare(images, "mnist"), load_mnist(MNIST_DIR, "test")[0][:50])


def test_png_canvases_are_prepared_exactly_as_the_training_data(tmp_path):
    canvases, labels, _ = load_canvases(MNIST_DIR, "test", Canvases(60, 4, 8, 0), str(tmp_path))
    folder = write_pngs(tmp_path / "canvases", canvases[:20])
    _, images = gather_images([folder], channels=1, size=60)
    dataset = CanvasDataset(canvases[:20], labels[:20])
    np.testing.assert_array_equal(prepare(images, "cluttered"),
                                  np.stack([dataset[i][0] for i in range(20)]))


def test_arrays_rgb_and_other_sizes_are_read_as_image_files_are(tmp_path):
    digits, _ = read_digits(MNIST_DIR, "test")
    digits = digits[:6]
    png_names, from_png = gather_images([write_pngs(tmp_path / "png", digits)], 1, 28)
    np.save(tmp_path / "plain.npy", digits)
    np.savez(tmp_path / "channels.npz", images=digits[:, None])
    for source in (tmp_path / "plain.npy", tmp_path / "channels.npz"):
        names, images = gather_images([str(source)], 1, 28)
        assert names == [f"{source}[{i}]" for i in range(6)]
        np.testing.assert_array_equal(images, from_png)
    # An RGB file of another size: converted to gray and resized, as PIL does it.
    rgb = np.repeat(np.kron(digits[0], np.ones((2, 2), np.uint8))[:, :, None], 3, axis=2)
    Image.fromarray(rgb).save(tmp_path / "big_rgb.png")
    _, image = gather_images([str(tmp_path / "big_rgb.png")], 1, 28)
    expected = Image.fromarray(rgb).convert("L").resize((28, 28), Image.BILINEAR)
    np.testing.assert_array_equal(image[0, 0], np.asarray(expected))


def test_one_json_line_per_image_in_order(tmp_path, model_dir, capsys):
    digits, labels = read_digits(MNIST_DIR, "test")
    folder = write_pngs(tmp_path / "digits", digits[:10])
    np.savez(tmp_path / "more.npz", images=digits[10:30])
    main(["--model_dir", model_dir, "--images", folder, str(tmp_path / "more.npz"),
          "--batch_size", "7", "--threads", "1", "--glimpses", str(tmp_path / "first.gif")])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["image"] for line in lines] == (
        [os.path.join(folder, f"{i:03d}.png") for i in range(10)]
        + [f"{tmp_path / 'more.npz'}[{i}]" for i in range(20)])
    for line in lines:
        assert len(line["probabilities"]) == 10
        assert abs(sum(line["probabilities"]) - 1) < 1e-4
        assert line["class"] == str(int(np.argmax(line["probabilities"])))
    right = sum(line["class"] == str(label) for line, label in zip(lines, labels[:30]))
    assert right >= 28  # a 0.75% model
    assert Image.open(tmp_path / "first.gif").n_frames == 6  # one frame per glimpse


def test_bad_inputs_are_refused_in_one_line(tmp_path, model_dir):
    assert "ram.json" in refusal(main, "--model_dir", str(tmp_path), "--images", "x.png")
    np.savez(tmp_path / "other.npz", pictures=np.zeros((2, 28, 28), np.uint8))
    assert "no `images` array" in refusal(main, "--model_dir", model_dir, "--images",
                                          str(tmp_path / "other.npz"))
    np.save(tmp_path / "floats.npy", np.zeros((2, 28, 28), np.float32))
    assert "must be uint8" in refusal(main, "--model_dir", model_dir, "--images",
                                      str(tmp_path / "floats.npy"))
    (tmp_path / "empty").mkdir()
    assert "holds no images" in refusal(main, "--model_dir", model_dir, "--images",
                                        str(tmp_path / "empty"))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    assert "not a readable image" in refusal(main, "--model_dir", model_dir, "--images",
                                             str(tmp_path / "broken.png"))
    assert "not a readable image" in refusal(main, "--model_dir", model_dir, "--images",
                                             str(tmp_path / "missing.png"))


# ------------------------------------------------- issue 37: what infer.py refuses or survives

def test_glimpses_never_overwrite_an_input_the_model_folder_or_results(model_dir, tmp_path):
    """D1: --glimpses is a .gif outside the inputs, the model's folder and results/."""
    digits, _ = read_digits(MNIST_DIR, "test")
    folder = write_pngs(tmp_path / "digits", digits[:2])
    gif_input = str(tmp_path / "digit.gif")
    Image.fromarray(digits[0]).save(gif_input)
    published = os.path.join(ROOT, "results", "figures", "glimpses_of_a_test.gif")
    for images, out, reason in [
            ([folder], os.path.join(folder, "000.png"), "name a .gif file"),
            ([gif_input], gif_input, "one of --images"),
            ([folder], os.path.join(folder, "new.gif"), "one of --images"),
            ([folder], os.path.join(model_dir, "ram.gif"), "in the model's folder"),
            ([folder], published, "inside results/")]:
        before = {path: open(path, "rb").read() for path in (gif_input, os.path.join(model_dir, "ram.json"))}
        with pytest.raises(SystemExit) as exit_info:
            main(["--model_dir", model_dir, "--images", *images, "--glimpses", out])
        assert exit_info.value.code == 2, out
        assert {path: open(path, "rb").read() for path in before} == before
        assert not os.path.exists(published)
    (tmp_path / "a_file").write_text("not a folder")
    message = refusal(main, "--model_dir", model_dir, "--images", folder, "--glimpses",
                      str(tmp_path / "a_file" / "first.gif"))
    assert message.startswith("[!] could not write")


def test_an_export_cut_short_or_damaged_is_refused_not_run(model_dir, tmp_path):
    """D2: the graph of another export beside this ram.json (an export killed between its
    writes), or a flipped byte in the weights, is refused in one line, never predicted with."""
    digits, _ = read_digits(MNIST_DIR, "test")
    folder = write_pngs(tmp_path / "digits", digits[:2])
    canvas = str(tmp_path / "canvas")
    export(os.path.join(ROOT, "results", "translated", "ram_4_12x12_2_translated60", "model.pdparams"),
           canvas, M=2)
    mixed = str(tmp_path / "mixed")
    os.makedirs(mixed)
    for name in ("inference.json", "inference.pdiparams"):
        with open(os.path.join(canvas, name), "rb") as src, open(os.path.join(mixed, name), "wb") as dst:
            dst.write(src.read())
    with open(os.path.join(model_dir, "ram.json")) as src, open(os.path.join(mixed, "ram.json"), "w") as dst:
        dst.write(src.read())
    assert "is not the file" in refusal(main, "--model_dir", mixed, "--images", folder)
    flipped = str(tmp_path / "flipped")
    export(MNIST_6, flipped, M=2)
    params = os.path.join(flipped, "inference.pdiparams")
    data = bytearray(open(params, "rb").read())
    data[len(data) // 2] ^= 0x40
    open(params, "wb").write(bytes(data))
    assert "is not the file" in refusal(main, "--model_dir", flipped, "--images", folder)


def test_a_flipped_option_of_ram_json_or_a_graph_of_another_size_is_refused(model_dir, tmp_path):
    """N4: ram.json's options were under no digest (image_size 60 -> 64 classed every image
    "1"), and a graph of another size beside a ram.json whose digests were made to match it
    predicted; now ram.json carries its own digest and the graph's input is checked."""
    digits, _ = read_digits(MNIST_DIR, "test")
    folder = write_pngs(tmp_path / "digits", digits[:2])
    flipped = tmp_path / "flipped"
    shutil.copytree(model_dir, flipped)
    text = (flipped / "ram.json").read_text()
    (flipped / "ram.json").write_text(text.replace('"image_size": 28', '"image_size": 29'))
    assert "its ram_json_sha256 differs" in refusal(main, "--model_dir", str(flipped), "--images", folder)
    forged = tmp_path / "forged"
    shutil.copytree(model_dir, forged)
    info = json.loads((forged / "ram.json").read_text())
    info["image_size"] = 60  # a 60x60 ram.json, digests and all, over the 28x28 graph
    info["dataset"] = "translated"
    info[INFO_DIGEST] = info_digest(info)
    (forged / "ram.json").write_text(json.dumps(info))
    assert "the graph takes images of [1, 28, 28], not the [1, 60, 60]" in refusal(
        main, "--model_dir", str(forged), "--images", folder)


def test_inputs_that_would_crash_or_hang_are_refused_in_one_line(model_dir, tmp_path, monkeypatch):
    """D6: a decompression bomb, a header that claims 10^12 images, a symlink loop in a
    folder, an absurd --threads, a named pipe: one line each, or survived."""
    digits, _ = read_digits(MNIST_DIR, "test")
    folder = write_pngs(tmp_path / "digits", digits[:2])
    os.symlink("loop", os.path.join(folder, "loop.png"))  # a link to itself
    lines = []
    monkeypatch.setattr("builtins.print", lambda *args, **kw: lines.append(args))
    main(["--model_dir", model_dir, "--images", folder])
    assert len(lines) == 2  # the two digits; the loop skipped
    monkeypatch.undo()
    huge = str(tmp_path / "huge.npy")
    with open(huge, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False,
                                                 "shape": (10**12, 28, 28)})
    assert "huge.npy" in refusal(main, "--model_dir", model_dir, "--images", huge)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # a 28x28 PNG is then a bomb
    assert "DecompressionBombError" in refusal(main, "--model_dir", model_dir, "--images",
                                               os.path.join(folder, "000.png"))
    with pytest.raises(SystemExit) as exit_info:
        main(["--model_dir", model_dir, "--images", folder, "--threads", "100000000000"])
    assert exit_info.value.code == 2
    pipe = str(tmp_path / "pipe.png")  # reading it would wait for a writer for ever
    os.mkfifo(pipe)
    assert "neither a file nor a folder" in refusal(main, "--model_dir", model_dir, "--images", pipe)


def test_16_bit_transparent_and_transposed_images_are_read_as_meant_or_refused(model_dir, tmp_path):
    """D7: a 16-bit PNG is scaled to 8 bits (not clipped), a transparent one refused, an
    (N, H, W, C) array with H = 3 refused rather than read as (N, C, H, W)."""
    digit = read_digits(MNIST_DIR, "test")[0][0]
    wide = str(tmp_path / "sixteen.png")
    Image.fromarray(digit.astype(np.uint16) * 257).save(wide)
    assert Image.open(wide).mode.startswith("I;16")
    _, images = gather_images([wide], channels=1, size=28)
    np.testing.assert_array_equal(images[0, 0], digit)
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = 255 - digit  # black strokes on a transparent background
    transparent = str(tmp_path / "transparent.png")
    Image.fromarray(rgba, "RGBA").save(transparent)
    assert "transparent pixels" in refusal(main, "--model_dir", model_dir, "--images", transparent)
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(str(tmp_path / "opaque.png"))
    assert gather_images([str(tmp_path / "opaque.png")], channels=1, size=28)[1].shape == (1, 1, 28, 28)
    nhwc = str(tmp_path / "nhwc.npy")
    np.save(nhwc, np.zeros((2, 3, 28, 3), np.uint8))  # N, H=3, W, C
    assert "at least 4x4" in refusal(main, "--model_dir", model_dir, "--images", nhwc)
