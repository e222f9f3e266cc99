"""The BalancedBio service: `bentoml serve` from the repository root (bentofile.yaml names it).

HTTP API (the contract, with examples, is serving/README.md):
    GET  /v1/models, POST /v1/chat/completions   OpenAI-compatible (stream true/false)
    POST /consult, /consult_stream               question + optional FHIR patient -> answer + findings
    POST /feedback                               accept / override / edit of a consult
    /cds-services (CDS Hooks), /ui (Gradio), /livez, /readyz, /metrics (BentoML's own)

The routes live in one FastAPI app mounted at "/" (BentoML mounts passively: only paths the app
declares reach it, so BentoML's probes and /metrics stay its own). The model loads in a background
thread, so /livez answers at once and /readyz turns ready only when the engine can generate: a
failed load makes /livez fail (BentoML would otherwise retry a failing __init__ forever).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import AsyncIterator

import bentoml

with bentoml.importing():
    from fastapi import Depends, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from serving import consult as consult_pipeline
    from serving.auth import ApiError, BodyLimit, KeyRing, RateLimiter
    from serving.config import Settings, ensure_base_export, find_model
    from serving.engine import GenerationOutput, OnnxEngine, PromptTooLong, SamplingParams
    from serving.schemas import (ChatCompletion, ChatCompletionRequest, Choice, ConsultRequest, ConsultResponse,
                                 ErrorResponse, FeedbackRequest, FeedbackResponse, ModelCard, ModelList,
                                 ResponseMessage, Usage)
    from serving.store import Store

log = logging.getLogger("balancedbio.service")
SETTINGS = Settings.from_env()
ERRORS = {code: {"model": ErrorResponse} for code in (401, 403, 404, 413, 422, 429, 503)}


def _metrics():
    """monitoring.metrics when installed; the service runs (unmeasured) without it."""
    try:
        from monitoring import metrics
        return metrics
    except ImportError:
        return None


def _count(fn: str, *args) -> None:
    m = _metrics()
    if m is not None:
        try:
            getattr(m, fn)(*args)
        except Exception:  # metrics must never fail a clinical request
            log.exception("metrics call %s failed", fn)


app = FastAPI(title="BalancedBio", version="1", description="Clinical question answering with guardrails; "
              "OpenAI-compatible chat. Every endpoint needs 'Authorization: Bearer <key>'.")
bearer = HTTPBearer(auto_error=False, description="an API key from BALANCEDBIO_API_KEYS")
_instance: "BalancedBio | None" = None


def svc() -> "BalancedBio":
    if _instance is None:
        raise ApiError(503, "unavailable", "the service is starting; retry shortly", {"Retry-After": "5"})
    return _instance


def _error(status: int, type_: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": type_, "message": message}}, status_code=status, headers=headers)


_ERROR_KIND = {401: "auth", 403: "auth", 413: "payload_too_large", 422: "validation", 429: "rate_limit",
               503: "model"}


@app.exception_handler(ApiError)
async def _api_error(_: Request, e: ApiError) -> JSONResponse:
    _count("record_error", _ERROR_KIND.get(e.status, "fhir" if e.type == "invalid_fhir" else "internal"))
    return _error(e.status, e.type, e.message, e.headers)


@app.exception_handler(RequestValidationError)
async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
    problems = []
    for err in e.errors()[:10]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    _count("record_error", "validation")
    return _error(422, "invalid_request_error", "; ".join(problems) + " (see /docs for the request schema)")


@app.exception_handler(StarletteHTTPException)
async def _http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
    if e.status_code == 400:  # FastAPI's "error parsing the body" (e.g. bytes that are not UTF-8)
        _count("record_error", "validation")
        return _error(422, "invalid_request_error", f"{e.detail}: send a UTF-8 JSON object (see /docs)")
    return _error(e.status_code, "invalid_request_error", str(e.detail), getattr(e, "headers", None))


@app.exception_handler(Exception)
async def _crash(request: Request, e: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path)  # the path only: bodies may hold PHI
    _count("record_error", "internal")
    return _error(500, "internal_error", "the server failed on this request; it was logged, please report it")


def authorized(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
    """The caller's key id, after the key and rate-limit checks (401/403/429 otherwise)."""
    service = svc()
    key_id = service.keys.identify(request.headers.get("authorization"))
    service.limiter.check(key_id)
    return key_id


def _max_tokens(requested: int | None) -> int:
    value = requested or SETTINGS.default_max_tokens
    if value > SETTINGS.max_tokens_limit:
        raise ApiError(422, "invalid_request_error", f"max_tokens={value} is over this server's limit of "
                       f"{SETTINGS.max_tokens_limit}; ask for at most {SETTINGS.max_tokens_limit}")
    return value


def _encode(engine: OnnxEngine, messages: list[dict], max_tokens: int) -> list[int]:
    ids = engine.encode(engine.chat_prompt(messages))
    try:
        engine.check_budget(ids, max_tokens)
    except PromptTooLong as e:
        raise ApiError(422, "context_length_exceeded", str(e)) from None
    return ids


# -- CDS Hooks discovery at the spec's exact path ----------------------------------------------------
@app.get("/cds-services", include_in_schema=False)
async def cds_discovery() -> dict:
    """The mounted CDS Hooks app answers at /cds-services/; the bare path (what EHRs are given) would
    otherwise get a 307 redirect, which some CDS clients do not follow."""
    from clinical.cds_hooks import discovery_document

    return discovery_document()


# -- OpenAI-compatible --------------------------------------------------------------------------------
@app.get("/v1/models", response_model=ModelList, responses=ERRORS)
async def list_models(key_id: str = Depends(authorized)) -> ModelList:
    engine = svc().ready_engine()
    return ModelList(data=[ModelCard(id=engine.name, created=svc().loaded_at, aligned=engine.aligned)])


@app.post("/v1/chat/completions", response_model=ChatCompletion, responses=ERRORS)
async def chat_completions(body: ChatCompletionRequest, key_id: str = Depends(authorized)):
    service = svc()
    engine = service.ready_engine()
    if body.model and body.model not in (engine.name, "balancedbio", "default"):
        raise ApiError(404, "model_not_found", f"model {body.model!r} is not served here; use {engine.name!r} "
                       "(see GET /v1/models)")
    max_tokens = _max_tokens(body.max_completion_tokens or body.max_tokens)
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    ids = await run_in_threadpool(_encode, engine, messages, max_tokens)
    params = SamplingParams(max_new_tokens=max_tokens, temperature=body.temperature or 0.0, top_p=body.top_p or 1.0,
                            seed=body.seed, stop=body.stop_list())
    consult_id, created = str(uuid.uuid4()), int(time.time())
    question = json.dumps(messages)

    if not body.stream:
        out = await engine.acomplete(ids, params)
        await service.audit("/v1/chat/completions", consult_id, key_id, question, None, out, escalated=False)
        return ChatCompletion(id=f"chatcmpl-{consult_id}", created=created, model=engine.name,
                              choices=[Choice(message=ResponseMessage(content=out.text), finish_reason=out.finish_reason)],
                              usage=Usage(prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens,
                                          total_tokens=out.prompt_tokens + out.completion_tokens),
                              aligned=engine.aligned)

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    async def events() -> AsyncIterator[str]:
        def chunk(delta: dict, finish: str | None = None, **extra) -> str:
            return "data: " + json.dumps({"id": f"chatcmpl-{consult_id}", "object": "chat.completion.chunk",
                                          "created": created, "model": engine.name, "aligned": engine.aligned,
                                          "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                                          **extra}) + "\n\n"
        yield chunk({"role": "assistant", "content": ""})
        try:
            async for item in engine.astream(ids, params):
                if isinstance(item, GenerationOutput):
                    yield chunk({}, item.finish_reason)
                    if include_usage:
                        usage = Usage(prompt_tokens=item.prompt_tokens, completion_tokens=item.completion_tokens,
                                      total_tokens=item.prompt_tokens + item.completion_tokens)
                        yield "data: " + json.dumps({"id": f"chatcmpl-{consult_id}", "object": "chat.completion.chunk",
                                                     "created": created, "model": engine.name, "choices": [],
                                                     "usage": usage.model_dump()}) + "\n\n"
                    await service.audit("/v1/chat/completions", consult_id, key_id, question, None, item, False)
                else:
                    yield chunk({"content": item})
        except Exception as e:  # headers are sent: report in-band, as OpenAI does
            log.exception("streaming generation failed")
            _count("record_error", "model")
            yield "data: " + json.dumps({"error": {"type": "internal_error", "message": type(e).__name__}}) + "\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


# -- clinical ------------------------------------------------------------------------------------------
async def _consult_start(body: ConsultRequest):
    service = svc()
    engine = service.ready_engine()
    max_tokens = _max_tokens(body.max_tokens)
    c = await run_in_threadpool(consult_pipeline.prepare, body.question, body.patient)
    ids = None if c.escalation else await run_in_threadpool(_encode, engine, c.messages(), max_tokens)
    return service, engine, c, ids, SamplingParams(max_new_tokens=max_tokens)


async def _consult_finish(service, engine, c, out: GenerationOutput | None, key_id: str) -> ConsultResponse:
    answer = c.escalation if out is None else out.text
    findings, cards, issues = await run_in_threadpool(consult_pipeline.finish, c, answer)
    answer = await run_in_threadpool(consult_pipeline.final_answer, c, answer)  # led by critical findings, de-identified
    summary = [{k: f.get(k) for k in ("kind", "severity", "summary")} for f in findings]
    await service.audit("/consult", c.consult_id, key_id, c.question, c.patient_json, out, c.escalation is not None,
                        answer=answer, findings=summary)
    return ConsultResponse(consult_id=c.consult_id, answer=answer, model=engine.name, aligned=engine.aligned,
                           escalated=c.escalation is not None, findings=findings, cards=cards,
                           detected_issues=issues, patient_summary=c.patient_summary, evidence=c.evidence)


@app.post("/consult", response_model=ConsultResponse, responses=ERRORS)
async def consult(body: ConsultRequest, key_id: str = Depends(authorized)) -> ConsultResponse:
    service, engine, c, ids, params = await _consult_start(body)
    out = None if ids is None else await engine.acomplete(ids, params)
    return await _consult_finish(service, engine, c, out, key_id)


@app.post("/consult_stream", responses={200: {"content": {"application/x-ndjson": {}}}, **ERRORS})
async def consult_stream(body: ConsultRequest, key_id: str = Depends(authorized)):
    # Everything that can be refused (auth, FHIR, budget) is checked before the first byte, so
    # those errors are ordinary JSON responses; only generation runs inside the stream.
    service, engine, c, ids, params = await _consult_start(body)

    async def lines() -> AsyncIterator[str]:
        out = None
        try:
            if ids is None:
                yield json.dumps({"event": "token", "text": c.escalation}) + "\n"
            else:
                async for item in engine.astream(ids, params):
                    if isinstance(item, GenerationOutput):
                        out = item
                    else:
                        yield json.dumps({"event": "token", "text": item}) + "\n"
            result = await _consult_finish(service, engine, c, out, key_id)
            yield json.dumps({"event": "done", "consult": result.model_dump(mode="json")}) + "\n"
        except Exception as e:
            log.exception("consult stream failed")
            _count("record_error", "model")
            yield json.dumps({"event": "error", "error": {"type": "internal_error", "message": type(e).__name__}}) + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@app.post("/feedback", response_model=FeedbackResponse, responses=ERRORS)
async def feedback(body: FeedbackRequest, key_id: str = Depends(authorized)) -> FeedbackResponse:
    store = svc().store
    consult_id = body.consult_id.removeprefix("chatcmpl-")  # a chat completion's id names its audit row too
    if await run_in_threadpool(store.get_consult, consult_id) is None:
        raise ApiError(404, "not_found", f"no consult with id {body.consult_id!r}; send the consult_id that "
                       "/consult returned")
    feedback_id = await run_in_threadpool(lambda: store.add_feedback(
        consult_id=consult_id, outcome=body.outcome, reason=body.reason, edited_answer=body.edited_answer,
        correct=body.correct, details={"api_key_id": key_id}))
    _count("record_feedback", body.outcome, body.correct)
    return FeedbackResponse(feedback_id=feedback_id, consult_id=consult_id)


# -- the service -------------------------------------------------------------------------------------------
class RequestMetrics:
    """ASGI middleware: every request's endpoint, status and latency to monitoring.metrics."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
        try:
            await self.app(scope, receive, send_status)
        finally:
            _count("observe_request", scope.get("path", ""), status, time.perf_counter() - started)


@bentoml.service(name="balancedbio", workers=1, traffic={"timeout": 300, "concurrency": 64},
                 labels={"project": "balancedbio"})
@bentoml.asgi_app(app, path="/")
class BalancedBio:
    """Holds the engine, the store and the key ring for the routes above (one worker: the engine batches)."""

    def __init__(self) -> None:
        global _instance
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
        _instance = self
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()

    def _load(self) -> None:
        try:
            directory, why = find_model(SETTINGS)
            if directory is None:
                log.info("%s (a minute or two, once)", why)
                directory = ensure_base_export()
            engine = OnnxEngine(directory, threads=SETTINGS.threads or None, max_batch=SETTINGS.max_batch)
            engine.start()
            self.engine, self.loaded_at = engine, int(time.time())
            log.info("serving %s (aligned=%s, %s) from %s on %s", engine.name, engine.aligned, why, directory,
                     engine.provider)
            _count("set_model_info", engine.name, engine.aligned)
            for metric, value in (engine.card.get("parity", {}).get("capabilities", {}).get(
                    engine.card.get("serve", "fp32"), {}) or {}).items():
                if isinstance(value, (int, float)) and metric.isidentifier():
                    _count("set_eval_score", engine.name, metric, float(value))
        except Exception as e:
            log.exception("model load failed")
            self.load_error = f"{type(e).__name__}: {e}"

    def _wire_guardrail_metrics(self) -> None:
        try:
            from clinical.guardrails import add_listeners
        except ImportError:
            return
        add_listeners(on_finding=lambda f: _count("record_finding", f.kind, f.severity),
                      on_error=lambda check: _count("record_error", "guardrail_unavailable"))

    def ready_engine(self) -> OnnxEngine:
        if self.engine is None:
            if self.load_error:
                raise ApiError(503, "unavailable", f"the model failed to load: {self.load_error}")
            raise ApiError(503, "unavailable", "the model is still loading; retry shortly", {"Retry-After": "5"})
        return self.engine

    async def audit(self, endpoint: str, consult_id: str, key_id: str, question: str, patient, out, escalated: bool,
                    answer: str | None = None, findings: list | None = None) -> None:
        """Write the consult's audit row; the response is sent only after this commit."""
        if out is not None:
            _count("observe_generation", out.completion_tokens, out.seconds)
        await run_in_threadpool(lambda: self.store.add_consult(
            endpoint=endpoint, model_version=self.engine.name, aligned=self.engine.aligned, api_key_id=key_id,
            question=question, patient=patient, answer=answer if answer is not None else (out.text if out else ""),
            escalated=escalated, findings=findings or [], prompt_tokens=out.prompt_tokens if out else 0,
            completion_tokens=out.completion_tokens if out else 0, latency_seconds=out.seconds if out else 0.0,
            consult_id=consult_id))

    def __is_ready__(self) -> bool:
        return self.engine is not None

    def __is_alive__(self) -> bool:
        return self.load_error is None


def _record_cds_feedback(item: dict) -> None:
    svc().store.record_cds_feedback(item)


def _mount_optional_apps() -> None:
    """CDS Hooks (issue 6) and the Gradio UI (issue 7), each when its module is installed and builds.

    A part that fails to build is left out with an error in the log: the clinical API must not go
    down because an optional front end did."""
    try:
        from serving.cds_hooks_app import create_cds_app

        BalancedBio.mount_asgi_app(create_cds_app(record_feedback=_record_cds_feedback), path="/cds-services")
    except Exception:
        log.exception("CDS Hooks not mounted at /cds-services")
    try:
        from ui.app import build_ui, prepare_for_mount

        # Gradio 6 needs its theme and config set before a bare mount, or /ui/ answers 500.
        bentoml.gradio.mount_gradio_app(prepare_for_mount(build_ui()), path="/ui")(BalancedBio)
    except Exception:
        log.exception("UI not mounted at /ui")


_mount_optional_apps()
BalancedBio.add_asgi_middleware(BodyLimit, max_bytes=SETTINGS.max_body_bytes,
                                on_reject=lambda scope: _count("record_error", "payload_too_large"))
BalancedBio.add_asgi_middleware(RequestMetrics)
