"""The BalancedBio service: `bentoml serve` from the repository root (bentofile.yaml names it).

HTTP API (the contract, with examples, is serving/README.md):
    GET  /v1/models, POST /v1/chat/completions   OpenAI-compatible (stream true/false)
    POST /consult, /consult_stream               question + optional FHIR patient -> answer + findings
    POST /feedback                               accept / override / edit of a consult (once per outcome, own key)
    POST /v1/fhir/patient                        a patient's record from an allow-listed FHIR server (the UI's)
    /cds-services (CDS Hooks), /ui (Gradio), /livez, /readyz, /metrics (BentoML's own)

The routes live in one FastAPI app mounted at "/" (BentoML mounts passively: only paths the app
declares reach it, so BentoML's probes and /metrics stay its own); their bodies are in
serving/routes/ (one module per route group); this module declares the routes, and keeps the one
BentoML service class, the mounts and the middleware. The model loads in a background
thread, so /livez answers at once and /readyz turns ready only when the engine can generate: a
failed load makes /livez fail (BentoML would otherwise retry a failing __init__ forever).
"""

from __future__ import annotations

import logging
import threading
import time

import bentoml

with bentoml.importing():
    from fastapi import FastAPI
    from starlette.concurrency import run_in_threadpool

    from serving import safety
    from serving.auth import ApiError, BodyLimit, KeyRing, RateLimiter
    from serving.config import ensure_base_export, find_model
    from serving.engine import OnnxEngine
    from serving.heap import release_free_memory
    from serving.middleware import Guard, RequestMetrics
    from serving.routes import chat, consult, feedback, fhir
    from serving.routes.common import ERRORS, SETTINGS, count, install_error_handlers, metrics, set_service
    from serving.schemas import ChatCompletion, ConsultResponse, ErrorResponse, FeedbackResponse, ModelList
    from serving.store import Store

log = logging.getLogger("balancedbio.service")

app = FastAPI(title="BalancedBio", version="1", description="Clinical question answering with guardrails; "
              "OpenAI-compatible chat. Every endpoint needs 'Authorization: Bearer <key>'.")
install_error_handlers(app)
# The HTTP contract in one place; each body is a function in serving/routes/. Routes are added to the
# app itself (not through APIRouter.include_router, which FastAPI now keeps as a lazily expanded
# entry without a `path`, and BentoML's route listing of mounted apps reads `route.path`).
app.add_api_route("/cds-services", fhir.cds_discovery, methods=["GET"], include_in_schema=False)
app.add_api_route("/v1/models", chat.list_models, methods=["GET"], response_model=ModelList, responses=ERRORS)
app.add_api_route("/v1/chat/completions", chat.chat_completions, methods=["POST"], response_model=ChatCompletion,
                  responses=ERRORS)
app.add_api_route("/consult", consult.consult, methods=["POST"], response_model=ConsultResponse, responses=ERRORS)
app.add_api_route("/consult_stream", consult.consult_stream, methods=["POST"],
                  responses={200: {"content": {"application/x-ndjson": {}}}, **ERRORS})
app.add_api_route("/feedback", feedback.feedback, methods=["POST"], response_model=FeedbackResponse, responses=ERRORS)
app.add_api_route("/v1/fhir/patient", fhir.fhir_patient, methods=["POST"],
                  responses={**ERRORS, 502: {"model": ErrorResponse}})


# -- the service -------------------------------------------------------------------------------------------
CDS_WARNING: list[str] = [""]  # set when CDS Hooks is mounted unsigned or refusing (serving.middleware.Guard)


@bentoml.service(name="balancedbio", workers=1, traffic={"timeout": 300, "concurrency": 64},
                 labels={"project": "balancedbio"})
@bentoml.asgi_app(app, path="/")
class BalancedBio:
    """Holds the engine, the store and the key ring for the routes in serving/routes/ (one worker: the
    engine batches)."""

    def __init__(self) -> None:
        from clinical.phi import install_log_redaction

        # BentoML has configured the worker's log handlers by now; scrub PHI from every line they write.
        install_log_redaction()
        self.settings = SETTINGS
        self.store = Store(SETTINGS.db_url, store_raw=SETTINGS.store_raw)
        self.keys = KeyRing(SETTINGS.api_keys)
        self.limiter = RateLimiter(SETTINGS.rate_limit_per_minute)
        self.engine: OnnxEngine | None = None
        self.load_error: str | None = None
        self.loaded_at = int(time.time())
        if not len(self.keys):
            log.warning("no API keys configured: every clinical request will get 401 "
                        "(set BALANCEDBIO_API_KEYS or BALANCEDBIO_API_KEYS_FILE)")
        self._wire_guardrail_metrics()
        set_service(self)
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()

    def _load(self) -> None:
        try:
            directory, why = find_model(SETTINGS)
            if directory is None:
                log.info("%s (a minute or two, once)", why)
                directory = ensure_base_export()
            engine = OnnxEngine(directory, threads=SETTINGS.threads or None, max_batch=SETTINGS.max_batch,
                                batching=SETTINGS.batching, memory_arena=SETTINGS.ort_arena)
            engine.start()
            self._load_guardrails()
            release_free_memory()  # what loading the graph and the pipelines freed (serving/heap.py)
            self.engine, self.loaded_at = engine, int(time.time())
            log.info("serving %s (aligned=%s, %s) from %s on %s", engine.name, engine.aligned, why, directory,
                     engine.provider)
            count("set_model_info", engine.name, engine.aligned)
            for metric, value in (engine.card.get("parity", {}).get("capabilities", {}).get(
                    engine.card.get("serve", "fp32"), {}) or {}).items():
                if isinstance(value, (int, float)) and metric.isidentifier():
                    count("set_eval_score", engine.name, metric, float(value))
        except Exception as e:
            log.exception("model load failed")
            self.load_error = f"{type(e).__name__}: {e}"

    @staticmethod
    def _load_guardrails() -> None:
        """Build the guardrails' NLP pipelines before the service says it is ready: built lazily, the
        first consult would pay the spaCy/Presidio start-up (most of a minute on a busy 2-core machine).
        A pipeline that cannot load is logged here; its check then fails closed on every request."""
        from clinical import deid
        from clinical.guardrails import context
        from clinical.knowledge.drugs import DRUGS

        for name, load in (("negation context", context.load), ("de-identification", deid.load),
                           ("drug dictionary", DRUGS.get)):
            try:
                load()
            except Exception:
                log.exception("guardrail pipeline %s could not load: its checks will fail closed", name)

    def _wire_guardrail_metrics(self) -> None:
        try:
            from clinical.guardrails import add_listeners
        except ImportError:
            return
        add_listeners(on_finding=lambda f: count("record_finding", f.kind, f.severity),
                      on_error=lambda check: count("record_error", "guardrail_unavailable"))

    def control_tokens(self, engine: OnnxEngine) -> tuple[str, ...]:
        """The served tokenizer's special tokens plus ChatML's (computed once per engine)."""
        cached = getattr(self, "_control_tokens", None)
        if cached is None or cached[0] is not engine:
            cached = (engine, safety.control_tokens(getattr(engine, "tokenizer", None)))
            self._control_tokens = cached
        return cached[1]

    async def __metrics__(self, content: str) -> str:
        """BentoML's hook on /metrics output: "reduced" keeps only the balancedbio_* families."""
        if SETTINGS.metrics_access != "reduced":
            return content
        m = metrics()
        return m.reduce_exposition(content) if m is not None else ""

    def ready_engine(self) -> OnnxEngine:
        if self.engine is None:
            if self.load_error:
                raise ApiError(503, "unavailable", f"the model failed to load: {self.load_error}")
            raise ApiError(503, "unavailable", "the model is still loading; retry shortly", {"Retry-After": "5"})
        return self.engine

    async def audit(self, endpoint: str, consult_id: str, key_id: str, question: str, patient, out, escalated: bool,
                    answer: str | None = None, findings: list | None = None, finish_reason: str | None = None) -> None:
        """Write the consult's audit row; the response is sent only after this commit."""
        if out is not None:
            count("observe_generation", out.completion_tokens, out.seconds)
        await run_in_threadpool(lambda: self.store.add_consult(
            endpoint=endpoint, model_version=self.engine.name, aligned=self.engine.aligned, api_key_id=key_id,
            question=question, patient=patient, answer=answer if answer is not None else (out.text if out else ""),
            escalated=escalated, findings=findings or [], prompt_tokens=out.prompt_tokens if out else 0,
            completion_tokens=out.completion_tokens if out else 0, latency_seconds=out.seconds if out else 0.0,
            consult_id=consult_id, finish_reason=finish_reason or (out.finish_reason if out else None)))

    def __is_ready__(self) -> bool:
        return self.engine is not None

    def __is_alive__(self) -> bool:
        return self.load_error is None


def _install_bounded_traffic_metrics() -> None:
    """BentoML labels its request series with the raw path (every random URL, Gradio event id and
    upload path becomes a new series); swap in its middleware with the endpoint label folded to a
    route template (monitoring.metrics.BoundedTrafficMetrics)."""
    try:
        from monitoring.metrics import install_bounded_traffic_metrics
    except ImportError:
        return
    install_bounded_traffic_metrics()


def _mount_optional_apps():
    """CDS Hooks (issue 6) and the Gradio UI (issue 7), each when its module is installed and builds;
    the UI's session state (for its gate, added below), or None without a UI.

    A part that fails to build is left out with an error in the log: the clinical API must not go
    down because an optional front end did."""
    try:
        from serving.cds_hooks_app import create_cds_app

        cds = create_cds_app(record_feedback=feedback.record_cds_feedback,
                             record_cards=feedback.record_cds_cards,
                             allow_unsigned=SETTINGS.cds_allow_unsigned, max_feedback_items=SETTINGS.max_feedback_items)
        if cds.state.unsigned:
            CDS_WARNING[0] = "CDS Hooks accepts unsigned calls (BALANCEDBIO_CDS_ALLOW_UNSIGNED=1, development only)"
        elif cds.state.refusing:
            CDS_WARNING[0] = "CDS Hooks refuses every call: no JWT issuers configured (BALANCEDBIO_CDS_JWT_ISSUERS)"
        BalancedBio.mount_asgi_app(cds, path="/cds-services")
    except ValueError as e:  # JWT on without a public URL: refuse to start rather than accept any audience
        raise SystemExit(f"CDS Hooks configuration: {e}") from None
    except Exception:
        log.exception("CDS Hooks not mounted at /cds-services")
    try:
        from ui.app import build_ui, harden, prepare_for_mount
        from ui.sessions import UiSessions

        # Gradio 6 needs its theme and config set before a bare mount, or /ui/ answers 500; the UI
        # passes the service's own URL (never the Host header) and its hardening is set again after
        # the mount, which resets show_error and max_file_size.
        sessions = UiSessions()
        blocks = prepare_for_mount(build_ui(SETTINGS.api_url, sessions))
        bentoml.gradio.mount_gradio_app(blocks, path="/ui")(BalancedBio)
        harden(blocks)
        return sessions
    except Exception:
        log.exception("UI not mounted at /ui")
        return None


_ui_sessions = _mount_optional_apps()
BalancedBio.add_asgi_middleware(BodyLimit, max_bytes=SETTINGS.max_body_bytes,
                                on_reject=lambda scope: count("record_error", "payload_too_large"))
BalancedBio.add_asgi_middleware(RequestMetrics, count=count)
BalancedBio.add_asgi_middleware(Guard, settings=SETTINGS, count=count, warning=lambda: CDS_WARNING[0])
if _ui_sessions is not None:
    from ui.sessions import UiSessionGate

    # Innermost: after the body limit and the upload rate limit. The UI's uploads and file reads are
    # tied to a session whose key the service accepted (ui/sessions.py).
    BalancedBio.add_asgi_middleware(UiSessionGate, sessions=_ui_sessions, prefix="/ui")
_install_bounded_traffic_metrics()
