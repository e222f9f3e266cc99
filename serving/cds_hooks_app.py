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
    """FHIR base URLs this service may call with a client's token (BALANCEDBIO_FHIR_SERVERS: exact
    origin plus base path). Empty: never fetch, rely on prefetch (and say so on the card)."""
    from serving.config import fhir_servers

    return fhir_servers()


def _default_factory(fhir_server: str, token: str | None) -> FHIRClient:
    from serving.config import fhir_server_allowed

    if not fhir_server_allowed(fhir_server, allowed_fhir_servers()):
        raise PermissionError("FHIR server not in BALANCEDBIO_FHIR_SERVERS")
    return FHIRClient(fhir_server, token)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


UNSIGNED_CLIENT = "unsigned"
NO_ISSUERS = ("CDS Hooks has no trusted JWT issuers configured, so every call is refused: the operator must set "
              "BALANCEDBIO_CDS_JWT_ISSUERS and BALANCEDBIO_CDS_PUBLIC_URL (or, for development only, "
              "BALANCEDBIO_CDS_ALLOW_UNSIGNED=1)")


def create_cds_app(record_feedback: Callable[[dict], object] | None = None,
                   fhir_client_factory: FhirClientFactory | None = None, jwt_settings: JWTSettings | None = None,
                   allow_unsigned: bool | None = None, max_feedback_items: int = 20,
                   record_cards: Callable[[str, str, list[str]], None] | None = None):
    """The CDS Hooks ASGI app; it fails closed.

    jwt_settings None: read from the environment (JWTSettings.from_env). With no issuers anywhere,
    every call is refused with 401 unless `allow_unsigned` (default: BALANCEDBIO_CDS_ALLOW_UNSIGNED=1),
    a development switch that is logged as a warning. With issuers, the expected audience must be
    fixed (`audience` or `public_base_url`): the app refuses to be built otherwise.
    record_feedback(item) stores one feedback item (idempotent per card and outcome; a LookupError
    means the card was not returned to this client: 404); record_cards(service_id, client, uuids)
    remembers which client received which cards. Both run in a worker thread, never on the event loop."""
    _wire_metrics()
    jwt_settings = jwt_settings if jwt_settings is not None else JWTSettings.from_env()
    if allow_unsigned is None:
        allow_unsigned = os.environ.get("BALANCEDBIO_CDS_ALLOW_UNSIGNED", "").strip().lower() in ("1", "true", "yes", "on")
    if jwt_settings is None:
        if allow_unsigned:
            log.warning("CDS Hooks accepts UNSIGNED calls (BALANCEDBIO_CDS_ALLOW_UNSIGNED=1): development only; "
                        "set BALANCEDBIO_CDS_JWT_ISSUERS and BALANCEDBIO_CDS_PUBLIC_URL in production")
        else:
            log.warning("CDS Hooks refuses every call (401): %s", NO_ISSUERS)
    elif not (jwt_settings.audience or jwt_settings.public_base_url):
        raise ValueError("CDS Hooks JWT verification needs a fixed audience: set BALANCEDBIO_CDS_PUBLIC_URL to the "
                         "public URL EHRs call (e.g. https://cds.example.org/cds-services)")
    factory = fhir_client_factory or _default_factory
    verifier = JWTVerifier(jwt_settings) if jwt_settings is not None else None
    stats: Counter = Counter()

    async def authorise(request: Request) -> JSONResponse | str:
        """The calling client (JWT issuer, or "unsigned" with the development switch) or a 401."""
        if verifier is None:
            if allow_unsigned:
                return UNSIGNED_CLIENT
            stats["auth_refused"] += 1
            return JSONResponse({"error": f"unauthorized: {NO_ISSUERS}"}, status_code=401,
                                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        try:
            # spec: `aud` is the CDS Service endpoint called; its feedback endpoint accepts the same.
            # The audience is the configured public URL, never the Host header the caller sent.
            audience = jwt_settings.expected_audience(request.path_params["service_id"])
            # A JWKS fetch is blocking network I/O (up to its timeout): off the event loop.
            claims = await run_in_threadpool(verifier.verify, request.headers.get("authorization"), audience)
        except JWTVerificationError as exc:
            stats["auth_refused"] += 1
            return JSONResponse({"error": f"unauthorized: {exc}"}, status_code=401,
                                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return str(claims["iss"])

    async def accept(request: Request, model: type[pydantic.BaseModel], what: str):
        """(service_id, parsed body, client) of a POST, or the error response: 404, 401, 413 or 400."""
        service_id = request.path_params["service_id"]
        if service_id not in cds_hooks.SERVICES_BY_ID:
            return _error(404, f"no CDS service {service_id!r}; GET the discovery endpoint for the list")
        client = await authorise(request)
        if isinstance(client, JSONResponse):
            return client
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
            return service_id, model.model_validate(data), client
        except pydantic.ValidationError as exc:
            return _error(400, f"invalid {what}: " + "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5]))

    async def discovery(request: Request) -> JSONResponse:
        return JSONResponse(cds_hooks.discovery_document())

    async def call_service(request: Request) -> JSONResponse:
        accepted = await accept(request, cds_hooks.HookRequest, "CDS Hooks request")
        if isinstance(accepted, JSONResponse):
            return accepted
        service_id, hook_request, caller = accepted
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
        payload = response.model_dump(exclude_none=True)
        if record_cards is not None:
            uuids = [c["uuid"] for c in payload.get("cards") or [] if c.get("uuid")]
            try:
                await run_in_threadpool(record_cards, service_id, caller, uuids)
            except Exception as exc:  # feedback on these cards will be refused; the cards still go out
                log.error("CDS cards not recorded: %s", type(exc).__name__)
        return JSONResponse(payload)

    async def feedback(request: Request) -> JSONResponse:
        accepted = await accept(request, cds_hooks.FeedbackRequest, "feedback")
        if isinstance(accepted, JSONResponse):
            return accepted
        service_id, parsed, caller = accepted
        if len(parsed.feedback) > max_feedback_items:
            return _error(413, f"{len(parsed.feedback)} feedback items in one request; send at most "
                          f"{max_feedback_items} per request")
        records = []
        for item in parsed.feedback:
            reason = item.overrideReason.reason.code if item.overrideReason and item.overrideReason.reason else None
            records.append({"service_id": service_id, "card": item.card, "outcome": item.outcome, "client": caller,
                            "override_reason": reason,
                            "override_comment": item.overrideReason.userComment if item.overrideReason else None,
                            "accepted_suggestions": [s.id for s in item.acceptedSuggestions or []],
                            "outcome_timestamp": item.outcomeTimestamp})

        def store_all() -> list[bool]:
            """Whether each item was new (a repeat of a stored card+outcome is not counted again)."""
            new = []
            for record in records:
                if record_feedback is None:
                    new.append(True)
                    continue
                result = record_feedback(record)
                new.append(result is not False)  # the callback returns False for a repeat
            return new

        try:
            # Database writes (an fsync each) in a worker thread: the event loop keeps serving probes.
            new = await run_in_threadpool(store_all)
        except LookupError as exc:
            return _error(404, f"{exc}; send feedback only on cards this service returned to you")
        except Exception as exc:
            log.error("CDS feedback not stored: %s", type(exc).__name__)
            return _error(503, "feedback could not be stored; send it again later")
        for record, is_new in zip(records, new):
            if is_new:
                stats[f"feedback:{record['outcome']}"] += 1
                _count_feedback(record["outcome"])
        return JSONResponse({})

    app = Starlette(routes=[
        Route("/", discovery, methods=["GET"]),
        Route("/{service_id}", call_service, methods=["POST"]),
        Route("/{service_id}/feedback", feedback, methods=["POST"]),
    ])
    app.state.stats = stats
    app.state.unsigned = verifier is None and allow_unsigned
    app.state.refusing = verifier is None and not allow_unsigned
    return app
