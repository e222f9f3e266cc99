"""CDS Hooks 2.0 over HTTP: a Starlette ASGI app, mounted by the service at /cds-services.

    GET  /                      discovery
    POST /{service_id}          call a service (patient-view, order-select, order-sign)
    POST /{service_id}/feedback clinician feedback on cards (spec "Feedback")

The clinical work is clinical.cds_hooks.handle_hook; this module does transport only: JWT
verification, JSON parsing with errors a client can act on (400, never 500), FHIR fetches for
missing prefetch, and feedback recording.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable

import pydantic
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from clinical import cds_hooks
from clinical.guardrails import add_listeners
from clinical.guardrails.models import unavailable
from serving.cds_jwt import JWTSettings, JWTVerificationError, JWTVerifier
from serving.fhir_client import FHIRClient

log = logging.getLogger(__name__)
MAX_BODY = 5 * 2**20  # a prefetch of a long record is large, but not this large

FhirClientFactory = Callable[[str, str | None], FHIRClient]


def _count_finding(finding) -> None:
    from monitoring import metrics

    metrics.record_finding(finding.kind, finding.severity)


def _count_unavailable(_check: str) -> None:
    from monitoring import metrics

    metrics.record_error("guardrail_unavailable")


def _count_feedback(outcome: str) -> None:
    """CDS feedback as clinician acceptance: spec accepted/overridden -> the metric's accept/override."""
    try:
        from monitoring import metrics
    except ImportError:
        return
    try:
        metrics.record_feedback({"accepted": "accept", "overridden": "override"}[outcome], None)
    except Exception:
        log.exception("feedback metric failed")


def _wire_metrics() -> None:
    """Guardrail findings and fail-closed events -> Prometheus (module-level functions, so creating
    several apps registers them once and nothing is counted twice)."""
    try:
        import monitoring.metrics  # noqa: F401
    except ImportError:
        return
    add_listeners(on_finding=_count_finding, on_error=_count_unavailable)


def allowed_fhir_servers() -> list[str]:
    """FHIR base URLs this service may call with a client's token (BALANCEDBIO_FHIR_SERVERS,
    comma-separated prefixes). Empty: never fetch, rely on prefetch (and say so on the card)."""
    return [s.strip() for s in os.environ.get("BALANCEDBIO_FHIR_SERVERS", "").split(",") if s.strip()]


def _default_factory(fhir_server: str, token: str | None) -> FHIRClient:
    if not any(fhir_server.startswith(prefix) for prefix in allowed_fhir_servers()):
        raise PermissionError("FHIR server not in BALANCEDBIO_FHIR_SERVERS")
    return FHIRClient(fhir_server, token)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_cds_app(record_feedback: Callable[[dict], None] | None = None, fhir_client_factory: FhirClientFactory | None = None,
                   jwt_settings: JWTSettings | None = None):
    """The CDS Hooks ASGI app.

    jwt_settings None: read from the environment (JWTSettings.from_env); with nothing configured
    there either, JWT checks are off and a warning says so (tests, local use only)."""
    _wire_metrics()
    jwt_settings = jwt_settings if jwt_settings is not None else JWTSettings.from_env()
    if jwt_settings is None:
        log.warning("CDS Hooks JWT verification is OFF: set BALANCEDBIO_CDS_JWT_ISSUERS in production")
    factory = fhir_client_factory or _default_factory
    verifier = JWTVerifier(jwt_settings) if jwt_settings is not None else None
    stats: Counter = Counter()

    def authorise(request: Request) -> JSONResponse | None:
        if verifier is None:
            return None
        try:
            # spec: `aud` is the CDS Service endpoint called; its feedback endpoint accepts the same.
            endpoint = str(request.url.replace(query="")).removesuffix("/feedback")
            if jwt_settings.public_base_url:
                endpoint = f"{jwt_settings.public_base_url.rstrip('/')}/{request.path_params['service_id']}"
            verifier.verify(request.headers.get("authorization"), endpoint)
        except JWTVerificationError as exc:
            stats["auth_refused"] += 1
            return JSONResponse({"error": f"unauthorized: {exc}"}, status_code=401,
                                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return None

    async def accept(request: Request, model: type[pydantic.BaseModel], what: str):
        """(service_id, parsed body) of a POST, or the error response: 404, 401, 413 or 400."""
        service_id = request.path_params["service_id"]
        if service_id not in cds_hooks.SERVICES_BY_ID:
            return _error(404, f"no CDS service {service_id!r}; GET the discovery endpoint for the list")
        refused = authorise(request)
        if refused:
            return refused
        body = await request.body()
        if len(body) > MAX_BODY:
            return _error(413, f"request body over {MAX_BODY} bytes")
        try:
            data = json.loads(body)
        except ValueError as exc:
            return _error(400, f"body is not JSON ({exc}); send application/json")
        if not isinstance(data, dict):
            return _error(400, "body must be a JSON object")
        try:
            return service_id, model.model_validate(data)
        except pydantic.ValidationError as exc:
            return _error(400, f"invalid {what}: " + "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5]))

    async def discovery(request: Request) -> JSONResponse:
        return JSONResponse(cds_hooks.discovery_document())

    async def call_service(request: Request) -> JSONResponse:
        accepted = await accept(request, cds_hooks.HookRequest, "CDS Hooks request")
        if isinstance(accepted, JSONResponse):
            return accepted
        service_id, hook_request = accepted
        client = None
        if hook_request.fhirServer:
            token = hook_request.fhirAuthorization.access_token if hook_request.fhirAuthorization else None
            try:
                client = factory(hook_request.fhirServer, token)
            except Exception as exc:
                log.warning("no FHIR access for service %s: %s", service_id, type(exc).__name__)
        try:
            response, _findings = await run_in_threadpool(
                cds_hooks.handle_hook, service_id, hook_request, client.get if client else None)
        except cds_hooks.HookInputError as exc:
            return _error(400, str(exc))
        except Exception as exc:  # fail closed: a crash must read as "unchecked", not as "no alerts"
            log.error("CDS service %s failed: %s", service_id, type(exc).__name__)
            response = cds_hooks.CDSResponse(cards=[cds_hooks.finding_to_card(unavailable(service_id, exc))])
        finally:
            if client is not None:
                client.close()
        stats[f"calls:{service_id}"] += 1
        return JSONResponse(response.model_dump(exclude_none=True))

    async def feedback(request: Request) -> JSONResponse:
        accepted = await accept(request, cds_hooks.FeedbackRequest, "feedback")
        if isinstance(accepted, JSONResponse):
            return accepted
        service_id, parsed = accepted
        for item in parsed.feedback:
            reason = item.overrideReason.reason.code if item.overrideReason and item.overrideReason.reason else None
            record = {"service_id": service_id, "card": item.card, "outcome": item.outcome,
                      "override_reason": reason,
                      "override_comment": item.overrideReason.userComment if item.overrideReason else None,
                      "accepted_suggestions": [s.id for s in item.acceptedSuggestions or []],
                      "outcome_timestamp": item.outcomeTimestamp}
            if record_feedback is not None:
                try:
                    record_feedback(record)
                except Exception as exc:
                    log.error("CDS feedback not stored: %s", type(exc).__name__)
                    return _error(503, "feedback could not be stored; send it again later")
            stats[f"feedback:{item.outcome}"] += 1
            _count_feedback(item.outcome)
        return JSONResponse({})

    app = Starlette(routes=[
        Route("/", discovery, methods=["GET"]),
        Route("/{service_id}", call_service, methods=["POST"]),
        Route("/{service_id}/feedback", feedback, methods=["POST"]),
    ])
    app.state.stats = stats
    return app
