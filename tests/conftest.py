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


# End-to-end tests are the ones over real processes: a `bentoml serve` (server, serve, service,
# trained_server), a browser, Prometheus, PostgreSQL, a training run killed and resumed. They are
# marked `e2e` by the fixtures they use, so a new test over these fixtures is marked too; they run by
# default (`-m e2e` runs only them, `-m "not e2e"` leaves them out).
E2E_FIXTURES = {"server", "serve", "service", "trained_server", "browser", "prometheus", "postgresql",
                "resumed_run"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        callspec = getattr(item, "callspec", None)
        parametrized = set(callspec.params) if callspec else set()  # a test argument merely named "service"
        if E2E_FIXTURES & (set(getattr(item, "fixturenames", ())) - parametrized):
            item.add_marker(pytest.mark.e2e)


def pytest_report_header(config):
    from system_programs import in_ci, missing

    packages = missing()
    if not packages:
        return None
    verdict = "they fail under CI" if in_ci() else "their tests skip"
    return f"end-to-end programs missing ({verdict}): apt-get install -y {' '.join(packages)}"
