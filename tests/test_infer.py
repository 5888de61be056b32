"""infer.py: images of every kind prepared as the training data, one JSON line each."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from data_loader import Canvases, CanvasDataset, load_canvases, load_mnist, prepare, read_digits
from export_model import export
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
