"""monitoring.metrics: names, bounded labels, what each helper records, and multiprocess mode."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from prometheus_client import REGISTRY

from monitoring import metrics


def value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    "path, label",
    [
        ("/consult", "/consult"),
        ("consult/", "/consult"),
        ("/consult_stream?x=1", "/consult_stream"),
        ("/v1/chat/completions", "/v1/chat/completions"),
        ("/ui/", "/ui"),
        ("/ui/gradio_api/queue/join", "/ui"),
        ("/cds-services/patient-view", "/cds-services/{id}"),
        ("/cds-services/order-sign/feedback", "/cds-services/{id}/feedback"),
        ("/cds-services/a/b/c", "other"),
        ("/patients/123456", "other"),
        ("/../../etc/passwd", "other"),
    ],
    ids=lambda v: str(v),
)
def test_endpoint_labels_are_bounded(path, label):
    assert metrics.normalize_endpoint(path) == label


def test_observe_request_counts_and_times_per_endpoint():
    before = value("balancedbio_requests_total", endpoint="/consult", status="200")
    hist_before = value("balancedbio_request_duration_seconds_count", endpoint="/consult")
    le_before = value("balancedbio_request_duration_seconds_bucket", endpoint="/consult", le="0.5")
    metrics.observe_request("/consult", 200, 0.3)
    metrics.observe_request("/consult", 200, 3.0)
    assert value("balancedbio_requests_total", endpoint="/consult", status="200") == before + 2
    assert value("balancedbio_request_duration_seconds_count", endpoint="/consult") == hist_before + 2
    assert value("balancedbio_request_duration_seconds_bucket", endpoint="/consult", le="0.5") == le_before + 1


def test_unknown_endpoint_and_status_fall_into_other():
    before = value("balancedbio_requests_total", endpoint="other", status="other")
    metrics.observe_request("/patient/Jane-Doe", 999, 0.01)
    assert value("balancedbio_requests_total", endpoint="other", status="other") == before + 1


def test_observe_generation_counts_tokens_and_time_per_token():
    tokens_before = value("balancedbio_generated_tokens_total")
    tpot_sum_before = value("balancedbio_time_per_output_token_seconds_sum")
    tpot_count_before = value("balancedbio_time_per_output_token_seconds_count")
    metrics.observe_generation(40, 2.0)
    assert value("balancedbio_generated_tokens_total") == tokens_before + 40
    assert value("balancedbio_time_per_output_token_seconds_count") == tpot_count_before + 1
    assert value("balancedbio_time_per_output_token_seconds_sum") == pytest.approx(tpot_sum_before + 0.05)


def test_zero_tokens_is_counted_without_a_time_per_token():
    count_before = value("balancedbio_time_per_output_token_seconds_count")
    responses_before = value("balancedbio_generated_tokens_per_response_count")
    metrics.observe_generation(0, 0.5)
    assert value("balancedbio_time_per_output_token_seconds_count") == count_before
    assert value("balancedbio_generated_tokens_per_response_count") == responses_before + 1


@pytest.mark.parametrize(
    "kind, severity, expected_kind, expected_severity",
    [
        ("interaction", "critical", "interaction", "critical"),
        ("Cross-Reactivity", "WARNING", "cross_reactivity", "warning"),
        ("safety_check_unavailable", "critical", "safety_check_unavailable", "critical"),
        ("patient 4711 name", "fatal", "other", "other"),
    ],
    ids=["known", "normalised", "fail-closed", "unknown"],
)
def test_record_finding(kind, severity, expected_kind, expected_severity):
    labels = {"kind": expected_kind, "severity": expected_severity}
    before = value("balancedbio_guardrail_findings_total", **labels)
    metrics.record_finding(kind, severity)
    assert value("balancedbio_guardrail_findings_total", **labels) == before + 1


def test_feedback_series_exist_before_any_feedback():
    metrics.record_error("internal")  # creates the metrics in this process
    for outcome in metrics.FEEDBACK_OUTCOMES:
        assert REGISTRY.get_sample_value("balancedbio_feedback_total", {"outcome": outcome}) is not None


@pytest.mark.parametrize(
    "outcome, correct, label, graded",
    [
        ("accept", True, "accept", "true"),
        ("override", False, "override", "false"),
        ("edit", None, "edit", None),
        ("shrug", None, "other", None),
    ],
    ids=["accept-correct", "override-incorrect", "edit-ungraded", "unknown"],
)
def test_record_feedback(outcome, correct, label, graded):
    before = value("balancedbio_feedback_total", outcome=label)
    graded_before = {c: value("balancedbio_feedback_graded_total", correct=c) for c in ("true", "false")}
    metrics.record_feedback(outcome, correct)
    assert value("balancedbio_feedback_total", outcome=label) == before + 1
    for c in ("true", "false"):
        expected = graded_before[c] + (1 if c == graded else 0)
        assert value("balancedbio_feedback_graded_total", correct=c) == expected


def test_record_feedback_rejects_a_non_boolean_correct():
    with pytest.raises(ValueError, match="True, False or None"):
        metrics.record_feedback("accept", "yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind, label", [("storage", "storage"), ("guardrail-unavailable", "guardrail_unavailable"),
                                         ("KeyError: 'Jane'", "other")], ids=["known", "normalised", "unknown"])
def test_record_error(kind, label):
    before = value("balancedbio_errors_total", kind=label)
    metrics.record_error(kind)
    assert value("balancedbio_errors_total", kind=label) == before + 1


def test_model_info_keeps_one_current_version():
    metrics.set_model_info("base-smollm2-135m", aligned=False)
    assert value("balancedbio_model_info", version="base-smollm2-135m", aligned="false") == 1
    metrics.set_model_info("run-20261201", aligned=True)
    assert value("balancedbio_model_info", version="run-20261201", aligned="true") == 1
    assert value("balancedbio_model_info", version="base-smollm2-135m", aligned="false") == 0


def test_eval_score_is_a_gauge_per_model_version_and_metric():
    metrics.set_eval_score("run-20261201", "integration", 0.25)
    metrics.set_eval_score("run-20261201", "integration", 0.5)
    assert value("balancedbio_eval_score", model_version="run-20261201", metric="integration") == 0.5


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: metrics.observe_request("/consult", 200, -1), "non-negative"),
        (lambda: metrics.observe_generation(-3, 1.0), "non-negative"),
        (lambda: metrics.observe_generation(3, float("nan")), "non-negative"),
        (lambda: metrics.set_eval_score("run 1; drop", "integration", 0.1), "short label value"),
        (lambda: metrics.set_eval_score("run1", "Integration Score", 0.1), "snake_case"),
        (lambda: metrics.set_eval_score("run1", "integration", float("nan")), "NaN"),
        (lambda: metrics.set_model_info("", aligned=True), "short label value"),
    ],
    ids=["negative-seconds", "negative-tokens", "nan-seconds", "bad-version", "bad-metric", "nan-score",
         "empty-version"],
)
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_metrics_land_in_the_multiprocess_directory(tmp_path):
    """What BentoML does: workers write to PROMETHEUS_MULTIPROC_DIR, /metrics reads them all back."""
    script = textwrap.dedent(
        """
        from monitoring import metrics
        metrics.observe_request("/feedback", 200, 0.01)
        metrics.record_feedback("accept", True)
        metrics.set_model_info("run-x", aligned=True)
        metrics.set_eval_score("run-x", "integration", 0.75)
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):  # two "workers"
        subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)

    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    assert registry.get_sample_value("balancedbio_requests_total", {"endpoint": "/feedback", "status": "200"}) == 2
    assert registry.get_sample_value("balancedbio_feedback_total", {"outcome": "accept"}) == 2
    assert registry.get_sample_value("balancedbio_feedback_graded_total", {"correct": "true"}) == 2
    assert registry.get_sample_value("balancedbio_eval_score", {"model_version": "run-x", "metric": "integration"}) == 0.75
    # livemax: processes that exited without mark_process_dead still count; the value is the max, 1.
    assert registry.get_sample_value("balancedbio_model_info", {"version": "run-x", "aligned": "true"}) == 1
