"""results/: every published row's command prints its manifest figure, and each row
holds what the manifest promises. The suite re-tests a few rows in full; all of them:

    python -m pytest -q tests/test_results.py --all-results
"""
import glob
import json
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import paddle
import pytest

from tests.helpers import ROOT
from checkpoint import DIGEST, STATE_DIGEST, TEST_KEYS, logged_options, results_page
from config import FIELDS, NOT_RECIPE, get_config, run_name

with open(os.path.join(ROOT, "results", "manifest.json")) as f:
    ROWS = json.load(f)
KEYS = {"task", "image_size", "num_distractors", "num_glimpses", "model", "seed", "test_error",
        "checkpoint", "command", "recipe"}
HEADLINE = "results/mnist/ram_6_8x8_1-4d1b59/model.pdparams"  # 28x28, 6 glimpses: the README's
# The headline 28x28 row, the glimpse table's 6-glimpse row and the converted PyTorch model,
# a few seconds: the canvas rows take 20 to 30 s each, which the suite's 5 minutes cannot
# spare; --all-results runs them (do, after any change to the retina or the canvases).
QUICK = {HEADLINE, "results/mnist/ram_6_8x8_1/model.pdparams",
         "results/mnist/ram_6_8x8_1_converted/model.pdparams"}


@pytest.mark.parametrize("row", ROWS, ids=[row["checkpoint"] for row in ROWS])
def test_each_rows_recipe_trains_with_the_options_of_its_log(row):
    """configs/<recipe>.toml, as main.py reads it, gives every option of what the row's run
    trained (its log's first line; where and how it ran aside) the value it had then."""
    if row["recipe"] is None:  # not trained by main.py
        assert "PyTorch" in row["note"]
        return
    logged = logged_options(row)
    recipe = vars(get_config(["--config", os.path.join(ROOT, row["recipe"]), "--use_gpu=False"]))
    differing = {name: (logged[name], recipe[name]) for name in FIELDS
                 if name not in NOT_RECIPE and logged.get(name) != recipe[name]}
    assert not differing, differing


def test_every_recipe_reads_and_names_its_run_after_itself():
    for path in glob.glob(os.path.join(ROOT, "configs", "*.toml")):
        config = get_config(["--config", path, "--use_gpu=False"])
        assert run_name(config) == os.path.basename(path)[:-len(".toml")]


@pytest.mark.parametrize("row", ROWS, ids=[row["checkpoint"] for row in ROWS])
def test_each_row_holds_a_weights_only_checkpoint_its_log_and_its_result(row):
    assert KEYS <= set(row), KEYS - set(row)
    folder = os.path.join(ROOT, os.path.dirname(row["checkpoint"]))
    state = paddle.load(os.path.join(ROOT, row["checkpoint"]))
    # no optimizer state (model_args and the digest of all it holds: rows from 2026-12-05 on)
    assert set(state) - {DIGEST, STATE_DIGEST, "model_args"} == set(TEST_KEYS)
    # weights_only's float16
    assert {str(value.dtype) for value in state["model"].values()} == {"paddle.float16"}
    config = state["config"]
    assert (config.get("image_size", 28), config.get("dataset", "mnist")) == (row["image_size"],
                                                                               row["task"])
    # a baseline takes no glimpses, the game's agent one a frame: null in the manifest
    if config.get("model", "ram") == "ram" and config.get("dataset") != "catch":
        assert config["num_glimpses"] == row["num_glimpses"]
    # The paper's model is "ram"; a baseline or variant is named by what the options make it.
    model = config.get("model", "ram")
    model = f"fc{config['fc_hidden']}" if model == "fc" else model
    core = config.get("core", "rnn")  # the paper's rectifier core is unnamed; an LSTM core is "_lstm"
    assert row["model"] == (model + ("" if core == "rnn" else "_" + core)
                            + ("_random" if config.get("random_glimpses") else ""))
    with open(os.path.join(folder, "test.json")) as f:
        result = json.load(f)
    game = row["task"] == "catch"  # 10,000 test games played, no glimpse paths to average
    assert (result["test_error"], result["M"], result["total"]) == (row["test_error"],
                                                                    None if game else 10, 10000)
    if game:
        assert result["catch_rate"] == row["catch_rate"] == round(100 - row["test_error"], 4)
    assert result["epoch"] == state["epoch"]
    assert os.path.getsize(os.path.join(folder, "train.log")) > 0
    assert shlex.split(row["command"])[:2] == ["python", "main.py"]
    assert "--checkpoint " + row["checkpoint"] in row["command"]


def test_the_manifest_holds_the_papers_tables_rows():
    assert sorted(r["num_glimpses"] for r in ROWS if r["task"] == "mnist"
                  and r.get("note", "").startswith("the 28x28 table")) == [2, 3, 4, 5, 6, 7]
    assert {(r["task"], r["image_size"]) for r in ROWS} >= {("translated", 60), ("cluttered", 60),
                                                             ("cluttered", 100), ("catch", 24)}


def pages():
    """The README and every page of docs/, by file name: their text."""
    texts = {}
    for page in ["README.md"] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))):
        with open(os.path.join(ROOT, page)) as f:
            texts[os.path.basename(page)] = f.read()
    return texts


def test_every_figure_linked_to_a_row_is_its_manifest_figure_and_every_row_is_shown():
    """A row re-tested or replaced must not leave an old figure on the front page or in the
    docs: each `[figure](results/<row folder>)` link shows that row's manifest figure."""
    figures = {os.path.dirname(row["checkpoint"]): row.get("catch_rate", row["test_error"])
               for row in ROWS}  # the game's row shows its catch rate
    link = re.compile(r"\[\**([0-9]+\.[0-9]+)\**\]\((?:\.\./)?(results/[^)#]+?)/?\)")
    texts = pages()
    linked = [(page, m.group(2), float(m.group(1))) for page, text in texts.items()
              for m in link.finditer(text) if m.group(2) in figures]
    assert len(linked) > len(figures) / 2  # the tables link most rows: the pattern still fits
    assert [(page, folder, figure) for page, folder, figure in linked
            if figure != figures[folder]] == []
    unnamed = [folder for folder in figures if not any(folder in text for text in texts.values())]
    assert unnamed == []


def test_every_results_path_the_pages_name_exists():
    """A log moved or taken out of the tree must not leave its old path in the README or the
    docs. Templates (`<row>`, `seed*`) are not paths; `git show <rev>:results/...` names a file
    of git's history on purpose."""
    path = re.compile(r"(?<![:\w/.])(?:\.\./)?(results/[\w./<>*+-]*[\w/*])")
    missing = [(page, named) for page, text in pages().items()
               for named in sorted({m.group(1) for m in path.finditer(text)})
               if not any(c in named for c in "<>*")
               and not os.path.exists(os.path.join(ROOT, named))]
    assert missing == []


def rerun(index_row, tmp_path):
    """The row's command as a fresh clone runs it, its JSON written under tmp_path."""
    index, row = index_row
    argv = shlex.split(row["command"])
    return subprocess.run([sys.executable, *argv[1:], "--num_threads", "1", "--use_gpu=False",
                           "--logs_dir", str(tmp_path / str(index))], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_published_commands_print_their_figures(tmp_path, request):
    rows = [r for r in ROWS if request.config.getoption("--all-results") or r["checkpoint"] in QUICK]
    # Two at a time, one thread each: on two cores, less time in all than one after another.
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda item: rerun(item, tmp_path), enumerate(rows)))
    printed = re.compile(r"\[\*\] (?:Test Acc|Catch rate): (\d+)/10000 \(\d+\.\d\d%")
    off = []
    for row, run in zip(rows, runs):
        assert run.returncode == 0, (row["checkpoint"], run.stderr)
        found = printed.search(run.stdout)
        assert found, (row["checkpoint"], run.stdout[-300:])
        correct = int(found.group(1))
        # Bit for bit, but for the other counts a row documents (also_prints) with the CPU
        # code path that prints them (docs/reliability.md: the 6-glimpse 100x100 row prints
        # 9177 for 9176 on an AMD EPYC with MKL's AVX2 path): no other difference passes.
        if (correct != round(10000 * (1 - row["test_error"] / 100))
                and str(correct) not in row.get("also_prints", {})):
            off.append((row["checkpoint"], row["test_error"], found.group(0)))
    assert off == []
    for index in range(len(rows)):  # the result went to --logs_dir, not beside the checkpoint
        assert [p.name for p in (tmp_path / str(index)).iterdir()][0].endswith("_test.json")
    headline = next(r for r in ROWS if r["checkpoint"] == HEADLINE)
    assert headline["test_error"] <= 1.12  # the paper's NIPS figure for 6 glimpses


def test_the_results_page_is_the_manifest_as_checkpoint_py_prints_it():
    """docs/results.md is generated (python checkpoint.py --page): a row published, re-tested
    or removed shows there only when the page is made again."""
    with open(os.path.join(ROOT, "docs", "results.md")) as f:
        assert f.read() == results_page(ROWS)


def test_the_results_page_gives_each_row_its_training_and_the_papers_procedure_its_sentence():
    """Each row's training cell is its log's optimizer, rate, schedule and batch; each row
    trained by SGD (the paper's procedure) gets a sentence beside the best Adam row of its task."""
    page = results_page(ROWS)
    sgd_rows = [row for row in ROWS if (logged_options(row) or {}).get("optimizer") == "sgd"]
    assert sgd_rows, "no row trained by the paper's procedure"
    for row in sgd_rows:
        options = logged_options(row)
        assert f"SGD {options['init_lr']:.2g}, linear, batch {options['batch_size']}" in page
        assert f"{row['num_glimpses']} glimpses: {row['test_error']:.2f}, against the paper's" in page
    headline = next(r for r in ROWS if r["checkpoint"] == HEADLINE)
    assert f"Adam {logged_options(headline)['init_lr']:.2g}, cosine, batch 128" in page
