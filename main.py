"""Train or evaluate the Recurrent Attention Model: python main.py --help."""
import sys

from utils import (PipeSafeStream, before_paddle, die_with_parent, exit_on_signals,
                   launch_machines, usable_cores, within)

before_paddle(hold_signals=__name__ == "__main__")  # until exit_on_signals, below
import paddle

from checkpoint import CheckpointError
from config import parse, processes_problem
from data_loader import DataError, load_splits
from trainer import RunError, Trainer


def main(config, tested=None):
    """Train, or test (the --checkpoint already read: tested), as config says."""
    processes = paddle.distributed.get_world_size()  # > 1 under paddle.distributed.launch
    if config.use_gpu:  # each process of a data-parallel run on a GPU of its own
        paddle.set_device(f"gpu:{paddle.distributed.ParallelEnv().device_id}")
    else:
        paddle.set_device("cpu")
    if processes > 1:
        die_with_parent()  # the launcher's death, even by kill -9, stops this worker too
        # Paddle waits for ever for a process that never starts (another machine's launcher
        # met with another --nnodes, then stopped). Other model options on another process
        # would abort both in its C++ at the first all-reduce, with no reason given: compare
        # them first.
        everyone = []
        with within(config.meet_timeout, f"the {processes} processes of this run had not all "
                    f"started within --meet_timeout {config.meet_timeout} s: see every "
                    f"machine's launcher output"):
            paddle.distributed.init_parallel_env()
            paddle.distributed.all_gather_object(everyone, vars(config))
        if problem := processes_problem(everyone):
            sys.exit(f"[!] {problem}")
    # The cores are shared among the processes of a data-parallel run.
    config.num_threads = config.num_threads or max(1, usable_cores() // processes)
    if not config.use_gpu:  # the CPU's maths library; a GPU run leaves it alone
        paddle.base.core.set_num_threads(config.num_threads)
    paddle.seed(config.random_seed)
    try:
        splits = load_splits(config)
        # Adam's state is saved under Paddle's generated names (linear_0.w_0_moment1_0, ...):
        # a fresh name generator makes them the same in every run, even several in one process.
        with paddle.utils.unique_name.guard():
            if config.is_train:
                Trainer(config).train(splits)
            else:
                Trainer(config).test(splits.test, tested)
    except (DataError, CheckpointError) as err:
        sys.exit(f"[!] {err}")
    except RunError as err:
        print(f"[!] {err}", file=sys.stderr)
        sys.exit(err.exit_code)


if __name__ == "__main__":
    sys.stdout = PipeSafeStream(sys.stdout)  # `python main.py | head` must not end training
    # Before training holds its folders (whose own handler then stops it after a step) or
    # while testing, nothing has been written: a signal leaves at once. An exception raised
    # instead could surface inside Paddle's C++ as another error.
    exit_on_signals("before training began or while testing: no file was changed")
    config, tested = parse()
    if config.nnodes > 1 and paddle.distributed.get_world_size() == 1:  # not yet launched
        launch_machines(config, sys.argv[1:], __file__)
    main(config, tested)
