"""What every route group shares: settings, the caller's key check, the running service, errors.

The route modules never import serving.service (which imports them): the service registers itself
here at start (`set_service`) and the routes reach it through `svc()`, typed by the `Service`
protocol below, so the dependency points one way only.
"""

from __future__ import annotations

import logging
from typing import Protocol

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.auth import ApiError, KeyRing, RateLimiter
from serving.config import Settings
from serving.engine import OnnxEngine, PromptTooLong
from serving.schemas import ErrorResponse
from serving.store import Store

log = logging.getLogger("balancedbio.service")
SETTINGS = Settings.from_env()
ERRORS = {code: {"model": ErrorResponse} for code in (401, 403, 404, 413, 422, 429, 503)}
bearer = HTTPBearer(auto_error=False, description="an API key from BALANCEDBIO_API_KEYS")


class Service(Protocol):
    """What the routes use of serving.service.BalancedBio."""

    store: Store
    keys: KeyRing
    limiter: RateLimiter
    loaded_at: int

    def ready_engine(self) -> OnnxEngine: ...

    def control_tokens(self, engine: OnnxEngine) -> tuple[str, ...]: ...

    async def audit(self, endpoint: str, consult_id: str, key_id: str, question: str, patient, out, escalated: bool,
                    answer: str | None = None, findings: list | None = None,
                    finish_reason: str | None = None) -> None: ...


_instance: list[Service] = []


def set_service(service: Service) -> None:
    _instance[:] = [service]


def svc() -> Service:
    if not _instance:
        raise ApiError(503, "unavailable", "the service is starting; retry shortly", {"Retry-After": "5"})
    return _instance[0]


def metrics():
    """monitoring.metrics when installed; the service runs (unmeasured) without it."""
    try:
        from monitoring import metrics as module
        return module
    except ImportError:
        return None


def count(fn: str, *args) -> None:
    m = metrics()
    if m is not None:
        try:
            getattr(m, fn)(*args)
        except Exception:  # metrics must never fail a clinical request
            log.exception("metrics call %s failed", fn)


def count_dict_findings(findings: list) -> None:
    """Findings made here as dicts (control tokens) bypass the guardrails' listeners: count them."""
    for f in findings:
        if isinstance(f, dict):
            count("record_finding", f.get("kind", "other"), f.get("severity", "info"))


def authorized(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
    """The caller's key id, after the key and rate-limit checks (401/403/429 otherwise)."""
    service = svc()
    key_id = service.keys.identify(request.headers.get("authorization"))
    service.limiter.check(key_id)
    return key_id


def max_tokens(requested: int | None) -> int:
    value = requested or SETTINGS.default_max_tokens
    if value > SETTINGS.max_tokens_limit:
        raise ApiError(422, "invalid_request_error", f"max_tokens={value} is over this server's limit of "
                       f"{SETTINGS.max_tokens_limit}; ask for at most {SETTINGS.max_tokens_limit}")
    return value


def encode(engine: OnnxEngine, messages: list[dict], max_new_tokens: int) -> list[int]:
    ids = engine.encode(engine.chat_prompt(messages))
    try:
        engine.check_budget(ids, max_new_tokens)
    except PromptTooLong as e:
        raise ApiError(422, "context_length_exceeded", str(e)) from None
    return ids


async def audit_unfinished(service: Service, endpoint: str, consult_id: str, key_id: str, question: str,
                           streamed: list[str], escalated: bool, finish_reason: str, patient=None) -> None:
    """Audit a stream that did not reach its end. Shielded: after a disconnect the task is being
    cancelled, and an unshielded await would be cancelled before the row is written."""
    with anyio.CancelScope(shield=True):
        try:
            await service.audit(endpoint, consult_id, key_id, question, patient, None, escalated,
                                answer="".join(streamed), findings=[], finish_reason=finish_reason)
        except Exception:
            log.exception("audit of an unfinished stream failed")
            count("record_error", "storage")


# -- errors: every refusal is {"error": {"type", "message"}}, never FastAPI's default shapes ---------------
def _error(status: int, type_: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": type_, "message": message}}, status_code=status, headers=headers)


_ERROR_KIND = {401: "auth", 403: "auth", 413: "payload_too_large", 422: "validation", 429: "rate_limit",
               503: "model"}


async def _api_error(_: Request, e: ApiError) -> JSONResponse:
    count("record_error", _ERROR_KIND.get(e.status, "fhir" if e.type == "invalid_fhir" else "internal"))
    return _error(e.status, e.type, e.message, e.headers)


async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
    problems = []
    for err in e.errors()[:10]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    count("record_error", "validation")
    return _error(422, "invalid_request_error", "; ".join(problems) + " (see /docs for the request schema)")


async def _http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
    if e.status_code == 400:  # FastAPI's "error parsing the body" (e.g. bytes that are not UTF-8)
        count("record_error", "validation")
        return _error(422, "invalid_request_error", f"{e.detail}: send a UTF-8 JSON object (see /docs)")
    return _error(e.status_code, "invalid_request_error", str(e.detail), getattr(e, "headers", None))


async def _crash(request: Request, e: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path)  # the path only: bodies may hold PHI
    count("record_error", "internal")
    return _error(500, "internal_error", "the server failed on this request; it was logged, please report it")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _crash)
