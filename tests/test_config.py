"""Options: defaults, boolean spellings, one-line refusals and --help."""
import os
import subprocess
import sys

import pytest

from config import get_config, model_name, options_problem, parser, processes_problem
from tests.helpers import ROOT


def test_defaults_are_the_references():
    config = get_config(["--use_gpu=False"])
    assert (config.patch_size, config.glimpse_scale, config.num_patches, config.num_glimpses) == (8, 1, 1, 6)
    assert (config.loc_hidden, config.glimpse_hidden, config.hidden_size) == (128, 128, 256)
    assert (config.std, config.M, config.valid_size, config.batch_size) == (0.05, 10, 0.1, 128)
    assert (config.epochs, config.init_lr, config.lr_patience, config.train_patience) == (200, 3e-4, 20, 50)
    assert (config.is_train, config.resume, config.best, config.shuffle) == (True, False, True, True)
    assert config.data_dir == "data/MNIST" and config.random_seed == 1 and config.train_subset == 0
    assert model_name(config) == "ram_6_8x8_1"


@pytest.mark.parametrize("argv,expected", [
    (["--is_train=False"], False), (["--is_train", "false"], False), (["--is_train", "True"], True),
    (["--is_train"], True), (["--is_train=0"], False),
])
def test_booleans(argv, expected):
    assert get_config(argv + ["--use_gpu=False"]).is_train is expected


@pytest.mark.parametrize("argv,reason", [
    (["--patch_size", "0"], "--patch_size must be at least 1"),
    (["--hidden_size", "0"], "--hidden_size must be at least 2"),
    (["--glimpse_hidden", "-3"], "--glimpse_hidden must be at least 1"),
    (["--batch_size", "0"], "--batch_size must be at least 1"),
    (["--num_glimpses", "0"], "--num_glimpses must be at least 1"),
    (["--num_patches", "0"], "--num_patches must be at least 1"),
    (["--std", "0"], "--std must be above 0"),
    (["--std", "nan"], "--std must be finite"),
    (["--M", "0"], "--M must be at least 1"),
    (["--valid_size", "1"], "--valid_size must be below 1"),
    (["--valid_size", "-0.1"], "--valid_size must be at least 0"),
    (["--unknown", "3"], "unrecognized arguments: --unknown"),
    (["--num_glimpse", "4"], "unrecognized arguments: --num_glimpse 4"),  # no abbreviations
    (["--checkpoint", "x.pdparams"], "--checkpoint is for testing (--is_train=False)"),
    (["--is_train=False", "--checkpoint", "missing.pdparams"],
     "--checkpoint missing.pdparams: not a readable RAM-Paddle checkpoint"),
    (["--is_train", "maybe"], "expected True or False"),
    (["--patch_size", "eight"], "invalid int value"),
    (["--num_threads", "-1"], "--num_threads must be at least 0"),
    (["--retina_method", "fft"], "argument --retina_method: invalid choice: 'fft'"),
    (["--image_size", "60"], "--image_size 60 needs --dataset translated, cluttered or folder"),
    (["--dataset", "translated", "--num_distractors", "4"], "--num_distractors needs --dataset cluttered"),
    (["--dataset", "cluttered", "--image_size", "20"], "--image_size must hold a 28x28 digit"),
    (["--dataset", "cluttered", "--distractor_size", "0"], "--distractor_size must be at least 1"),
    (["--dataset", "cluttered", "--num_distractors", "-1"], "--num_distractors must be at least 0"),
    (["--dataset", "svhn"], "argument --dataset: invalid choice: 'svhn'"),
    # Beyond what the machine runs: each ended in a MemoryError, an overflow or a hang.
    (["--random_seed", "-1"], "--random_seed must be at least 0"),
    (["--random_seed", "4294967296"], "--random_seed must be at most 4294967295"),
    (["--dataset_seed", "4294967296"], "--dataset_seed must be at most 4294967295"),
    (["--M", "1000000"], "--M must be at most 100 on this machine"),
    (["--M", "100", "--batch_size", "1000"], "--M x --batch_size, the images of one evaluation batch, must be at most 16384"),
    (["--patch_size", "100000"], "--patch_size must be at most 64"),
    (["--hidden_size", "10000000"], "--hidden_size must be at most 8192"),
    (["--num_glimpses", "100000"], "--num_glimpses must be at most 64"),
    (["--dataset", "cluttered", "--image_size", "1000"], "--image_size must be at most 200"),
    (["--glimpse_scale", "1000"], "--glimpse_scale must be at most 8"),
    (["--num_patches", "1000"], "--num_patches must be at most 8"),
    (["--patch_size", "64", "--glimpse_scale", "8", "--num_patches", "3"], "the widest patch"),
    (["--dataset", "cluttered", "--num_distractors", "100000"], "--num_distractors must be at most 64"),
    (["--std", "inf"], "--std must be finite"),
    (["--init_lr", "inf"], "--init_lr must be finite"),
    (["--model", "fc", "--random_glimpses"], "--random_glimpses is RAM's (--model ram)"),
    (["--model", "fc", "--fc_hidden", "0"], "--fc_hidden must be at least 1"),
    (["--train_paths", "200"], "--train_paths must be at most 100"),
    (["--train_paths", "100", "--batch_size", "256"], "--train_paths x --batch_size"),
    (["--clip_grad_norm", "-1"], "--clip_grad_norm must be at least 0"),
])
def test_bad_options_are_refused_in_one_line(argv, reason, capsys):
    with pytest.raises(SystemExit) as exit_info:
        get_config(argv + ["--use_gpu=False"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert reason in err and err.count("\n") == 1


def test_retina_method_reaches_the_retina():
    from model import ModelConfig, build_model

    config = get_config(["--use_gpu=False", "--retina_method", "loop"])
    assert build_model(ModelConfig.from_options(config)).sensor.retina.method == "loop"
    assert get_config(["--use_gpu=False"]).retina_method == "auto"


@pytest.mark.parametrize("argv,size,distractors,name", [
    ([], 28, 0, "ram_6_8x8_1"),
    (["--dataset", "translated"], 60, 0, "ram_6_8x8_1_translated60"),
    (["--dataset", "cluttered"], 60, 4, "ram_6_8x8_1_cluttered60_d4"),
    (["--dataset", "cluttered", "--image_size", "100", "--num_distractors", "8", "--num_glimpses",
      "8", "--patch_size", "12", "--num_patches", "4", "--glimpse_scale", "2"], 100, 8,
     "ram_8_12x12_2_cluttered100_d8"),
])
def test_tasks_have_their_papers_defaults_and_names(argv, size, distractors, name):
    config = get_config(argv + ["--use_gpu=False"])
    assert (config.image_size, config.num_distractors, model_name(config)) == (size, distractors, name)


def test_a_checkpoints_options_are_the_defaults_with_checkpoint():
    path = "results/cluttered/ram_8_12x12_2_cluttered100_d8_e500/model.pdparams"
    config = get_config(["--use_gpu=False", "--is_train=False", "--checkpoint", os.path.join(ROOT, path)])
    assert (config.dataset, config.image_size, config.num_distractors, config.num_patches,
            config.patch_size, config.num_glimpses, config.std) == ("cluttered", 100, 8, 4, 12, 8, 0.1)
    # An option given on the command line still wins (and testing then refuses the mismatch).
    config = get_config(["--use_gpu=False", "--is_train=False", "--checkpoint",
                         os.path.join(ROOT, path), "--num_glimpses", "4"])
    assert (config.num_glimpses, config.image_size) == (4, 100)


def help_text():
    return subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "--help"],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "100"},
                          timeout=120).stdout


def test_help_shows_true_defaults_and_examples():
    text = help_text()
    assert "(default: None)" not in text
    assert "--image_size IMAGE_SIZE" in text and "28 for mnist" in text
    assert "(default: 0.05)" in text and "(default: 200)" in text
    assert "examples:" in text and "--checkpoint results/mnist/ram_6_8x8_1/model.pdparams" in text


def test_docs_options_is_generated_from_the_sections():
    from config import options_page

    with open(os.path.join(ROOT, "docs", "options.md")) as f:
        assert f.read() == options_page(), "regenerate docs/options.md with the command it names"


@pytest.mark.parametrize("option,folder", [("--logs_dir", "results/mine"), ("--ckpt_dir", "results"),
                                           ("--plot_dir", "results/mnist/ram_6_8x8_1")])
def test_no_run_writes_into_results(option, folder, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # the folder as a user in the clone types it
    with pytest.raises(SystemExit):
        get_config([option, folder, "--use_gpu=False"])
    assert f"{option} {folder} is inside results/, which holds the published results" \
        in capsys.readouterr().err


@pytest.mark.parametrize("argv,reason", [
    (["--dataset", "folder", "--model", "fc", "--fc_hidden", "65536", "--channels", "3",
      "--image_size", "200"], "more than this machine trains"),
    (["--clip_grad_norm", "1e308"], "at most 1e+06"),
])
def test_options_past_this_machine_are_refused_before_they_fail(argv, reason, tmp_path, capsys):
    """D6, D8: 31 GB of fc weights; a clipping norm whose square overflows float32."""
    os.makedirs(tmp_path / "train" / "a")
    os.makedirs(tmp_path / "train" / "b")
    with pytest.raises(SystemExit) as exit_info:
        get_config(argv + ["--use_gpu=False", "--data_dir", str(tmp_path)])
    assert exit_info.value.code == 2 and reason in capsys.readouterr().err


def test_a_data_folder_too_long_a_name_for_its_files_is_refused(tmp_path, capsys):
    """D6: the run's files (and folder lock) are named after the data's folder."""
    root = tmp_path / ("x" * 240)
    os.makedirs(root / "train" / "a")
    os.makedirs(root / "train" / "b")
    with pytest.raises(SystemExit) as exit_info:
        get_config(["--dataset", "folder", "--data_dir", str(root), "--use_gpu=False"])
    assert exit_info.value.code == 2 and "bytes long" in capsys.readouterr().err


def test_canvases_and_compiled_loops_are_cached_outside_the_checkout_by_default():
    """Hundreds of MB of canvases grew the checkout to 408 MB when data/cache/ was the default;
    numba's cache of the retina's loops grew its __pycache__ with every edit of a loop."""
    import retina

    cache = os.path.realpath(os.path.expanduser(get_config(["--dataset", "cluttered"]).cache_dir))
    compiled = os.path.realpath(retina.numba.config.CACHE_DIR)
    for folder in (cache, compiled):
        assert os.path.commonpath([folder, os.path.realpath(ROOT)]) != os.path.realpath(ROOT)


def test_processes_of_a_run_may_differ_only_in_where_and_how_they_run():
    """A data-parallel run's processes compare their options as they meet: another --epochs or
    --resume (another sequence of all-reduces, which would hang or abort) is refused; other
    folders and threads, each machine's own, are not."""
    base = vars(get_config(["--epochs", "3"]))
    own = {**base, "data_dir": "/elsewhere/MNIST", "ckpt_dir": "/elsewhere/ckpt", "num_threads": 4,
           "rank": 1, "meet_timeout": 60}
    assert processes_problem([base, own]) is None
    message = processes_problem([base, {**own, "epochs": 4, "resume": True}])
    assert "--epochs 3 (rank 0) vs 4 (rank 1)" in message and "--resume False (rank 0) vs True" in message


def test_options_of_several_machines_are_checked_before_any_launch():
    """main.py --nnodes: a master that is no address:port, a rank outside the machines, or
    --master without --nnodes are refused in one line, as any other option."""
    for argv, reason in [
            (["--nnodes", "2"], "--nnodes 2 needs --master <address>:<port>"),
            (["--nnodes", "2", "--master", "10.0.0.1"], "needs --master <address>:<port>"),
            (["--nnodes", "2", "--master", "10.0.0.1:99999"], "needs --master <address>:<port>"),
            (["--nnodes", "2", "--master", "10.0.0.1:29500", "--rank", "2"], "--rank must be 0 to 1"),
            (["--master", "10.0.0.1:29500"], "are for a run on several machines"),
            (["--nnodes", "2", "--master", "10.0.0.1:29500", "--is_train=False"], "is for training")]:
        assert reason in options_problem(parser.parse_args(argv)), argv
    assert options_problem(parser.parse_args(["--nnodes", "2", "--master", "10.0.0.1:29500",
                                              "--rank", "1"])) is None
