"""Train or evaluate the Recurrent Attention Model: python main.py --help."""
import signal
import sys
import warnings

from utils import PipeSafeStream, fast_mkl_on_amd, usable_cores

fast_mkl_on_amd()  # before Paddle loads its MKL
warnings.filterwarnings("ignore", message="No ccache found")  # Paddle's import noise, irrelevant here
import paddle  # noqa: E402

from config import get_config  # noqa: E402
from data_loader import Canvases, DataError, get_test_loader, get_train_valid_loaders  # noqa: E402
from trainer import CheckpointError, RunError, Trainer  # noqa: E402


class Interrupted(Exception):
    """SIGINT or SIGTERM outside the training loop (whose own handler stops it after a step)."""


def interrupt(signum, frame):
    raise Interrupted(signum)


def main(config):
    for sig in (signal.SIGINT, signal.SIGTERM):  # and not Paddle's handler, or a traceback
        signal.signal(sig, interrupt)
    paddle.set_device("gpu" if config.use_gpu else "cpu")
    config.num_threads = config.num_threads or usable_cores()
    if not config.use_gpu:  # the CPU's maths library; a GPU run leaves it alone
        paddle.base.core.set_num_threads(config.num_threads)
    paddle.seed(config.random_seed)
    canvases = None
    if config.dataset != "mnist":
        canvases = Canvases(config.image_size, config.num_distractors, config.distractor_size,
                            config.dataset_seed, config.fresh_canvases)
    data = dict(canvases=canvases, cache_dir=config.cache_dir)
    try:
        # Adam's state is saved under Paddle's generated names (linear_0.w_0_moment1_0, ...):
        # a fresh name generator makes them the same in every run, even several in one process.
        with paddle.utils.unique_name.guard():
            if config.is_train:
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
                                                     config.num_workers, **data))
    except (DataError, CheckpointError) as err:
        sys.exit(f"[!] {err}")
    except RunError as err:
        print(f"[!] {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except Interrupted as err:
        signum = err.args[0]
        when = "before the first epoch" if config.is_train else "while testing"
        print(f"[!] stopped by {signal.Signals(signum).name} {when}; no checkpoint was written",
              file=sys.stderr)
        sys.exit(128 + signum)


if __name__ == "__main__":
    sys.stdout = PipeSafeStream(sys.stdout)  # `python main.py | head` must not end training
    main(get_config())
