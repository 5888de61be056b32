"""Train or evaluate the Recurrent Attention Model: python main.py --help."""
import sys

from utils import PipeSafeStream, before_paddle, die_with_parent, exit_on_signals, usable_cores

before_paddle(hold_signals=__name__ == "__main__")  # until exit_on_signals, below
import paddle

from catch import FixedGames, TrainingGames
from checkpoint import CheckpointError
from config import parse
from data_loader import (Canvases, DataError, Folder, get_test_loader,
                         get_train_valid_loaders)
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
        paddle.distributed.init_parallel_env()
    # The cores are shared among the processes of a data-parallel run.
    config.num_threads = config.num_threads or max(1, usable_cores() // processes)
    if not config.use_gpu:  # the CPU's maths library; a GPU run leaves it alone
        paddle.base.core.set_num_threads(config.num_threads)
    paddle.seed(config.random_seed)
    canvases = folder = None
    if config.dataset == "folder":
        folder = Folder(config.classes, config.channels, config.image_size)
    elif config.dataset != "mnist":
        canvases = Canvases(config.image_size, config.num_distractors, config.distractor_size,
                            config.dataset_seed, config.fresh_canvases)
    data = dict(canvases=canvases, cache_dir=config.cache_dir, folder=folder)
    if config.dataset == "catch":  # games to play instead of images
        games = (TrainingGames(config.batch_size, config.epoch_frames, config.random_seed,
                               config.train_paths),
                 FixedGames(config.valid_games, config.batch_size, config.dataset_seed, split=1))
        test_games = FixedGames(config.test_games, config.batch_size, config.dataset_seed, split=2)
    try:
        # Adam's state is saved under Paddle's generated names (linear_0.w_0_moment1_0, ...):
        # a fresh name generator makes them the same in every run, even several in one process.
        with paddle.utils.unique_name.guard():
            if config.dataset == "catch" and config.is_train:
                Trainer(config).train(*games, test_games if config.test_freq else None)
            elif config.dataset == "catch":
                Trainer(config).test(test_games, tested)
            elif config.is_train:
                loaders = get_train_valid_loaders(
                    config.data_dir, config.batch_size, config.random_seed, config.valid_size,
                    config.shuffle, config.num_workers, config.train_subset, **data)
                test_loader = None
                if config.test_freq:
                    test_loader = get_test_loader(config.data_dir, config.batch_size,
                                                  config.num_workers, **data)
                Trainer(config).train(*loaders, test_loader)
            else:
                Trainer(config).test(get_test_loader(config.data_dir, config.batch_size,
                                                     config.num_workers, **data), tested)
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
    main(*parse())
