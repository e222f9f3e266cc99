"""API keys, per-key rate limits and the request body limit: the service's front door.

Keys come from the environment (serving.config.load_keys) and are held only as SHA-256 digests;
a key file may list digests (`sha256:<hex>`) so the key itself never sits on the server's disk.
401 means no usable credentials were sent; 403 means a key was sent and is not accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time

from starlette.types import ASGIApp, Receive, Scope, Send


class ApiError(Exception):
    """An error the client can fix; rendered as {"error": {"type", "message"}} with its status."""

    def __init__(self, status: int, type_: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.type, self.message, self.headers = status, type_, message, headers or {}

    def body(self) -> dict:
        return {"error": {"type": self.type, "message": self.message}}


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyRing:
    def __init__(self, entries: tuple[str, ...] | list[str]):
        self._digests = [e[len("sha256:"):].lower() if e.startswith("sha256:") else digest(e) for e in entries]

    def __len__(self) -> int:
        return len(self._digests)

    def identify(self, authorization: str | None) -> str:
        """The caller's key id (a digest prefix, safe to log and store) or an ApiError."""
        if not self._digests:
            raise ApiError(401, "authentication_error", "the server has no API keys configured; its operator must "
                           "set BALANCEDBIO_API_KEYS or BALANCEDBIO_API_KEYS_FILE")
        if not authorization:
            raise ApiError(401, "authentication_error", "missing API key: send the header 'Authorization: Bearer <key>'",
                           {"WWW-Authenticate": "Bearer"})
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiError(401, "authentication_error", "malformed Authorization header: use 'Bearer <key>'",
                           {"WWW-Authenticate": "Bearer"})
        wanted = digest(key.strip())
        # Compare against every digest, constant-time each, so timing says nothing about which matched.
        matched = [d for d in self._digests if hmac.compare_digest(d, wanted)]
        if not matched:
            raise ApiError(403, "permission_error", "this API key is not accepted; check it or ask for a new one")
        return wanted[:12]


class RateLimiter:
    """A token bucket per key: `per_minute` requests a minute, with bursts up to the same number."""

    def __init__(self, per_minute: int):
        self.rate, self.capacity = per_minute / 60.0, float(per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key_id] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
                raise ApiError(429, "rate_limit_error", f"rate limit of {int(self.capacity)} requests a minute "
                               f"exceeded for this key; retry after {wait:.1f} s",
                               {"Retry-After": str(max(1, round(wait)))})
            self._buckets[key_id] = (tokens - 1.0, now)


class BodyLimit:
    """ASGI middleware: refuse bodies over `max_bytes` with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int, on_reject=None):
        self.app, self.max_bytes, self.on_reject = app, max_bytes, on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._reject(scope, send)
        received = 0
        too_large = False

        async def limited_receive():
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _TooLarge()
            return message

        rejected = False

        async def guarded_send(message):
            # FastAPI turns an exception raised while reading the body into its own 400; once the
            # limit is crossed, whatever the app answers is replaced by our 413.
            nonlocal rejected
            if too_large:
                if not rejected:
                    rejected = True
                    await self._reject(scope, send)
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            if not rejected:
                rejected = True
                await self._reject(scope, send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        if self.on_reject:
            self.on_reject(scope)
        error = ApiError(413, "payload_too_large", f"request body over {self.max_bytes} bytes; send a smaller "
                         "body (e.g. only the patient resources the question needs)")
        payload = json.dumps(error.body()).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


class _TooLarge(Exception):
    pass
