"""The paper's random search (section 4.1: "hyperparameters such as the initial learning rate and
the variance of the location policy were selected using random search"), on Optuna.

    python search.py --study sgd28 --trials 20 --workers 2 \
        --sample init_lr=0.001:0.3:log --sample std=0.03:0.3:log \
        -- --config configs/mnist_sgd.toml --epochs 10

Each trial is a normal run of main.py (the options after `--`, then the trial's sampled ones),
named <study>-t<number>, in <ckpt_dir>/<study>/<run name>/; its score is the smallest
validation error (valid_err) of its train.log, never a test figure. The study lives in
<ckpt_dir>/<study>/study.db (SQLite) unless --storage names a database that workers on
several machines share (e.g. postgresql://user:password@host/db). A killed worker's trial is
taken up again by the next worker to start (Optuna's heartbeat: after --grace seconds), which
resumes its run from its last checkpoint; a finished trial is never run again. The end: a
table of the trials and the command that trains the best one.
"""
import argparse
import os
import shlex
import shutil
import subprocess
import sys
import warnings

from utils import usable_cores

MAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "main.py")


def parse_sample(text):
    """'name=low:high[:log]' -> (name, low, high, log)."""
    try:
        name, bounds = text.split("=", 1)
        parts = bounds.split(":")
        low, high = float(parts[0]), float(parts[1])
        log = parts[2:] == ["log"]
        if parts[2:] not in ([], ["log"]) or not low < high or (log and low <= 0):
            raise ValueError
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"expected name=low:high or name=low:high:log with low < "
                                         f"high (and low > 0 with log), got {text!r}") from None
    return name, low, high, log


def smallest_valid_error(log):
    """The smallest valid_err of a train.log, or None when no epoch ended."""
    errors = []
    with open(log, errors="replace") as f:
        for line in f:
            words = line.split()
            if line.startswith("epoch ") and "valid_err" in words:
                errors.append(float(words[words.index("valid_err") + 1]))
    return min(errors) if errors else None


def trial_run(args, number, params):
    """main.py's command line for trial `number` with `params`, its run name and folder."""
    name = f"{args.study}-t{number}"
    folder = os.path.join(args.ckpt_dir, args.study)
    sampled = [item for key, value in params.items() for item in (f"--{key}", repr(value))]
    command = [sys.executable, MAIN, *args.main_args, *sampled, "--run_name", name,
               "--ckpt_dir", folder, "--num_threads", str(args.threads)]
    return command, os.path.join(folder, name)


def objective(args):
    def run(trial):
        import optuna

        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        trials = trial.study.get_trials(deepcopy=False)
        frozen = next(t for t in trials if t.number == trial.number)
        first = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
        if trial.number in duplicate_retries(trials):
            failure = f"a second retry of trial {first}, not run: two workers took it up at once"
            print(f"[!] trial {trial.number}: {failure}", file=sys.stderr)
            trial.set_user_attr("failure", failure)
            return float("nan")
        number = trial.number if first is None else first  # a retried trial resumes the run
        params = {name: trial.suggest_float(name, low, high, log=log)
                  for name, low, high, log in args.sample}
        command, folder = trial_run(args, number, params)
        if os.path.exists(os.path.join(folder, "ckpt.pdparams")):
            command += ["--resume=True", "--best=False"]
        elif os.path.isdir(folder):  # this trial's own start, killed before its first epoch
            shutil.rmtree(folder)  # ended: nothing to resume, and main.py keeps what is there
        trial.set_user_attr("run", folder)
        try:
            done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True)
        except KeyboardInterrupt:  # Ctrl-C: it reached the trial's main.py too
            stopped(args)
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or ["no message"]
            failure = f"main.py exited {done.returncode}: {lines[-1]}"
        else:
            error = smallest_valid_error(os.path.join(folder, "train.log"))
            failure = "its log has no validation error" if error is None else None
        if failure:  # a failed trial (Optuna's word for a NaN score), said in one line
            print(f"[!] trial {number} failed: {failure}", file=sys.stderr)
            trial.set_user_attr("failure", failure)
            return float("nan")
        return error
    return run


def duplicate_retries(trials):
    """The numbers of the retries that repeat an earlier one. Two workers that start at once
    can both fail the same stale trial and each queue a retry: Optuna keeps that from
    happening by locking the trial's row, which SQLite ignores. Only the first retry runs
    and counts."""
    seen, duplicates = set(), set()
    for trial in sorted(trials, key=lambda trial: trial.number):
        history = tuple(trial.system_attrs.get("retry_history", ()))
        if history in seen:
            duplicates.add(trial.number)
        elif history:
            seen.add(history)
    return duplicates


def trials_wanted(study, budget):
    """Whether the study wants a trial more: fewer than `budget` count (all but those failed
    by a killed worker and taken up again by a retry, which counts in their place, and the
    duplicate retries), or a retry waits to be run."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    not_counted = ({trial.system_attrs.get("failed_trial") for trial in trials}
                   | duplicate_retries(trials))
    counted = [trial for trial in trials if trial.number not in not_counted]
    return len(counted) < budget or any(trial.state == TrialState.WAITING for trial in counted)


def stopped(args):
    """End this worker at once on Ctrl-C, as a kill would: its trial stays `running` in the
    study (Optuna would mark it failed, never to be taken up again), so that the next worker
    to start takes it up after --grace seconds and resumes its run from its checkpoint."""
    if not args.child:
        print("[!] search.py stopped by SIGINT; a trial under way resumes from its last "
              "checkpoint when a worker starts again (after --grace seconds)", file=sys.stderr)
    sys.stderr.flush()
    os._exit(130)


def study_of(args):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # The heartbeat and the retry are Optuna's "experimental" features, used as documented.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = args.storage or f"sqlite:///{os.path.join(args.ckpt_dir, args.study, 'study.db')}"
    os.makedirs(os.path.join(args.ckpt_dir, args.study), exist_ok=True)
    storage = optuna.storages.RDBStorage(
        storage, heartbeat_interval=args.heartbeat, grace_period=args.grace,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
        engine_kwargs={"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else None)
    study = optuna.create_study(study_name=args.study, storage=storage, direction="minimize",
                                load_if_exists=True)
    # Seeded by --seed and the trials the study already holds: a worker started again draws
    # new settings (with --seed alone it would draw its first trials' settings again).
    seed = args.seed + 1000 * len(study.trials)
    study.sampler = (optuna.samplers.TPESampler(seed=seed) if args.sampler == "tpe"
                     else optuna.samplers.RandomSampler(seed=seed))
    return study


def work(args):
    """One worker: run trials until the study holds --trials, done, failed or under way."""
    import optuna

    study = study_of(args)

    def stop_when_enough(study, trial):
        if not trials_wanted(study, args.trials):
            study.stop()

    # Every trial counts once, failed ones too (a mistake in main.py's options fails them
    # all); a killed worker's trial, past --grace, is taken up again by a retry, even when
    # it was the budget's last.
    optuna.storages.fail_stale_trials(study)
    if trials_wanted(study, args.trials):
        study.optimize(objective(args), callbacks=[stop_when_enough])


def report(args):
    """The trials as a table, and the command that trains the best one."""
    from optuna.trial import TrialState

    study = study_of(args)
    names = [name for name, *_ in args.sample]
    print("| trial | " + " | ".join(names) + " | state | smallest valid_err |")
    print("| --- | " + " | ".join("---" for _ in names) + " | --- | --- |")
    for trial in study.trials:
        values = " | ".join(f"{trial.params[name]:.4g}" if name in trial.params else "" for name in names)
        score = (f"{trial.value:.2f}" if trial.state == TrialState.COMPLETE
                 else trial.user_attrs.get("failure", ""))
        print(f"| {trial.number} | {values} | {trial.state.name.lower()} | {score} |")
    done = [trial for trial in study.trials if trial.state == TrialState.COMPLETE]
    if done:
        best = min(done, key=lambda trial: trial.value)
        command = [arg for arg in args.main_args] + [
            item for key, value in best.params.items() for item in (f"--{key}", repr(value))]
        print(f"[*] best: trial {best.number}, valid_err {best.value:.2f}; train it with:\n"
              f"    python main.py {shlex.join(command)}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    ours, main_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="after --: main.py's options, the same in every trial")
    parser.add_argument("--study", required=True, help="the study's name, and its trials' prefix")
    parser.add_argument("--trials", type=int, default=20, help="trials in the whole study")
    parser.add_argument("--sample", type=parse_sample, action="append", required=True,
                        metavar="NAME=LOW:HIGH[:log]",
                        help="an option of main.py to sample, uniformly or log-uniformly")
    parser.add_argument("--workers", type=int, default=1, help="trials at once on this machine")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads of each trial's main.py (0: the cores shared by the workers)")
    parser.add_argument("--sampler", choices=["random", "tpe"], default="random",
                        help="random: the paper's random search; tpe: Optuna's TPE")
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    parser.add_argument("--storage", default=None,
                        help="a database URL that workers on several machines share "
                             "(default: SQLite in <ckpt_dir>/<study>/study.db)")
    parser.add_argument("--ckpt_dir", default="ckpt", help="where the study's runs are kept")
    parser.add_argument("--heartbeat", type=int, default=10,
                        help="seconds between a trial's signs of life")
    parser.add_argument("--grace", type=int, default=60,
                        help="seconds without one after which a trial is taken as killed")
    parser.add_argument("--report", action="store_true", help="only print the table")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # a worker of --workers
    args = parser.parse_args(ours)
    args.main_args = main_args
    if not 1 <= args.trials <= 10_000 or not 1 <= args.workers <= 64:
        parser.error("--trials must be 1 to 10000 and --workers 1 to 64")
    if any(arg in main_args for arg in ("--run_name", "--ckpt_dir", "--resume", "--is_train")):
        parser.error("--run_name, --ckpt_dir, --resume and --is_train are search.py's to set")
    args.threads = args.threads or max(1, usable_cores() // args.workers)
    if not args.report:
        if args.workers == 1:
            work(args)
        else:  # each worker a process of its own, sharing the study through its storage
            study_of(args)  # made once: workers making a new database at once would collide
            me = [sys.executable, os.path.abspath(__file__), *ours, "--workers", "1", "--threads",
                  str(args.threads), "--child"]
            # a seed each, so that two workers never draw the same settings (up to 1000 workers)
            workers = [subprocess.Popen(me + ["--seed", str(args.seed + i), "--", *main_args])
                       for i in range(args.workers)]
            try:
                codes = [worker.wait() for worker in workers]
            except KeyboardInterrupt:  # each worker got it too, and ends as stopped() says
                for worker in workers:
                    worker.wait()
                stopped(args)
            if any(codes):
                sys.exit(f"[!] workers exited {codes}")
    if not args.child:
        report(args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # between trials: no run was under way
        sys.exit("[!] search.py stopped by SIGINT between trials")
