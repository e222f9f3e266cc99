"""The service's ASGI middleware (kept apart from the routes in serving/service.py).

RequestMetrics: every request's endpoint, status and latency to monitoring.metrics.
Guard: the routes BentoML and Gradio own, which our FastAPI dependency `authorized` cannot reach:
    * /metrics per BALANCEDBIO_METRICS_ACCESS: "key" needs an API key or a BALANCEDBIO_METRICS_KEYS
      key (401/403 otherwise); "open" and "reduced" are served ("reduced" is filtered by the
      service's __metrics__ hook);
    * /readyz says so while CDS Hooks runs unsigned or refuses every call: in its body (a line
      "warning: ..." after BentoML's own text, whose status code probes read, unchanged) and in the
      X-BalancedBio-Warning header;
    * Gradio's upload route is rate-limited per client address (it cannot carry an API key).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from serving.auth import ApiError, KeyRing, RateLimiter

UPLOADS_PER_MINUTE = 30
_ERROR_KIND = {401: "auth", 403: "auth", 429: "rate_limit"}


class RequestMetrics:
    def __init__(self, app, count: Callable[..., None]):
        self.app, self.count = app, count

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
            self.count("observe_request", scope.get("path", ""), status, time.perf_counter() - started)


class Guard:
    def __init__(self, app, settings, count: Callable[..., None], warning: Callable[[], str]):
        self.app, self.settings, self.count, self.warning = app, settings, count, warning
        self.metrics_keys = KeyRing([*settings.api_keys, *settings.metrics_keys])
        self.uploads = RateLimiter(UPLOADS_PER_MINUTE)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        try:
            if path == "/metrics" and self.settings.metrics_access == "key":
                authorization = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
                self.metrics_keys.identify(authorization or None)
            elif path.startswith("/ui/") and path.rstrip("/").endswith("/gradio_api/upload"):
                self.uploads.check("upload:" + str((scope.get("client") or ("?",))[0]))
        except ApiError as e:
            self.count("record_error", _ERROR_KIND.get(e.status, "internal"))
            return await _send_error(e, send)
        warning = self.warning() if path == "/readyz" else ""
        if warning:
            return await self.app(scope, receive, _WarningReply(send, warning, scope.get("method") == "HEAD"))
        return await self.app(scope, receive, send)


def readyz_text(status: int, original: str, warning: str) -> str:
    """/readyz's body with the warning: BentoML's text (a bare newline when ready) then the warning."""
    first = original.strip() or ("ready" if status < 400 else "not ready")
    return f"{first}\nwarning: {warning}\n"


class _WarningReply:
    """The send() of a /readyz reply with the warning added to its header and body. The body is
    BentoML's small text, so it is held until complete and sent again with the new length."""

    def __init__(self, send, warning: str, head: bool):
        self.send, self.warning, self.head = send, warning, head
        self.start: dict | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message):
        if message["type"] == "http.response.start":
            headers = [*message.get("headers", []), (b"x-balancedbio-warning", self.warning.encode())]
            if self.head:  # no body to change; the header says it
                return await self.send({**message, "headers": headers})
            self.start = {**message, "headers": headers}
            return None
        if message["type"] != "http.response.body" or self.start is None:
            return await self.send(message)
        self.chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return None
        status = self.start["status"]
        body = readyz_text(status, b"".join(self.chunks).decode("utf-8", "replace"), self.warning).encode()
        headers = [(k, v) for k, v in self.start["headers"] if k.lower() not in (b"content-length", b"content-type")]
        headers += [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})


async def _send_error(e: ApiError, send) -> None:
    payload = json.dumps(e.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
               *((k.lower().encode(), v.encode()) for k, v in e.headers.items())]
    await send({"type": "http.response.start", "status": e.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
