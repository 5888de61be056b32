"""Paddle's training and inference chain (test_tipc/), lite mode: train, evaluate, export and
predict, every step reported as run successfully."""
import contextlib
import os
import shutil
import subprocess

from tests.helpers import ROOT

CONFIG = "test_tipc/configs/RAM/train_infer_python.txt"


def test_the_lite_tipc_chain_runs_every_step_successfully():
    try:
        for script in ("prepare.sh", "test_train_inference_python.sh"):
            done = subprocess.run(["bash", f"test_tipc/{script}", CONFIG, "lite_train_lite_infer"],
                                  cwd=ROOT, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    finally:
        # The chain's own output (7 MB of checkpoints and logs), which its next run removes
        # first anyway: the suite leaves the checkout as it found it.
        shutil.rmtree(os.path.join(ROOT, "log", "RAM", "lite_train_lite_infer"), ignore_errors=True)
        with contextlib.suppress(OSError):  # log/RAM and log/, unless something else is there
            os.removedirs(os.path.join(ROOT, "log", "RAM"))
    steps = [line for line in done.stdout.splitlines() if "with command - " in line]
    assert len(steps) == 5 and all("Run successfully" in line for line in steps), done.stdout
    assert [step.split(" - python ")[1].split()[0] for step in steps] == [
        "main.py", "main.py", "export_model.py", "infer.py", "infer.py"]


def test_a_mode_or_model_name_that_walks_out_of_its_folder_is_refused_before_any_removal(tmp_path):
    """N5: MODE became part of the path the chain removes (../../results removed results/)."""
    for mode in ("../../results", "whole_infer/../.."):
        done = subprocess.run(["bash", "test_tipc/test_train_inference_python.sh", CONFIG, mode],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "MODE must be" in done.stderr
    config = tmp_path / "config.txt"
    with open(f"{ROOT}/{CONFIG}") as f:
        config.write_text(f.read().replace("model_name:RAM", "model_name:../../results", 1))
    done = subprocess.run(["bash", "test_tipc/test_train_inference_python.sh", str(config),
                           "whole_infer"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "model_name" in done.stderr
    assert os.path.isfile(f"{ROOT}/results/manifest.json")
