import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def pytest_addoption(parser):
    parser.addoption("--all-results", action="store_true",
                     help="re-test every row of results/manifest.json in full, not a few")


def pytest_configure(config):
    config.addinivalue_line("filterwarnings", "ignore:No ccache found")
