import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def pytest_addoption(parser):
    parser.addoption("--all-results", action="store_true",
                     help="re-test every row of results/manifest.json in full, not a few")


def pytest_configure(config):
    config.addinivalue_line("filterwarnings", "ignore:No ccache found")
    # Tests that train in this process, one thread each: README's command runs two test
    # processes (-n 2) on two cores, and more threads than cores make both crawl.
    import paddle
    paddle.base.core.set_num_threads(1)
