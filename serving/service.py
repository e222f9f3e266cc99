"""The BalancedBio service: `bentoml serve` from the repository root (bentofile.yaml names it).

HTTP API (the contract, with examples, is serving/README.md):
    GET  /v1/models, POST /v1/chat/completions   OpenAI-compatible (stream true/false)
    POST /consult, /consult_stream               question + optional FHIR patient -> answer + findings
    POST /feedback                               accept / override / edit of a consult (once per outcome, own key)
    POST /v1/fhir/patient                        a patient's record from an allow-listed FHIR server (the UI's)
    /cds-services (CDS Hooks), /ui (Gradio), /livez, /readyz, /metrics (BentoML's own)

The routes live in one FastAPI app mounted at "/" (BentoML mounts passively: only paths the app
declares reach it, so BentoML's probes and /metrics stay its own). The model loads in a background
thread, so /livez answers at once and /readyz turns ready only when the engine can generate: a
failed load makes /livez fail (BentoML would otherwise retry a failing __init__ forever).
"""

from __future__ import annotations

import json
import logging
import os
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

    import anyio

    from serving import consult as consult_pipeline
    from serving import safety
    from serving.auth import ApiError, BodyLimit, KeyRing, RateLimiter
    from serving.config import Settings, ensure_base_export, fhir_server_allowed, find_model
    from serving.middleware import Guard, RequestMetrics
    from serving.engine import GenerationOutput, OnnxEngine, PromptTooLong, SamplingParams
    from serving.schemas import (ChatCompletion, ChatCompletionRequest, Choice, ConsultRequest, ConsultResponse,
                                 ErrorResponse, FeedbackRequest, FeedbackResponse, FhirPatientRequest, ModelCard,
                                 ModelList, ResponseMessage, Usage)
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
    """OpenAI-compatible chat through the same safety pipeline as /consult (serving/safety.py): the
    input checks may escalate (the model is not called), the output checks report findings in the
    `balancedbio` field and the X-BalancedBio-* headers. Only keys an operator lists in
    BALANCEDBIO_CHAT_UNCHECKED_KEY_IDS skip the checks (and the response says checked=false)."""
    service = svc()
    engine = service.ready_engine()
    if body.model and body.model not in (engine.name, "balancedbio", "default"):
        raise ApiError(404, "model_not_found", f"model {body.model!r} is not served here; use {engine.name!r} "
                       "(see GET /v1/models)")
    max_tokens = _max_tokens(body.max_completion_tokens or body.max_tokens)
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    checked = key_id not in SETTINGS.chat_unchecked_key_ids
    check = await run_in_threadpool(safety.check_chat, messages, service.control_tokens(engine), checked)
    _count_dict_findings(check.findings)
    ids = None if check.escalation else await run_in_threadpool(_encode, engine, check.messages, max_tokens)
    params = SamplingParams(max_new_tokens=max_tokens, temperature=body.temperature or 0.0, top_p=body.top_p or 1.0,
                            seed=body.seed, stop=body.stop_list())
    consult_id, created = str(uuid.uuid4()), int(time.time())
    question = json.dumps(messages)
    headers = check.headers()

    async def finish(out: GenerationOutput | None, answer: str, finish_reason: str) -> dict:
        findings = await run_in_threadpool(safety.finish_chat, check, answer)
        summary = [{k: f.get(k) for k in ("kind", "severity", "summary")} for f in findings]
        await service.audit("/v1/chat/completions", consult_id, key_id, question, None, out, check.escalation is not None,
                            answer=answer, findings=summary, finish_reason=finish_reason)
        return check.report(findings)

    if not body.stream:
        out = None if ids is None else await engine.acomplete(ids, params)
        answer = check.escalation if out is None else out.text
        report = await finish(out, answer, "escalated" if out is None else out.finish_reason)
        completion = ChatCompletion(
            id=f"chatcmpl-{consult_id}", created=created, model=engine.name,
            choices=[Choice(message=ResponseMessage(content=answer), finish_reason=out.finish_reason if out else "stop")],
            usage=Usage(prompt_tokens=out.prompt_tokens if out else 0, completion_tokens=out.completion_tokens if out else 0,
                        total_tokens=(out.prompt_tokens + out.completion_tokens) if out else 0),
            aligned=engine.aligned, balancedbio=report)
        return JSONResponse(completion.model_dump(mode="json"), headers=headers)

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    async def events() -> AsyncIterator[str]:
        def chunk(delta: dict, finish: str | None = None, **extra) -> str:
            return "data: " + json.dumps({"id": f"chatcmpl-{consult_id}", "object": "chat.completion.chunk",
                                          "created": created, "model": engine.name, "aligned": engine.aligned,
                                          "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                                          **extra}) + "\n\n"
        streamed, audited = [], False
        try:
            yield chunk({"role": "assistant", "content": ""})
            if ids is None:
                streamed.append(check.escalation)
                yield chunk({"content": check.escalation})
                report = await finish(None, check.escalation, "escalated")
                audited = True
                yield chunk({}, "stop", balancedbio=report)
            else:
                async for item in engine.astream(ids, params):
                    if isinstance(item, GenerationOutput):
                        report = await finish(item, item.text, item.finish_reason)
                        audited = True
                        yield chunk({}, item.finish_reason, balancedbio=report)
                        if include_usage:
                            usage = Usage(prompt_tokens=item.prompt_tokens, completion_tokens=item.completion_tokens,
                                          total_tokens=item.prompt_tokens + item.completion_tokens)
                            yield "data: " + json.dumps({"id": f"chatcmpl-{consult_id}", "object": "chat.completion.chunk",
                                                         "created": created, "model": engine.name, "choices": [],
                                                         "usage": usage.model_dump()}) + "\n\n"
                    else:
                        streamed.append(item)
                        yield chunk({"content": item})
        except Exception as e:  # headers are sent: report in-band, as OpenAI does
            log.exception("streaming generation failed")
            _count("record_error", "model")
            await _audit_unfinished(service, "/v1/chat/completions", consult_id, key_id, question, streamed,
                                    check.escalation is not None, "error")
            audited = True
            yield "data: " + json.dumps({"error": {"type": "internal_error", "message": type(e).__name__}}) + "\n\n"
        finally:
            if not audited:  # the client went away mid-stream: the id it holds must still be in the store
                await _audit_unfinished(service, "/v1/chat/completions", consult_id, key_id, question, streamed,
                                        check.escalation is not None, "disconnected")
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


async def _audit_unfinished(service, endpoint: str, consult_id: str, key_id: str, question: str, streamed: list[str],
                            escalated: bool, finish_reason: str, patient=None) -> None:
    """Audit a stream that did not reach its end. Shielded: after a disconnect the task is being
    cancelled, and an unshielded await would be cancelled before the row is written."""
    with anyio.CancelScope(shield=True):
        try:
            await service.audit(endpoint, consult_id, key_id, question, patient, None, escalated,
                                answer="".join(streamed), findings=[], finish_reason=finish_reason)
        except Exception:
            log.exception("audit of an unfinished stream failed")
            _count("record_error", "storage")


def _count_dict_findings(findings: list) -> None:
    """Findings made here as dicts (control tokens) bypass the guardrails' listeners: count them."""
    for f in findings:
        if isinstance(f, dict):
            _count("record_finding", f.get("kind", "other"), f.get("severity", "info"))


# -- clinical ------------------------------------------------------------------------------------------
def _prepare(question: str, patient: dict | None, tokens: tuple[str, ...]):
    """consult.prepare with control tokens neutralised in the question and in the FHIR-derived summary."""
    question, found_q = safety.neutralise(question, tokens)
    c = consult_pipeline.prepare(question, patient)
    c.patient_summary, found_p = safety.neutralise(c.patient_summary, tokens)
    if found_q:
        c.findings.append(safety.control_token_finding(found_q, "question"))
    if found_p:
        c.findings.append(safety.control_token_finding(found_p, "patient record"))
    _count_dict_findings([f for f in c.findings if isinstance(f, dict)])
    return c


async def _consult_start(body: ConsultRequest):
    service = svc()
    engine = service.ready_engine()
    max_tokens = _max_tokens(body.max_tokens)
    c = await run_in_threadpool(_prepare, body.question, body.patient, service.control_tokens(engine))
    ids = None if c.escalation else await run_in_threadpool(_encode, engine, c.messages(), max_tokens)
    return service, engine, c, ids, SamplingParams(max_new_tokens=max_tokens)


async def _consult_finish(service, engine, c, out: GenerationOutput | None, key_id: str) -> ConsultResponse:
    answer = c.escalation if out is None else out.text
    findings, cards, issues = await run_in_threadpool(consult_pipeline.finish, c, answer)
    answer = await run_in_threadpool(consult_pipeline.final_answer, c, answer)  # led by critical findings, de-identified
    summary = [{k: f.get(k) for k in ("kind", "severity", "summary")} for f in findings]
    await service.audit("/consult", c.consult_id, key_id, c.question, c.patient_json, out, c.escalation is not None,
                        answer=answer, findings=summary,
                        finish_reason="escalated" if out is None else out.finish_reason)
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
        out, streamed, audited = None, [], False
        try:
            if ids is None:
                streamed.append(c.escalation)
                yield json.dumps({"event": "token", "text": c.escalation}) + "\n"
            else:
                async for item in engine.astream(ids, params):
                    if isinstance(item, GenerationOutput):
                        out = item
                    else:
                        streamed.append(item)
                        yield json.dumps({"event": "token", "text": item}) + "\n"
            result = await _consult_finish(service, engine, c, out, key_id)
            audited = True
            yield json.dumps({"event": "done", "consult": result.model_dump(mode="json")}) + "\n"
        except Exception as e:
            log.exception("consult stream failed")
            _count("record_error", "model")
            if not audited:
                await _audit_unfinished(service, "/consult", c.consult_id, key_id, c.question, streamed,
                                        c.escalation is not None, "error", c.patient_json)
                audited = True
            yield json.dumps({"event": "error", "error": {"type": "internal_error", "message": type(e).__name__}}) + "\n"
        finally:
            if not audited:  # the client disconnected before the end
                await _audit_unfinished(service, "/consult", c.consult_id, key_id, c.question, streamed,
                                        c.escalation is not None, "disconnected", c.patient_json)

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@app.post("/feedback", response_model=FeedbackResponse, responses=ERRORS)
async def feedback(body: FeedbackRequest, key_id: str = Depends(authorized)) -> FeedbackResponse:
    """Once per consult and outcome (a repeat returns the first feedback id and counts nothing), and
    only from the key that made the consult: another key's consult is answered like a missing one."""
    store = svc().store
    consult_id = body.consult_id.removeprefix("chatcmpl-")  # a chat completion's id names its audit row too
    row = await run_in_threadpool(store.get_consult, consult_id)
    if row is None or row.api_key_id != key_id:
        raise ApiError(404, "not_found", f"no consult with id {body.consult_id!r} made with this API key; send the "
                       "consult_id that /consult returned to you")
    dedupe_key = f"api:{consult_id}:{body.outcome}"
    existing = await run_in_threadpool(store.feedback_by_key, dedupe_key)
    if existing is not None:
        return FeedbackResponse(feedback_id=existing.id, consult_id=consult_id)
    feedback_id = await run_in_threadpool(lambda: store.add_feedback(
        consult_id=consult_id, outcome=body.outcome, reason=body.reason, edited_answer=body.edited_answer,
        correct=body.correct, details={"api_key_id": key_id}, dedupe_key=dedupe_key))
    _count("record_feedback", body.outcome, body.correct)
    return FeedbackResponse(feedback_id=feedback_id, consult_id=consult_id)


@app.post("/v1/fhir/patient", responses={**ERRORS, 502: {"model": ErrorResponse}})
async def fhir_patient(body: FhirPatientRequest, key_id: str = Depends(authorized)) -> dict:
    """A patient's record (Patient + the resources a consult uses) as one Bundle, read from a FHIR
    server in BALANCEDBIO_FHIR_SERVERS only (exact origin and base path, no redirects followed)."""
    from serving.fhir_client import FHIRClient, FHIRServerError

    if not SETTINGS.fhir_servers:
        raise ApiError(403, "permission_error", "this server reads from no FHIR server; its operator can allow "
                       "some with BALANCEDBIO_FHIR_SERVERS")
    if not fhir_server_allowed(body.fhir_server, SETTINGS.fhir_servers):
        raise ApiError(403, "permission_error", "that FHIR server is not allowed here; use one of: "
                       + ", ".join(SETTINGS.fhir_servers))

    def read() -> dict:
        with FHIRClient(body.fhir_server, token=body.token or None) as client:
            return client.patient_bundle(body.patient_id)
    try:
        return await run_in_threadpool(read)
    except (FHIRServerError, ValueError) as e:
        _count("record_error", "fhir")
        raise ApiError(502, "fhir_server_error", f"the FHIR server did not return the patient: {e}") from None


# -- the service -------------------------------------------------------------------------------------------
CDS_WARNING: list[str] = [""]  # set when CDS Hooks is mounted unsigned or refusing (serving.middleware.Guard)


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
            self._load_guardrails()
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

    @staticmethod
    def _load_guardrails() -> None:
        """Build the guardrails' NLP pipelines before the service says it is ready: built lazily, the
        first consult would pay the spaCy/Presidio start-up (most of a minute on a busy 2-core machine).
        A pipeline that cannot load is logged here; its check then fails closed on every request."""
        from clinical import deid
        from clinical.guardrails import context

        for name, load in (("negation context", context.load), ("de-identification", deid.load)):
            try:
                load()
            except Exception:
                log.exception("guardrail pipeline %s could not load: its checks will fail closed", name)

    def _wire_guardrail_metrics(self) -> None:
        try:
            from clinical.guardrails import add_listeners
        except ImportError:
            return
        add_listeners(on_finding=lambda f: _count("record_finding", f.kind, f.severity),
                      on_error=lambda check: _count("record_error", "guardrail_unavailable"))

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
        m = _metrics()
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
            _count("observe_generation", out.completion_tokens, out.seconds)
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


def _record_cds_feedback(item: dict) -> bool:
    """Store one CDS feedback item; False when that card already had that outcome (not counted again)."""
    store = svc().store
    before = store.feedback_by_key(f"cds:{item.get('card')}:{item.get('outcome')}") if item.get("card") else None
    store.record_cds_feedback(item)
    return before is None


def _record_cds_cards(service_id: str, client: str, uuids: list[str]) -> None:
    svc().store.record_cds_cards(service_id, client, uuids)


def _install_bounded_traffic_metrics() -> None:
    """BentoML labels its request series with the raw path (every random URL, Gradio event id and
    upload path becomes a new series); swap in its middleware with the endpoint label folded to a
    route template (monitoring.metrics.BoundedTrafficMetrics)."""
    try:
        from monitoring.metrics import install_bounded_traffic_metrics
    except ImportError:
        return
    install_bounded_traffic_metrics()


def _mount_optional_apps() -> None:
    """CDS Hooks (issue 6) and the Gradio UI (issue 7), each when its module is installed and builds.

    A part that fails to build is left out with an error in the log: the clinical API must not go
    down because an optional front end did."""
    try:
        from serving.cds_hooks_app import create_cds_app

        cds = create_cds_app(record_feedback=_record_cds_feedback, record_cards=_record_cds_cards,
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

        # Gradio 6 needs its theme and config set before a bare mount, or /ui/ answers 500; the UI
        # passes the service's own URL (never the Host header) and its hardening is set again after
        # the mount, which resets show_error and max_file_size.
        blocks = prepare_for_mount(build_ui(SETTINGS.api_url))
        bentoml.gradio.mount_gradio_app(blocks, path="/ui")(BalancedBio)
        harden(blocks)
    except Exception:
        log.exception("UI not mounted at /ui")


_mount_optional_apps()
BalancedBio.add_asgi_middleware(BodyLimit, max_bytes=SETTINGS.max_body_bytes,
                                on_reject=lambda scope: _count("record_error", "payload_too_large"))
BalancedBio.add_asgi_middleware(RequestMetrics, count=_count)
BalancedBio.add_asgi_middleware(Guard, settings=SETTINGS, count=_count, warning=lambda: CDS_WARNING[0])
_install_bounded_traffic_metrics()
