"""Paddle's training and inference chain (test_tipc/), lite mode: train, evaluate, export and
predict, every step reported as run successfully."""
import subprocess

from tests.helpers import ROOT

CONFIG = "test_tipc/configs/RAM/train_infer_python.txt"


def test_the_lite_tipc_chain_runs_every_step_successfully():
    for script in ("prepare.sh", "test_train_inference_python.sh"):
        done = subprocess.run(["bash", f"test_tipc/{script}", CONFIG, "lite_train_lite_infer"],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    steps = [line for line in done.stdout.splitlines() if "with command - " in line]
    assert len(steps) == 5 and all("Run successfully" in line for line in steps), done.stdout
    assert [step.split(" - python ")[1].split()[0] for step in steps] == [
        "main.py", "main.py", "export_model.py", "infer.py", "infer.py"]
