"""Shared fixtures. Tests never reach the hub: HF_HUB_OFFLINE is set before anything imports it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = Path(__file__).resolve().parent / "data"
SHARED_DATA = Path(os.environ.get("BALANCEDBIO_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture
def shared_file():
    """Path of a file of the workspace's third-party data; skips the test, saying why, when absent."""

    def find(relative: str) -> Path:
        path = SHARED_DATA / relative
        if not path.exists():
            pytest.skip(f"{path} is not here (set BALANCEDBIO_DATA to the shared data folder)")
        return path

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
