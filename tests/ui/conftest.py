"""The running service for the browser test; the start/stop helper lives in tests/monitoring."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def _service_process():
    # tests/ has no packages (no __init__.py), so the shared helper is loaded by path, once.
    if "service_process" not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "monitoring" / "service_process.py"
        spec = importlib.util.spec_from_file_location("service_process", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["service_process"] = module
        spec.loader.exec_module(module)
    return sys.modules["service_process"]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    helper = _service_process()
    reason = helper.missing_reason()
    if reason:
        pytest.fail(reason)  # the project's own service missing is a failure, not a skip
    with helper.running_service(tmp_path_factory.mktemp("service"), api_key="bb-test-key-browser") as svc:
        yield svc
