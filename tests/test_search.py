"""search.py: a random search whose trials are normal runs scored on validation, shared by
several workers through one study, and carried on after a worker is killed."""
import glob
import itertools
import os
import signal
import subprocess
import sys
import time

import pytest

from search import duplicate_retries, smallest_valid_error, trials_wanted
from tests.helpers import MNIST_DIR, ROOT

TINY = ["--num_glimpses", "2", "--patch_size", "4", "--hidden_size", "32", "--glimpse_hidden", "16",
        "--loc_hidden", "16", "--train_subset", "300", "--valid_size", "0.2", "--epochs", "3",
        "--optimizer", "sgd", "--batch_size", "20", "--lr_schedule", "linear", "--data_dir",
        MNIST_DIR, "--use_gpu=False"]


def search(tmp_path, *extra):
    return [sys.executable, os.path.join(ROOT, "search.py"), "--study", "tiny", "--trials", "4",
            "--sample", "init_lr=1e-3:1e-1:log", "--sample", "std=0.05:0.3:log", "--heartbeat",
            "1", "--grace", "10", "--ckpt_dir", str(tmp_path), *extra, "--", *TINY]


def test_two_workers_share_a_study_and_a_killed_one_is_taken_up_without_repeating(tmp_path):
    subprocess.run(search(tmp_path, "--report"), check=True, capture_output=True, timeout=120)
    worker = [*search(tmp_path, "--child", "--threads", "1")]
    first = subprocess.Popen(worker[:-len(TINY) - 1] + ["--seed", "1", "--", *TINY],
                             start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while not glob.glob(str(tmp_path / "tiny" / "*" / "ckpt.pdparams")) and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)  # the worker and its trial's main.py, mid-trial
    first.wait(timeout=60)
    [killed] = glob.glob(str(tmp_path / "tiny" / "*" / "ckpt.pdparams"))
    time.sleep(11)  # past the grace period (long, for a loaded machine): its trial is taken as killed
    again = [subprocess.Popen(worker[:-len(TINY) - 1] + ["--seed", str(seed), "--", *TINY],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for seed in (1, 2)]
    codes = [process.wait(timeout=600) for process in again]
    assert codes == [0, 0], [process.stderr.read()[-1500:] for process in again]

    table = subprocess.run(search(tmp_path, "--report"), capture_output=True, text=True,
                           timeout=120).stdout
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| ") and
            line.split(" | ")[0][2:].isdigit()]
    complete = [row for row in rows if row[3] == "complete"]
    assert len(complete) == 4 and all(row[3] in ("complete", "fail") for row in rows), table
    # a worker started again with its seed draws new settings, not its first trial's again
    assert len({(row[1], row[2]) for row in complete}) == 4, table
    logs = sorted(glob.glob(str(tmp_path / "tiny" / "*" / "train.log")))
    assert len(logs) == 4  # the killed trial's run was resumed, not run again as a new one
    for log in logs:
        with open(log) as f:
            lines = f.read().splitlines()
        assert sum(line.startswith("# started") for line in lines) == 1, log
        epochs = [line.split()[1] for line in lines if line.startswith("epoch")]
        # A kill between an epoch's log line and its checkpoint repeats that line when the
        # run resumes (docs/reliability.md): the same epoch twice in a row, nothing else.
        assert [epoch for epoch, _ in itertools.groupby(epochs)] == ["1", "2", "3"], epochs
    with open(os.path.join(os.path.dirname(killed), "train.log")) as f:
        assert "# resumed after epoch" in f.read()
    # each trial's score is the smallest validation error of its own log
    scores = {f"{float(row[-1].strip(' |')):.2f}" for row in complete}
    assert scores == {f"{smallest_valid_error(log):.2f}" for log in logs}
    assert "[*] best: trial" in table and "python main.py" in table


def test_a_bad_sample_is_refused_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "search.py"), "--study", "x",
                           "--sample", "init_lr=0.1:0.01"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "low < high" in done.stderr


@pytest.mark.parametrize("option", ["--run_name", "--ckpt_dir", "--resume"])
def test_what_search_sets_itself_is_refused(tmp_path, option):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "search.py"), "--study", "x",
                           "--sample", "std=0.1:0.2", "--", option, "y"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "search.py's to set" in done.stderr


def test_ctrl_c_stops_the_search_in_one_line_and_keeps_the_trials_checkpoint(tmp_path):
    worker = subprocess.Popen(search(tmp_path), start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while not glob.glob(str(tmp_path / "tiny" / "*" / "ckpt.pdparams")) and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(worker.pid, signal.SIGINT)  # as Ctrl-C reaches the search and its trial
    _, stderr = worker.communicate(timeout=120)
    assert worker.returncode == 130 and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1].startswith("[!] search.py stopped by SIGINT")
    assert glob.glob(str(tmp_path / "tiny" / "*" / "ckpt.pdparams"))
    table = subprocess.run(search(tmp_path, "--report"), capture_output=True, text=True,
                           timeout=120).stdout
    assert "| 0 |" in table and "running" in table, table  # not failed: it is taken up again


def test_failing_trials_count_say_why_in_one_line_and_end_the_search(tmp_path):
    """A mistake in main.py's options fails every trial: the search ends after --trials of
    them (it ran for ever), each failure one line, and the table says why."""
    done = subprocess.run(search(tmp_path, "--trials", "2")[:-len(TINY)] + [*TINY, "--M", "0"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-500:]
    failures = [line for line in done.stderr.splitlines() if line.startswith("[!] trial")]
    assert len(failures) == 2 and "Traceback" not in done.stderr, done.stderr[-800:]
    assert done.stdout.count("| fail | main.py exited 2:") == 2, done.stdout
    again = subprocess.run(search(tmp_path, "--trials", "2")[:-len(TINY)] + [*TINY, "--M", "0"],
                           capture_output=True, text=True, timeout=300)
    assert "[!] trial" not in again.stderr  # a finished search runs no trial more


def test_a_killed_worker_of_the_budgets_last_trial_is_taken_up_again(tmp_path):
    """When the killed worker's trial was the last of --trials, a worker started after
    --grace resumes it (it found the budget full and ran nothing)."""
    one = search(tmp_path, "--trials", "1", "--grace", "2", "--threads", "1")
    first = subprocess.Popen(one, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while not glob.glob(str(tmp_path / "tiny" / "*" / "ckpt.pdparams")) and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    time.sleep(3)  # past the grace period
    again = subprocess.run(one, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-500:]
    [log] = glob.glob(str(tmp_path / "tiny" / "*" / "train.log"))
    with open(log) as f:
        assert "# resumed after epoch" in f.read()
    assert again.stdout.count("| complete |") == 1, again.stdout


def test_a_retry_queued_twice_runs_and_counts_once():
    """Two workers that fail the same stale trial at once each queue a retry (SQLite ignores
    the row lock by which Optuna prevents it): the second is a duplicate, neither run (the
    worker that draws it fails it in one line) nor counted against --trials."""
    import optuna
    from optuna.trial import TrialState

    study = optuna.create_study()
    std = {"std": optuna.distributions.FloatDistribution(0.05, 0.3)}
    study.add_trial(optuna.create_trial(state=TrialState.FAIL, params={"std": 0.1},
                                        distributions=std))
    for _ in range(2):  # both workers' retries of trial 0
        study.add_trial(optuna.create_trial(state=TrialState.WAITING, params={"std": 0.1},
                                            distributions=std,
                                            system_attrs={"failed_trial": 0, "retry_history": [0]}))
    assert duplicate_retries(study.trials) == {2}
    first_retry = study.trials[1]._trial_id
    study._storage.set_trial_state_values(first_retry, TrialState.RUNNING)
    study._storage.set_trial_state_values(first_retry, TrialState.COMPLETE, values=[5.0])
    assert not trials_wanted(study, 1)  # the budget's one trial is done; the duplicate waits in vain
