"""Shared fixtures. Tests never reach the hub: HF_HUB_OFFLINE is set before anything imports it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from shared_data import ALLOW_MISSING_DATA, SHARED_DATA, missing_data_message, require  # noqa: E402

TEST_DATA = Path(__file__).resolve().parent / "data"


def pytest_configure(config):
    """A missing data folder fails the run in one line, instead of a third of the suite skipping."""
    message = missing_data_message()
    if message and not ALLOW_MISSING_DATA:
        raise pytest.UsageError(message)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (skips only when the run opted out with BALANCEDBIO_ALLOW_MISSING_DATA=1)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(missing_data_message())
    return SHARED_DATA


@pytest.fixture
def shared_file():
    """Path of a file of the workspace's third-party data (see shared_data.require)."""

    def find(relative: str) -> Path:
        return require(SHARED_DATA / relative)

    return find


@pytest.fixture(scope="session")
def embedded_lm():
    """The embedded SmolLM2-135M-Instruct behind the evaluator's interface, loaded once."""
    from training.evaluate.lm import load_language_model

    return load_language_model("smollm2-135m", progress=False)


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory):
    """A throw-away BALANCEDBIO_CACHE for the tests of one module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BALANCEDBIO_CACHE", str(tmp_path_factory.mktemp("bb_cache")))
        yield
