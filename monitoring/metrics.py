"""Every Prometheus metric of the BalancedBio stack, and the helpers that record them.

Dashboards (``deploy/grafana``) and alert rules (``deploy/prometheus``) refer only to the names
defined here; ``tests/deploy`` checks that. Naming follows Prometheus conventions: a
``balancedbio_`` prefix, base units in the name (``_seconds``), ``_total`` on counters.

Labels are bounded: endpoints, error kinds, finding kinds and feedback outcomes are checked
against the sets below and anything else is counted as ``"other"``, so a caller (or an attacker
choosing URLs) cannot create unbounded series. No label ever carries a patient, user, key or
consult id.

How the metrics reach ``/metrics`` under ``bentoml serve`` (BentoML 1.4.39)
---------------------------------------------------------------------------
BentoML runs the service in worker processes and sets ``PROMETHEUS_MULTIPROC_DIR`` in each
worker's environment (``bentoml.serving.ensure_prometheus_dir`` / the circus watcher env).
``prometheus_client`` picks its value store when it is first imported
(``prometheus_client.values.ValueClass``): with that variable set, every metric object writes its
samples to mmap files in that directory. The service's ``/metrics`` route
(``_bentoml_impl.server.app`` -> ``PrometheusClient.generate_latest``) builds a fresh registry with
``prometheus_client.multiprocess.MultiProcessCollector`` over that directory, so any metric that
a worker creates with plain ``prometheus_client`` shows up there next to BentoML's own
``bentoml_*`` series; nothing has to be registered with BentoML (``bentoml.metrics`` is only a
deprecated lazy alias of ``prometheus_client``). Two consequences shape this module:

* the metric objects (and the ``prometheus_client`` import) are created lazily, on the first
  helper call inside the worker, never at import time in whichever process imports the service
  first; ``serving/service.py`` just imports this module and calls the helpers;
* gauges need a ``multiprocess_mode``: model info uses ``livemax`` (a dead worker's value goes),
  evaluation scores ``mostrecent`` (the last value written by any process wins).

Outside BentoML (unit tests, ``python -m ui``) the same objects live in the default
``prometheus_client.REGISTRY``.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from typing import Any

PREFIX = "balancedbio"
OTHER = "other"

# Routes of serving/service.py (the HTTP contract of issues 5-7). Parametrised routes are
# collapsed to their template so an id in a URL never becomes a label value.
ENDPOINTS = frozenset({
    "/v1/chat/completions", "/v1/models", "/consult", "/consult_stream", "/feedback",
    "/cds-services", "/cds-services/{id}", "/cds-services/{id}/feedback",
    "/livez", "/readyz", "/metrics", "/ui",
})
FEEDBACK_OUTCOMES = ("accept", "override", "edit")
SEVERITIES = ("info", "warning", "critical")
# Guardrail finding kinds (clinical/guardrails/, issue 6: the `kind` of its Finding).
# ``safety_check_unavailable`` is the fail-closed finding a guardrail emits when it errors; the
# alert BalancedBioSafetyCheckUnavailable keys on it and on record_error("guardrail_unavailable")
# (wired through clinical.guardrails.models.add_listeners by the service).
FINDING_KINDS = frozenset({
    "allergy", "cross_reactivity", "interaction", "contraindication", "dose",
    "diagnostic_certainty", "out_of_scope", "prompt_injection", "emergency", "phi_in_text",
    "safety_check_unavailable",
})
ERROR_KINDS = frozenset({
    "auth", "rate_limit", "validation", "payload_too_large", "fhir", "model", "timeout",
    "storage", "guardrail_unavailable", "internal",
})

# Latency buckets span a probe (ms) to a long generation on a CPU (a minute).
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
# Time per output token: ~1 ms (GPU) to ~1 s (a busy CPU).
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)

# Model versions are run names, hub names ("org/model") or card versions: bounded by what an
# operator deploys, so they may be labels; only their shape is checked.
_VALUE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+@/\-]{0,127}$")
_METRIC_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


@dataclass(frozen=True)
class _Metrics:
    requests: Any
    request_seconds: Any
    tokens: Any
    tokens_per_response: Any
    tpot_seconds: Any
    findings: Any
    feedback: Any
    feedback_graded: Any
    errors: Any
    model_info: Any
    eval_score: Any


_lock = threading.Lock()
_metrics: _Metrics | None = None
_model_info_labels: tuple[str, str] | None = None


def _get() -> _Metrics:
    """Create the metric objects once per process, on first use (see the module docstring)."""
    global _metrics
    if _metrics is not None:
        return _metrics
    with _lock:
        if _metrics is None:
            import prometheus_client as pc  # deferred: must see PROMETHEUS_MULTIPROC_DIR

            m = _Metrics(
                requests=pc.Counter(f"{PREFIX}_requests", "HTTP requests by endpoint and status code.",
                                    ["endpoint", "status"]),
                request_seconds=pc.Histogram(f"{PREFIX}_request_duration_seconds",
                                             "HTTP request latency by endpoint.", ["endpoint"],
                                             buckets=REQUEST_BUCKETS),
                tokens=pc.Counter(f"{PREFIX}_generated_tokens", "Tokens generated by the model."),
                tokens_per_response=pc.Histogram(f"{PREFIX}_generated_tokens_per_response",
                                                 "Tokens generated per model response.",
                                                 buckets=TOKEN_BUCKETS),
                tpot_seconds=pc.Histogram(f"{PREFIX}_time_per_output_token_seconds",
                                          "Generation time divided by tokens generated, per response.",
                                          buckets=TPOT_BUCKETS),
                findings=pc.Counter(f"{PREFIX}_guardrail_findings", "Guardrail findings by kind and severity.",
                                    ["kind", "severity"]),
                feedback=pc.Counter(f"{PREFIX}_feedback", "Clinician feedback on consults by outcome.",
                                    ["outcome"]),
                feedback_graded=pc.Counter(f"{PREFIX}_feedback_graded",
                                           "Feedback that says whether the answer was correct.",
                                           ["correct"]),
                errors=pc.Counter(f"{PREFIX}_errors", "Errors by kind.", ["kind"]),
                model_info=pc.Gauge(f"{PREFIX}_model_info", "The served model: 1 for the current version.",
                                    ["version", "aligned"], multiprocess_mode="livemax"),
                eval_score=pc.Gauge(f"{PREFIX}_eval_score", "Offline evaluation score of a model version.",
                                    ["model_version", "metric"], multiprocess_mode="mostrecent"),
            )
            # Zero series for the known label values, so ratios and alerts have a series to read
            # before the first event (a missing series makes rate() and `a / b` silently empty).
            for outcome in FEEDBACK_OUTCOMES:
                m.feedback.labels(outcome=outcome)
            for correct in ("true", "false"):
                m.feedback_graded.labels(correct=correct)
            for kind in ERROR_KINDS:
                m.errors.labels(kind=kind)
            _metrics = m
    return _metrics


def normalize_endpoint(path: str) -> str:
    """Map a request path to a bounded endpoint label (ids collapsed, unknown paths to "other")."""
    p = "/" + str(path).split("?", 1)[0].strip().strip("/")
    if p == "/ui" or p.startswith("/ui/"):
        return "/ui"
    parts = p.split("/")
    if len(parts) >= 3 and parts[1] == "cds-services":
        rest = parts[3:]
        p = "/cds-services/{id}" + ("" if not rest else "/feedback" if rest == ["feedback"] else "/?")
    return p if p in ENDPOINTS else OTHER


def _bounded(value: str, allowed) -> str:
    v = str(value).strip().lower().replace("-", "_").replace(" ", "_")
    return v if v in allowed else OTHER


def _non_negative(name: str, value: float) -> float:
    value = float(value)
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return value


def _label_value(name: str, value: str) -> str:
    v = str(value)
    if not _VALUE_RE.match(v):
        raise ValueError(f"{name} {value!r} is not a short label value "
                         "(1-128 characters of letters, digits and _ . : + @ / -)")
    return v


def observe_request(endpoint: str, status: int, seconds: float) -> None:
    """Count one HTTP request and its latency; ``endpoint`` is the route path ("/consult")."""
    ep = normalize_endpoint(endpoint)
    code = int(status)
    m = _get()
    m.requests.labels(endpoint=ep, status=str(code) if 100 <= code <= 599 else OTHER).inc()
    m.request_seconds.labels(endpoint=ep).observe(_non_negative("seconds", seconds))


def observe_generation(tokens: int, seconds: float) -> None:
    """Count the tokens of one model response and its time per output token."""
    n = int(_non_negative("tokens", tokens))
    s = _non_negative("seconds", seconds)
    m = _get()
    m.tokens.inc(n)
    m.tokens_per_response.observe(n)
    if n:
        m.tpot_seconds.observe(s / n)


def record_finding(kind: str, severity: str) -> None:
    """Count one guardrail finding; unknown kinds and severities are counted as "other"."""
    _get().findings.labels(kind=_bounded(kind, FINDING_KINDS), severity=_bounded(severity, SEVERITIES)).inc()


def record_feedback(outcome: str, correct: bool | None) -> None:
    """Count clinician feedback; ``correct`` true/false also feeds the online accuracy.

    Acceptance ratio = feedback{outcome="accept"} / all feedback; online accuracy =
    feedback_graded{correct="true"} / all graded feedback (see deploy/prometheus/rules.yml).
    """
    m = _get()
    m.feedback.labels(outcome=_bounded(outcome, FEEDBACK_OUTCOMES)).inc()
    if correct is not None:
        if not isinstance(correct, bool):
            raise ValueError(f"correct must be True, False or None, got {correct!r}")
        m.feedback_graded.labels(correct="true" if correct else "false").inc()


def record_error(kind: str) -> None:
    """Count one error; kinds outside ERROR_KINDS are counted as "other"."""
    _get().errors.labels(kind=_bounded(kind, ERROR_KINDS)).inc()


def set_model_info(version: str, aligned: bool) -> None:
    """Mark ``version`` as the served model (value 1); a previously set version drops to 0."""
    global _model_info_labels
    labels = (_label_value("version", version), "true" if aligned else "false")
    m = _get()
    with _lock:
        if _model_info_labels is not None and _model_info_labels != labels:
            m.model_info.labels(*_model_info_labels).set(0)
        m.model_info.labels(*labels).set(1)
        _model_info_labels = labels


def set_eval_score(model_version: str, metric: str, value: float) -> None:
    """Publish an offline evaluation score (e.g. metric="integration", value in [0, 1])."""
    if not _METRIC_NAME_RE.match(str(metric)):
        raise ValueError(f"metric {metric!r} must be a snake_case name such as 'integration' or 'medmcqa'")
    v = float(value)
    if math.isnan(v):
        raise ValueError("an evaluation score must be a number, got NaN")
    _get().eval_score.labels(model_version=_label_value("model_version", model_version), metric=metric).set(v)


def series_names() -> frozenset[str]:
    """Every series name these metrics expose (``_total``, ``_bucket``, ...): what queries may use."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return frozenset(
        family.name + suffix
        for metric in vars(_get()).values()
        for family in metric.describe()
        for suffix in suffixes[family.type]
    )


# -- BentoML's own request series ------------------------------------------------------------------
class _FoldedEndpoint:
    """A BentoML metric whose `endpoint` label is folded by `normalize_endpoint` before use."""

    def __init__(self, metric: Any):
        self._metric = metric

    def labels(self, *args: Any, **kwargs: Any) -> Any:
        if "endpoint" in kwargs:
            kwargs["endpoint"] = normalize_endpoint(kwargs["endpoint"])
        return self._metric.labels(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._metric, name)


def bounded_traffic_metrics_class():
    """BentoML's RunnerTrafficMetricsMiddleware with its `endpoint` label bounded.

    BentoML (1.4) labels ``bentoml_service_request_*`` with the raw request path, so every unknown
    URL, Gradio event id or upload path became a new series (unbounded cardinality, request-derived
    label values). The subclass wraps the metric objects its ``_setup`` creates, so only route
    templates (``ENDPOINTS``) or ``"other"`` reach a label; BentoML's code is not copied."""
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

    class BoundedTrafficMetrics(RunnerTrafficMetricsMiddleware):
        def _setup(self, *args: Any, **kwargs: Any) -> None:
            super()._setup(*args, **kwargs)
            for name in ("metrics_request_duration", "metrics_request_total", "metrics_request_in_progress",
                         "metrics_websocket_connections", "metrics_websocket_data_received",
                         "metrics_websocket_data_sent"):
                if hasattr(self, name) and not isinstance(getattr(self, name), _FoldedEndpoint):
                    setattr(self, name, _FoldedEndpoint(getattr(self, name)))

    BoundedTrafficMetrics.__name__ = BoundedTrafficMetrics.__qualname__ = "BoundedTrafficMetrics"
    return BoundedTrafficMetrics


def install_bounded_traffic_metrics() -> bool:
    """Make BentoML's service app use BoundedTrafficMetrics. BentoML imports the middleware class
    from its module when it builds the app (after the service module is imported), so rebinding the
    module attribute is the hook it offers. False when BentoML is not installed."""
    try:
        from bentoml._internal.server.http import instruments
    except ImportError:
        return False
    if getattr(instruments.RunnerTrafficMetricsMiddleware, "__name__", "") != "BoundedTrafficMetrics":
        instruments.RunnerTrafficMetricsMiddleware = bounded_traffic_metrics_class()
    return True


def reduce_exposition(content: str) -> str:
    """A Prometheus text exposition cut to the ``balancedbio_*`` families (BALANCEDBIO_METRICS_ACCESS=reduced):
    BentoML's and the Python runtime's series are dropped, so a public /metrics shows only what the
    dashboards and alerts of deploy/ read, every label of which is bounded (see the module docstring)."""
    keep, lines = False, []
    for line in content.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            keep = line.split()[2].startswith(PREFIX + "_")
        elif not line.startswith("#"):
            keep = line.startswith(PREFIX + "_")
        if keep:
            lines.append(line)
    return "\n".join(lines) + "\n"
