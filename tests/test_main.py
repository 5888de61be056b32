"""The command line, run as a user runs it."""
import glob
import json
import os
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest

from tests.helpers import MNIST_DIR, ROOT, tiny_args, write_fake_mnist, write_image_folder
from utils import usable_cores


def cli(cwd, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "--use_gpu=False", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_train_one_epoch_then_evaluate(tmp_path):
    train = cli(tmp_path, "--epochs", "1", "--train_subset", "512", "--data_dir", MNIST_DIR,
                "--run_name", "ram_6_8x8_1")
    assert train.returncode == 0, train.stderr
    assert "Epoch 1/1" in train.stderr  # the progress bar
    assert sorted(glob.glob("*/*.pdparams", root_dir=tmp_path / "ckpt")) == ["ram_6_8x8_1/best.pdparams",
                                                     "ram_6_8x8_1/ckpt.pdparams"]
    log = (tmp_path / "ckpt" / "ram_6_8x8_1/train.log").read_text().splitlines()
    assert log[0].startswith("# started") and log[1].startswith("epoch 1 lr 3.000e-04 train_loss")
    assert f'"num_threads": {usable_cores()}' in log[0]  # --num_threads 0: every usable core
    with np.load(tmp_path / "ckpt" / "ram_6_8x8_1" / "glimpses_epoch1.npz") as saved:
        assert saved["locations"].shape == (9, 6, 2) and saved["images"].shape == (9, 1, 28, 28)
        assert (saved["patch_size"], saved["num_patches"], saved["glimpse_scale"]) == (8, 1, 1)

    test = cli(tmp_path, "--is_train=False", "--M", "2", "--data_dir", MNIST_DIR, "--run_name", "ram_6_8x8_1")
    assert test.returncode == 0, test.stderr
    result = json.loads((tmp_path / "ckpt" / "ram_6_8x8_1/test.json").read_text())
    assert result["total"] == 10000 and result["M"] == 2 and result["epoch"] == 1
    accuracy = 100 * result["correct"] / 10000
    assert (f"[*] Test Acc: {result['correct']}/10000 ({accuracy:.2f}% - {100 - accuracy:.2f}%)"
            in test.stdout)


def test_bad_data_and_missing_checkpoint_fail_in_one_line(tmp_path):
    folder = write_fake_mnist(tmp_path / "mnist")
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"")
    bad = cli(tmp_path, "--epochs", "1", "--data_dir", str(folder))
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0
    assert "train-labels-idx1-ubyte.gz: not an IDX file" in bad.stderr
    assert not (tmp_path / "ckpt").exists()

    missing = cli(tmp_path, "--is_train=False", "--data_dir", str(folder))
    assert missing.returncode == 1 and missing.stderr.strip().count("\n") == 0
    assert "no checkpoint at ./ckpt/ram_6_8x8_1/best.pdparams" in missing.stderr


def test_cluttered_task_trains_evaluates_and_draws(tmp_path):
    folder = write_fake_mnist(tmp_path / "mnist", num_train=240, num_test=60)
    task = ["--dataset", "cluttered", "--image_size", "40", "--num_distractors", "2",
            "--patch_size", "6", "--num_patches", "3", "--glimpse_scale", "2", "--num_glimpses", "3",
            "--M", "2", "--data_dir", str(folder), "--cache_dir", str(tmp_path / "cache"),
            "--run_name", "ram_3_6x6_2_cluttered40_d2"]
    train = cli(tmp_path, *task, "--epochs", "1", "--fresh_canvases")
    assert train.returncode == 0, train.stderr
    name = "ram_3_6x6_2_cluttered40_d2"
    assert sorted(glob.glob("*/*.pdparams", root_dir=tmp_path / "ckpt")) == [f"{name}/best.pdparams",
                                                     f"{name}/ckpt.pdparams"]
    [cache] = os.listdir(tmp_path / "cache")
    assert cache.startswith("cluttered40_d2x8_seed0_train_")
    with np.load(tmp_path / "ckpt" / name / "glimpses_epoch1.npz") as saved:
        assert saved["images"].shape == (9, 1, 40, 40) and not saved["standardised"]
        assert saved["images"].min() == 0 and saved["images"].max() <= 1

    test = cli(tmp_path, *task, "--is_train=False")
    assert test.returncode == 0, test.stderr
    assert json.loads((tmp_path / "ckpt" / f"{name}/test.json").read_text())["total"] == 60
    assert any(name.startswith("cluttered40_d2x8_seed0_test_") for name in os.listdir(tmp_path / "cache"))
    # A model trained on other canvases is refused, naming the option.
    other = cli(tmp_path, *task, "--is_train=False", "--distractor_size", "6")
    assert other.returncode == 1
    assert "--distractor_size 8 (checkpoint) vs 6" in other.stderr

    draw = subprocess.run([sys.executable, os.path.join(ROOT, "plot_glimpses.py"), "--plot_dir",
                           str(tmp_path / "ckpt" / name)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert draw.returncode == 0, draw.stderr
    assert os.path.getsize(tmp_path / "plots" / name / "glimpses_epoch1.gif") > 1000


def launch(tmp_path, folder, *args):
    """main.py in 2 data-parallel processes on the CPU (gloo), writing into tmp_path/folder."""
    out = tmp_path / folder
    return subprocess.run(
        [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
         str(out / "launch"), os.path.join(ROOT, "main.py"), *tiny_args(out, "--train_subset", "331"),
         *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_two_data_parallel_processes_train_checkpoint_and_resume_exactly(tmp_path):
    whole = launch(tmp_path, "whole", "--epochs", "2")
    assert whole.returncode == 0, whole.stderr
    first = launch(tmp_path, "resumed", "--epochs", "1")
    assert first.returncode == 0, first.stderr
    assert "in 2 processes" in first.stdout
    then = launch(tmp_path, "resumed", "--epochs", "2", "--resume=True", "--best=False")
    assert then.returncode == 0, then.stderr

    def epochs(folder):  # the log's epoch lines less their timings
        lines = (tmp_path / folder / "logs" / "ram_3_4x4_2/train.log").read_text().splitlines()
        assert all("processes 2 " in line for line in lines if line.startswith("#"))
        return [line.split(" seconds")[0] for line in lines if line.startswith("epoch")]

    assert len(epochs("whole")) == 2 and epochs("resumed") == epochs("whole")
    # One writer: rank 0's checkpoints, log and glimpses; the same weights either way.
    name = "ram_3_4x4_2/ckpt.pdparams"
    assert sorted(glob.glob("*/*", root_dir=tmp_path / "resumed" / "ckpt")) == [
        "ram_3_4x4_2/best.pdparams", "ram_3_4x4_2/ckpt.pdparams"]
    whole_state = paddle.load(str(tmp_path / "whole" / "ckpt" / name))
    resumed_state = paddle.load(str(tmp_path / "resumed" / "ckpt" / name))
    for key, value in whole_state["model"].items():
        np.testing.assert_array_equal(value.numpy(), resumed_state["model"][key].numpy())


def test_image_folder_trains_tests_exports_and_infers(tmp_path):
    """--dataset folder on RGB images of two classes and several sizes: train an epoch,
    test it, export it and classify one of its PNGs."""
    data = write_image_folder(tmp_path / "shapes")
    task = ["--dataset", "folder", "--data_dir", data, "--channels", "3", "--image_size", "24",
            "--patch_size", "6", "--num_patches", "2", "--glimpse_scale", "2", "--num_glimpses", "3",
            "--M", "2", "--batch_size", "16", "--valid_size", "0.2", "--run_name", "ram_3_6x6_2_shapes24"]
    train = cli(tmp_path, *task, "--epochs", "1", "--test_freq", "1")
    assert train.returncode == 0, train.stderr
    name = "ram_3_6x6_2_shapes24"
    log = (tmp_path / "ckpt" / f"{name}/train.log").read_text().splitlines()
    assert '"classes": ["bar", "dot"]' in log[0] and "test_err" in log[1]
    with np.load(tmp_path / "ckpt" / name / "glimpses_epoch1.npz") as saved:
        assert saved["images"].shape == (9, 3, 24, 24) and not saved["standardised"]

    test = cli(tmp_path, *task, "--is_train=False")
    assert test.returncode == 0, test.stderr
    assert json.loads((tmp_path / "ckpt" / f"{name}/test.json").read_text())["total"] == 20
    # Class folders other than the model's are refused in one line.
    os.rename(os.path.join(data, "test", "dot"), os.path.join(data, "test", "spot"))
    other = cli(tmp_path, *task, "--is_train=False")
    assert other.returncode == 1 and other.stderr.strip().count("\n") == 0
    assert "holds the classes ['bar', 'spot'], but the model's are ['bar', 'dot']" in other.stderr

    checkpoint = str(tmp_path / "ckpt" / f"{name}/best.pdparams")
    export = subprocess.run([sys.executable, os.path.join(ROOT, "export_model.py"), "--checkpoint",
                             checkpoint, "--output", str(tmp_path / "exported")],
                            capture_output=True, text=True, timeout=300)
    assert export.returncode == 0, export.stderr
    infer = subprocess.run([sys.executable, os.path.join(ROOT, "infer.py"), "--model_dir",
                            str(tmp_path / "exported"), "--images",
                            os.path.join(data, "train", "bar", "0.png")],
                           capture_output=True, text=True, timeout=300)
    assert infer.returncode == 0, infer.stderr
    line = json.loads(infer.stdout)
    assert line["class"] in ("bar", "dot") and len(line["probabilities"]) == 2


def test_image_folder_mistakes_are_refused_in_one_line(tmp_path):
    (tmp_path / "empty" / "train" / "only").mkdir(parents=True)
    for data, reason in [(tmp_path / "none", "train: missing"),
                         (tmp_path / "empty", "holds 1 class folder(s)")]:
        run = cli(tmp_path, "--dataset", "folder", "--data_dir", str(data), "--epochs", "1")
        assert run.returncode == 2 and reason in run.stderr
        assert run.stderr.strip().count("\n") == 0
    (tmp_path / "empty" / "train" / "other").mkdir()
    run = cli(tmp_path, "--dataset", "folder", "--data_dir", str(tmp_path / "empty"), "--epochs", "1")
    assert run.returncode == 1 and "holds no images" in run.stderr
    rgb = cli(tmp_path, "--channels", "3", "--epochs", "1")
    assert rgb.returncode == 2 and "--channels must be 1, or 3 with --dataset folder" in rgb.stderr


@pytest.mark.parametrize("folder", ["ckpt", "logs", "plots", "data/cache", "log", "exported"])
def test_every_folder_a_run_writes_is_ignored_by_git(folder):
    """What the README's commands write (main.py's, plot_glimpses.py's and align.py's
    default folders) never shows in `git status` of a clone."""
    if not os.path.isdir(os.path.join(ROOT, ".git")):
        pytest.skip("not a git checkout")
    probe = f"{folder}/ram_6_8x8_1/glimpses_epoch1.npz"
    ignored = subprocess.run(["git", "check-ignore", "-q", probe], cwd=ROOT)
    assert ignored.returncode == 0, f"{probe} is not ignored by git"


def test_a_clone_stays_under_30_mb():
    """The front door's promise: what a clone holds besides .git, published weights included,
    takes at most 30 MB on disk, counted as `du -sh --exclude=.git` counts it: the blocks of
    the tracked files and of their folders. runs/ is left out: it holds the state of long runs
    still in flight between sessions, and empties when they end."""
    if not os.path.isdir(os.path.join(ROOT, ".git")):
        pytest.skip("not a git checkout")
    files = [f for f in subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                                       text=True, check=True).stdout.split("\0")
             if f and not f.startswith("runs/")]
    folders = {""}
    for name in files:
        while name:
            name = os.path.dirname(name)
            folders.add(name)
    paths = [os.path.join(ROOT, p) for p in files + sorted(folders)]
    megabytes = sum(os.stat(p).st_blocks * 512 for p in paths if os.path.exists(p)) / 2**20
    assert megabytes <= 30, f"a clone takes {megabytes:.1f} MB besides .git"


def test_the_readme_is_a_front_page_of_200_lines_at_most():
    with open(os.path.join(ROOT, "README.md")) as f:
        assert len(f.read().splitlines()) <= 200


def test_nothing_published_is_ignored_by_git():
    """results/ (its logs/ too) is committed, whatever the ignored output folders are called."""
    if not os.path.isdir(os.path.join(ROOT, ".git")):
        pytest.skip("not a git checkout")
    for probe in ["results/logs/run.log", "results/mnist/ram_6_8x8_1/model.pdparams", "docs/x.md"]:
        assert subprocess.run(["git", "check-ignore", "-q", probe], cwd=ROOT).returncode == 1, probe


# ---------------------------------------- issue 37: a run's data is part of what it resumes

def test_resuming_on_other_data_is_refused_in_one_line(tmp_path):
    """D3: images added to and removed from an image folder, or other IDX files, after an
    epoch: resuming would train on images it validated on, so it is refused."""
    root = write_image_folder(tmp_path / "shapes", per_class=(30, 5))
    run = ["--dataset", "folder", "--data_dir", root, "--epochs", "2", "--num_threads", "1",
           "--patch_size", "4", "--num_glimpses", "2", "--batch_size", "16"]
    assert cli(tmp_path, *run[:-4], "--epochs", "1", *run[-4:]).returncode == 0
    os.remove(os.path.join(root, "train", "bar", "0.png"))
    write_image_folder(tmp_path / "more", per_class=(3, 0), seed=1)
    os.rename(tmp_path / "more" / "train" / "dot" / "0.png", os.path.join(root, "train", "dot", "new.png"))
    resumed = cli(tmp_path, *run, "--resume=True", "--best=False")
    assert resumed.returncode == 1 and "was trained on other data" in resumed.stderr, resumed.stderr
    assert resumed.stderr.strip().count("\n") == 0
    other = write_fake_mnist(tmp_path / "other_mnist", num_train=200, num_test=20, seed=3)
    mnist = ["--num_threads", "1", "--train_subset", "100", "--num_glimpses", "2", "--batch_size", "20"]
    assert cli(tmp_path, *mnist, "--epochs", "1", "--data_dir", MNIST_DIR).returncode == 0
    resumed = cli(tmp_path, *mnist, "--epochs", "2", "--data_dir", other, "--resume=True", "--best=False")
    assert resumed.returncode == 1 and "was trained on other data" in resumed.stderr, resumed.stderr


def test_an_image_folder_counts_each_image_once_and_no_hidden_folder_as_a_class(tmp_path):
    """D3, D7: a link that loops back inside a class, and .ipynb_checkpoints beside the classes."""
    from data_loader import Folder, folder_classes, load_folder
    root = write_image_folder(tmp_path / "shapes", per_class=(6, 2))
    os.symlink(".", os.path.join(root, "train", "bar", "loop"))
    os.makedirs(os.path.join(root, "train", ".ipynb_checkpoints"))
    os.makedirs(os.path.join(root, "test", ".ipynb_checkpoints"))
    assert folder_classes(root) == ["bar", "dot"]
    images, labels = load_folder(root, "train", Folder(["bar", "dot"], 1, 28))
    assert len(images) == 12 and sorted(labels.tolist()) == [0] * 6 + [1] * 6


TWO_NODES = ["--num_threads", "1", "--num_glimpses", "2", "--patch_size", "4", "--glimpse_hidden",
             "16", "--loc_hidden", "16", "--batch_size", "32", "--M", "2", "--train_subset", "640",
             "--data_dir", MNIST_DIR, "--use_gpu=False"]


def free_port():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def two_nodes(tmp_path, args_of_rank, port=None, nnodes=(2, 2), ranks=(0, 1)):
    """The multi-machine command (main.py --nnodes 2 --master --rank) as two nodes of one
    process each on 127.0.0.1, each in its folder tmp_path/node<i>; node i runs with
    args_of_rank[i], --nnodes nnodes[i] and --rank ranks[i]. Their exit codes; node i's
    stderr is tmp_path/node<i>.err, its worker's log tmp_path/node<i>/logs/launch/workerlog.0."""
    port = port or free_port()
    nodes = []
    for node, args in enumerate(args_of_rank):
        os.makedirs(tmp_path / f"node{node}", exist_ok=True)
        with open(tmp_path / f"node{node}.err", "w") as err:
            nodes.append(subprocess.Popen(
                [sys.executable, os.path.join(ROOT, "main.py"), *args, "--ckpt_dir",
                 str(tmp_path / "ckpt"), "--nnodes", str(nnodes[node]), "--master",
                 f"127.0.0.1:{port}", "--rank", str(ranks[node])],
                cwd=tmp_path / f"node{node}", stdout=subprocess.DEVNULL, stderr=err))
    return [node.wait(timeout=300) for node in nodes]


def refusals(tmp_path, nodes=2):
    """The '[!]' lines of each node's stderr (see two_nodes)."""
    return [[line for line in (tmp_path / f"node{node}.err").read_text().splitlines()
             if line.startswith("[!]")] for node in range(nodes)]


def test_two_nodes_on_the_loopback_address_train_checkpoint_once_and_resume(tmp_path):
    """Issue 39: the multi-machine command, here as two nodes on 127.0.0.1: rank 0 alone
    writes the files, and the run resumes from them."""
    args = [*TWO_NODES, "--hidden_size", "32", "--run_name", "two_nodes"]
    for extra in (["--epochs", "1"], ["--epochs", "2", "--resume=True", "--best=False"]):
        assert two_nodes(tmp_path, [args + extra] * 2) == [0, 0]
    assert sorted(glob.glob("*/*.pdparams*", root_dir=tmp_path / "ckpt")) == [
        "two_nodes/best.pdparams", "two_nodes/ckpt.pdparams"]
    log = (tmp_path / "ckpt" / "two_nodes/train.log").read_text().splitlines()
    assert [line.split()[:2] for line in log if line.startswith("epoch")] == [["epoch", "1"], ["epoch", "2"]]
    assert log[2].startswith("# resumed after epoch 1") and " processes 2 " in log[2]


def test_processes_started_with_other_model_options_are_refused_in_one_line(tmp_path):
    """The third campaign's re-run: a data-parallel run whose rank 1 had another --hidden_size
    aborted both processes in Paddle's C++ at the first all-reduce, with no reason given. Both
    now stop before training, each saying which options differ."""
    args = [*TWO_NODES, "--run_name", "mixed", "--epochs", "1", "--hidden_size"]
    assert all(code != 0 for code in two_nodes(tmp_path, [args + ["32"], args + ["64"]]))
    for rank in (0, 1):
        log = (tmp_path / f"node{rank}" / "logs" / "launch" / "workerlog.0").read_text()
        assert "--hidden_size 32 (rank 0) vs 64 (rank 1)" in log and "SIGABRT" not in log, log[-800:]
    assert not glob.glob("**/*.pdparams", root_dir=tmp_path, recursive=True)


def test_machines_that_cannot_meet_stop_in_one_line_naming_the_mistake(tmp_path):
    """N10: Paddle's launcher waited for ever on each of these; main.py --nnodes stops each
    machine in one line, at once or after --meet_timeout, and writes nothing."""
    import socket

    args = [*TWO_NODES, "--epochs", "1", "--meet_timeout", "5"]
    assert two_nodes(tmp_path / "a", [args] * 2, nnodes=(2, 3)) == [1, 1]
    assert refusals(tmp_path / "a") == [
        ["[!] the machine of rank 1 was started with --nnodes 3, this one (rank 0) with "
         "--nnodes 2: give every machine the same"],
        ["[!] the machine of rank 0 was started with --nnodes 2, this one (rank 1) with "
         "--nnodes 3: give every machine the same"]]
    assert two_nodes(tmp_path / "b", [args] * 2, ranks=(0, 0)) == [1, 1]
    assert refusals(tmp_path / "b") == [["[!] two machines were given --rank 0: give each "
                                         "machine its own rank, 0 to 1"]] * 2
    assert two_nodes(tmp_path / "c", [args], ranks=(1,)) == [1]
    assert refusals(tmp_path / "c", 1)[0][0].startswith(
        "[!] 1 of the 2 machines (--nnodes) met at --master 127.0.0.1:")
    with socket.socket() as other_program:  # listens at the master's port, answers nothing
        other_program.bind(("127.0.0.1", 0))
        other_program.listen()
        port = other_program.getsockname()[1]
        assert two_nodes(tmp_path / "d", [args] * 2, port=port) == [1, 1]
    first, second = refusals(tmp_path / "d")
    assert first == [f"[!] --master 127.0.0.1:{port}: its port is taken on this machine by "
                     f"another program (ss -ltn): give another port, the same on every machine"]
    assert second[0].startswith(f"[!] --master 127.0.0.1:{port} answers, but not as Paddle's")
    assert not glob.glob("**/*.pdparams", root_dir=tmp_path, recursive=True)
    assert not glob.glob("**/Traceback*", root_dir=tmp_path, recursive=True)
    assert "Traceback" not in "".join(path.read_text() for path in tmp_path.glob("*/node*.err"))


def test_the_readmes_visualdl_command_serves_its_page_in_any_browser_language(tmp_path):
    """Issue 54, point 2: VisualDL 2.5.3 with today's Flask-Babel answered 500 to a browser
    whose language is neither English nor Chinese, and to curl; the README's command pins
    the language. Started on the loopback address, fetched with and without a header."""
    import socket
    import urllib.request

    with open(os.path.join(ROOT, "README.md")) as f:
        command = next(line.split() for line in f if line.strip().startswith("visualdl "))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    command[command.index("--port") + 1] = port
    (tmp_path / "ckpt").mkdir()
    server = subprocess.Popen(command + ["--host", "127.0.0.1"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        codes = []
        for language in (None, "fr-FR,fr;q=0.9", "en-US"):
            request = urllib.request.Request(f"http://127.0.0.1:{port}/app/index")
            if language:
                request.add_header("Accept-Language", language)
            for _ in range(100):  # up to 20 s for the server to listen
                try:
                    with urllib.request.urlopen(request, timeout=5) as answer:
                        codes.append(answer.status)
                    break
                except urllib.error.HTTPError as err:
                    codes.append(err.code)
                    break
                except OSError:
                    time.sleep(0.2)
        assert codes == [200, 200, 200]
    finally:
        server.kill()
        server.wait()


def test_the_code_passes_the_one_lint_setting():
    """.flake8 is the project's one lint setting: no per-line exceptions in the code."""
    lint = subprocess.run([sys.executable, "-m", "flake8", "."], cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    marks = subprocess.run(["git", "grep", "-n", "#" + " noqa", "--", "*.py"], cwd=ROOT, capture_output=True, text=True)
    assert marks.stdout == ""
