"""The running service for the Prometheus scrape test (see service_process.py)."""

from __future__ import annotations

import pytest

import service_process


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    reason = service_process.missing_reason()
    if reason:
        pytest.fail(reason)  # the project's own service missing is a failure, not a skip
    with service_process.running_service(tmp_path_factory.mktemp("service"), api_key="bb-test-key-prometheus") as svc:
        yield svc
