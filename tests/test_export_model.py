"""export_model.py: the exported graph is the dygraph model's test-time episode."""
import json
import os

import numpy as np
import paddle
import pytest

from checkpoint import model_of
from config import read_checkpoint
from data_loader import Canvases, get_test_loader, load_canvases, prepare, read_digits
from export_model import export, main
from infer import make_predictor, predict
from tests.helpers import MNIST_DIR, ROOT, refusal

MNIST_6 = os.path.join(ROOT, "results", "mnist", "ram_6_8x8_1", "model.pdparams")
CLUTTERED_60 = os.path.join(ROOT, "results", "cluttered", "ram_8_12x12_2_cluttered60_d4_e250",
                            "model.pdparams")


@pytest.mark.parametrize("checkpoint,images", [
    (MNIST_6, lambda cache: prepare(read_digits(MNIST_DIR, "test")[0][:37, None], "mnist")),
    (CLUTTERED_60, lambda cache: prepare(load_canvases(
        MNIST_DIR, "test", Canvases(60, 4, 8, 0), cache)[0][:37, None], "cluttered")),
])
def test_exported_graph_gives_the_dygraph_log_probabilities_for_the_same_noise(
        tmp_path, checkpoint, images):
    M = 3
    info = export(checkpoint, str(tmp_path / "model"), M=M, draws_as_inputs=True)
    x = images(str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    l_0 = rng.uniform(-1, 1, (M * len(x), 2)).astype(np.float32)
    noise = rng.normal(size=(M * len(x), info["num_glimpses"], 2)).astype(np.float32)

    model = model_of(read_checkpoint(checkpoint), checkpoint)[0]  # the CPU's own retina method
    model.eval()
    with paddle.no_grad():
        log_probas, _, _, locations = model(paddle.to_tensor(x), paddle.to_tensor(l_0),
                                            paddle.to_tensor(noise), repeats=M)
    expected = log_probas.numpy().reshape(M, len(x), -1).mean(axis=0)

    for onednn in (False, True):  # Paddle Inference's CPU kernels, and oneDNN's
        predictor = make_predictor(str(tmp_path / "model"), threads=1, onednn=onednn,
                                   use_gpu=False)
        for name, value in zip(predictor.get_input_names(), (x, l_0, noise)):
            handle = predictor.get_input_handle(name)
            handle.reshape(list(value.shape))
            handle.copy_from_cpu(value)
        predictor.run()
        got = [predictor.get_output_handle(name).copy_to_cpu()
               for name in predictor.get_output_names()]
        np.testing.assert_allclose(got[0], expected, atol=1e-5)
        np.testing.assert_allclose(got[1], np.exp(expected) / np.exp(expected).sum(1, keepdims=True),
                                   atol=1e-5)
        np.testing.assert_allclose(got[2], locations.numpy()[:len(x)], atol=1e-5)


def test_exported_test_error_agrees_with_main_within_monte_carlo_noise(tmp_path):
    export(MNIST_6, str(tmp_path), M=10)
    loader = get_test_loader(MNIST_DIR, 1000)
    predictor = make_predictor(str(tmp_path), threads=2, onednn=False, use_gpu=False)
    wrong = sum(int((predict(predictor, x.numpy())["probabilities"].argmax(1) != y.numpy()).sum())
                for x, y in loader)
    with open(os.path.join(ROOT, "results", "mnist", "ram_6_8x8_1", "test.json")) as f:
        published = json.load(f)  # what main.py --is_train=False prints for it
    # Other draws of the glimpse paths: at 0.76% error and M=10 the count moves by a few
    # images; 15 of 10,000 is far beyond that, and far below any real disagreement.
    assert abs(wrong - (published["total"] - published["correct"])) <= 15


def test_deterministic_export_gives_the_same_answer_every_call(tmp_path):
    info = export(MNIST_6, str(tmp_path), M=10, deterministic=True)
    assert info["M"] == 1
    x = prepare(read_digits(MNIST_DIR, "test")[0][:20, None], "mnist")
    predictor = make_predictor(str(tmp_path), threads=1, onednn=False, use_gpu=False)
    first, second = predict(predictor, x), predict(predictor, x)
    np.testing.assert_array_equal(first["probabilities"], second["probabilities"])
    np.testing.assert_array_equal(first["locations"][:, 0], np.zeros((20, 2), np.float32))
    # The sampling graph draws anew each call.
    export(MNIST_6, str(tmp_path / "sampled"), M=1)
    sampled = make_predictor(str(tmp_path / "sampled"), threads=1, onednn=False, use_gpu=False)
    assert not np.array_equal(predict(sampled, x)["locations"], predict(sampled, x)["locations"])


def test_export_refuses_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", MNIST_6, "--output", os.path.join(ROOT, "results", "exported")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "inside results/" in err and err.count("\n") == 1
    assert not os.path.exists(os.path.join(ROOT, "results", "exported"))
    junk = tmp_path / "junk.pdparams"
    junk.write_bytes(b"not a checkpoint")
    message = refusal(main, "--checkpoint", str(junk), "--output", str(tmp_path / "out"))
    assert "not a RAM-Paddle checkpoint, or damaged" in message


def test_an_export_that_cannot_be_written_is_refused_in_one_line_and_keeps_the_one_before(
        tmp_path, monkeypatch):
    """D6, D2: --output on a file; and a full disk while tracing leaves the folder's
    earlier export whole, its ram.json still matching its files."""
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    assert "could not write the model" in refusal(main, "--checkpoint", MNIST_6, "--output", str(a_file))
    folder = str(tmp_path / "exported")
    main(["--checkpoint", MNIST_6, "--output", folder])
    before = {name: open(os.path.join(folder, name), "rb").read() for name in os.listdir(folder)}

    real_save = paddle.jit.save

    def silently_truncated(layer, path, input_spec):  # as paddle.jit.save on a full disk
        real_save(layer, path, input_spec=input_spec)
        with open(path + ".pdiparams", "r+b") as f:
            f.truncate(100)

    monkeypatch.setattr(paddle.jit, "save", silently_truncated)
    assert "does not load back" in refusal(main, "--checkpoint", MNIST_6, "--output", folder)
    assert not [name for name in os.listdir(folder) if ".tmp" in name]
    assert {name: open(os.path.join(folder, name), "rb").read() for name in os.listdir(folder)} == before


def test_an_existing_folder_it_may_not_write_to_is_refused_in_one_line():
    """N8: an existing folder where no file may be made (a read-only disk; here /sys/kernel,
    closed to root too) failed in Paddle's C++ writer with a stack; now one line."""
    folder = "/sys/kernel"
    try:
        open(os.path.join(folder, ".probe"), "w").close()
        pytest.skip(f"{folder} is writable here")
    except FileNotFoundError:
        pytest.skip(f"no {folder} here")
    except OSError:
        pass
    message = refusal(main, "--checkpoint", MNIST_6, "--output", folder)
    assert "could not write the model into /sys/kernel" in message
