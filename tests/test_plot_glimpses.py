"""plot_glimpses.py: boxes where the retina cuts, one GIF frame per glimpse, figures, errors."""
import os

import numpy as np
import paddle
import pytest
from PIL import Image

import plot_glimpses
from modules import Retina
from tests.helpers import MNIST_DIR, ROOT, refusal


@pytest.mark.parametrize("location", [(0.0, 0.0), (0.93, -0.6), (-1.0, 1.0), (0.31, 0.77)])
def test_boxes_sit_where_the_retina_cuts(location):
    """Each box, filled with the image's pixels and zeros beyond the border, then
    pooled to g x g, is exactly the retina's patch at that scale."""
    H = W = 28
    image = np.arange(H * W, dtype=np.float32).reshape(1, 1, H, W) + 1
    retina = Retina(4, 3, 2)
    l = np.array([location], np.float32)
    phi = retina.foveate(paddle.to_tensor(image), paddle.to_tensor(l)).numpy().reshape(3, 4, 4)
    boxes = retina.patch_boxes(l, H, W)[0]
    rows, cols = (int(0.5 * (location[1] + 1) * H), int(0.5 * (location[0] + 1) * W))
    for i, (size, (top, left, bottom, right)) in enumerate(zip(retina.sizes, boxes)):
        # The box is the patch's square, clipped: centred as the retina centres it.
        assert (top, left) == (max(rows - size // 2, 0), max(cols - size // 2, 0))
        assert (bottom, right) == (min(rows - size // 2 + size, H), min(cols - size // 2 + size, W))
        patch = np.zeros((size, size), np.float32)
        patch[top - (rows - size // 2):bottom - (rows - size // 2),
              left - (cols - size // 2):right - (cols - size // 2)] = image[0, 0, top:bottom, left:right]
        f = size // 4
        np.testing.assert_allclose(patch.reshape(4, f, 4, f).mean(axis=(1, 3)), phi[i], rtol=1e-6)


def saved_batch(folder, epoch, steps=4):
    rng = np.random.default_rng(epoch)
    np.savez_compressed(folder / f"glimpses_epoch{epoch}.npz",
                        images=rng.normal(size=(5, 1, 28, 28)).astype(np.float32),
                        labels=np.arange(5), predicted=np.array([0, 1, 2, 0, 4]),
                        locations=rng.uniform(-1, 1, size=(5, steps, 2)).astype(np.float32),
                        patch_size=8, num_patches=2, glimpse_scale=2)


def test_gif_has_one_frame_per_glimpse_and_figures_are_written(tmp_path):
    folder = tmp_path / "plots" / "ram_4_8x8_2"
    folder.mkdir(parents=True)
    saved_batch(folder, 1)
    saved_batch(folder, 3)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "ram_4_8x8_2.log").write_text(
        "# started ...\n"
        "epoch 1 lr 3.000e-04 train_loss 2.0 train_acc 30.0 valid_loss 1.5 valid_acc 50.0 "
        "valid_err 50.00 seconds 1.0 samples_per_s 100\n"
        "epoch 2 lr 3.000e-04 train_loss 1.0 train_acc 60.0 valid_loss 0.9 valid_acc 70.0 "
        "valid_err 30.00 seconds 1.0 samples_per_s 100\n")
    plot_glimpses.main(["--plot_dir", str(folder), "--figures", "--out_dir", str(tmp_path / "out"),
                        "--log", str(logs / "ram_4_8x8_2.log"), "--data_dir", MNIST_DIR])
    # The latest epoch by default, under --out_dir: never beside the glimpses, which may be
    # published ones in results/.
    gif = Image.open(tmp_path / "out" / "ram_4_8x8_2" / "glimpses_epoch3.gif")
    assert gif.n_frames == 4
    assert sorted(p.name for p in folder.iterdir()) == ["glimpses_epoch1.npz", "glimpses_epoch3.npz"]
    for name in ["bbox.png", "glimpses.png", "ram_4_8x8_2_curves.png"]:
        assert Image.open(tmp_path / "out" / name).size[0] > 100
    plot_glimpses.main(["--plot_dir", str(folder), "--epoch", "1", "--out", str(tmp_path / "a.gif")])
    assert Image.open(tmp_path / "a.gif").n_frames == 4


def test_bad_input_is_refused_in_one_line_naming_what_exists(tmp_path):
    (tmp_path / "ram_6_8x8_1").mkdir()
    assert f"no plot directory {tmp_path / 'missing'} ({tmp_path} holds ram_6_8x8_1)" in refusal(
        plot_glimpses.main, "--plot_dir", str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    assert "holds no glimpses_epoch<N>.npz (it holds nothing)" in refusal(
        plot_glimpses.main, "--plot_dir", str(tmp_path / "empty"))
    saved_batch(tmp_path, 2)
    saved_batch(tmp_path, 5)
    assert "epoch 4 was not saved" in refusal(plot_glimpses.main, "--plot_dir", str(tmp_path), "--epoch", "4")
    assert "saved epochs: 2, 5" in refusal(plot_glimpses.main, "--plot_dir", str(tmp_path), "--epoch", "4")
    assert "--patch_size 4, but the glimpses were saved with 8" in refusal(
        plot_glimpses.main, "--plot_dir", str(tmp_path), "--patch_size", "4")


def test_read_log_keeps_the_selected_test_error_where_it_was_measured(tmp_path):
    log = tmp_path / "ram.log"
    log.write_text(
        "epoch 1 lr 1.000e-03 train_loss 2.0 train_acc 30.0 valid_loss 1.5 valid_acc 50.0 "
        "valid_err 50.00 seconds 1.0 samples_per_s 100\n"
        "epoch 2 lr 1.000e-03 train_loss 1.0 train_acc 60.0 valid_loss 0.9 valid_acc 70.0 "
        "valid_err 30.00 seconds 1.0 samples_per_s 100 test_err 28.50 selected_test_err 29.50 "
        "selected_epoch 2\n")
    numbers, values = plot_glimpses.read_log(str(log))
    assert numbers == [1, 2]
    np.testing.assert_array_equal(values[1], [1.0, 0.9, 40.0, 30.0, 29.5])  # not test_err
    assert np.isnan(values[0, 4])
    plot_glimpses.curves(str(log), str(tmp_path / "curves.png"))
    drawn = Image.open(tmp_path / "curves.png")
    assert drawn.format == "PNG" and drawn.size == (1350, 510)  # 9 x 3.4 inches at 150 dpi
    assert drawn.mode == "P" and len(drawn.getcolors()) <= 64  # the palette that keeps it small


def test_read_log_leaves_out_a_damaged_line_and_says_so(tmp_path, capsys):
    log = tmp_path / "ram.log"
    log.write_text(  # an older run's log, cut short by a full disk, a resume header glued to it
        "epoch 1 lr 1.000e-03 train_loss 2.0 train_acc 30.0 valid_loss 1.5 valid_acc 50.0 "
        "valid_err 50.00 seconds 1.0 samples_per_s 100\n"
        "epoch 2 lr 1.000e-03 train_loss 1.0 train_acc 60.0 valid_lo# resumed after epoch 1 ...\n"
        "epoch 2 lr 1.000e-03 train_loss 1.0 train_acc 60.0 valid_loss 0.9 valid_acc 70.0 "
        "valid_err 30.00 seconds 1.0 samples_per_s 100\n")
    numbers, values = plot_glimpses.read_log(str(log))
    assert numbers == [1, 2] and values[1, 3] == 30.0
    assert "left out 1 damaged epoch lines" in capsys.readouterr().out


def test_a_games_gif_has_a_frame_per_frame_and_its_tracking_figure_is_drawn(tmp_path):
    """The game's glimpse file (main.py --dataset catch): a screen per frame, and with
    --figures the share of frames whose fovea held the ball, by row, from its test result."""
    import json

    run = tmp_path / "catch_run"
    run.mkdir()
    frames = np.zeros((2, 23, 1, 24, 24), np.float32)
    for t in range(23):
        frames[:, t, 0, t, 5] = 1.0
    np.savez(run / "glimpses_epoch3.npz", frames=frames, locations=np.zeros((2, 23, 2), np.float32),
             actions=np.ones((2, 23), np.int64), rewards=np.array([1.0, 0.0], np.float32),
             patch_size=6, num_patches=3, glimpse_scale=2)
    (run / "test.json").write_text(json.dumps({"total": 100, "catch_rate": 50.0,
                                               "fovea_on_ball_by_row": [0.5] * 23}))
    plot_glimpses.main(["--plot_dir", str(run), "--out_dir", str(tmp_path / "out"), "--figures"])
    with Image.open(tmp_path / "out" / "catch_run" / "glimpses_epoch3.gif") as gif:
        assert gif.n_frames == 23
    assert (tmp_path / "out" / "catch_run_tracking.png").stat().st_size > 1000


def test_the_games_curves_draw_each_seeds_log_without_glimpse_files(tmp_path):
    run, other = tmp_path / "run", tmp_path / "seed2.log"
    run.mkdir()
    line = ("epoch {} lr 1e-3 train_loss -0.1 max_batch_loss 0.2 max_batch_term reinforce "
            "train_acc {} valid_loss -0.1 valid_acc {} valid_err {} seconds 1 samples_per_s 1\n")
    for path, accs in [(run / "train.log", (10, 50, 90)), (other, (12, 40, 80))]:
        path.write_text("".join(line.format(i + 1, a, a, 100 - a) for i, a in enumerate(accs)))
    plot_glimpses.main(["--plot_dir", str(run), "--catch_curves", str(other),
                        "--out_dir", str(tmp_path / "out")])
    assert Image.open(tmp_path / "out" / "run_curves.png").size[0] > 300
    assert "no training log" in refusal(plot_glimpses.main, "--plot_dir", str(tmp_path / "none"),
                                        "--catch_curves")
    assert "inside results/" in refusal(plot_glimpses.main, "--plot_dir", str(run), "--catch_curves",
                                        "--out_dir", os.path.join(ROOT, "results", "figures"))
