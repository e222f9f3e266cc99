"""UI sessions: who may upload to the clinician app, and which uploaded files a session may use.

Gradio's own routes (the upload, the file download) run before any UI function, so they cannot see
the API key the functions check with the service. This module ties them to the key server-side:

* `UiSessionGate`, ASGI middleware in front of the Gradio app, gives every browser a session id of
  the server's making in an HttpOnly cookie (SameSite=Strict, limited to the UI's path), issued on
  the first request without a valid one and added to that same request, so a function sees it.
* When the service accepts the key a UI function was called with, that session is bound (for
  `SESSION_TTL_S` after the last accepted check); when the service refuses it, it is unbound.
* The upload route answers 401 in a session that is not bound, and 429 past `MAX_UPLOADS_PER_SESSION`
  files in the last `UPLOAD_MAX_AGE_S`; the paths it returns are recorded as that session's files.
* Gradio's file route serves a session only its own uploads (404 for any other path), and its
  deep-link route (a snapshot of any session named by its hash; this app has no deep links) is off.
* `load_upload` reads only the calling session's files (ui/app.py).

The ids are signed with a key made at start: a cookie this process did not issue is replaced, and
the state lives in this process (the service runs one worker), so a restart starts new sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from ui.patients import UPLOAD_MAX_AGE_S

COOKIE = "bb_ui_session"
SESSION_TTL_S = 3600.0  # a bound session may upload this long after its key was last accepted
MAX_UPLOADS_PER_SESSION = 20  # files per session within UPLOAD_MAX_AGE_S (older ones are deleted)
MAX_SESSIONS = 4096  # the least recently used are forgotten past this
MAX_UPLOAD_REPLY_BYTES = 65536  # the upload route's reply is a short JSON list of paths
KEY_CHECK_TTL_S = 60.0  # a key the service accepted is trusted this long per session, then asked again


@dataclass
class _Session:
    bound_until: float = 0.0
    files: dict[str, float] = field(default_factory=dict)  # resolved path -> when uploaded (monotonic)


class UiSessions:
    """The server-side state of UI sessions, by signed id. Thread-safe and bounded."""

    def __init__(self, ttl_s: float = SESSION_TTL_S, max_uploads: int = MAX_UPLOADS_PER_SESSION,
                 upload_max_age_s: float = UPLOAD_MAX_AGE_S, max_sessions: int = MAX_SESSIONS):
        self.ttl_s, self.max_uploads, self.max_sessions = ttl_s, max_uploads, max_sessions
        self.upload_max_age_s = upload_max_age_s
        self._key = secrets.token_bytes(32)
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._lock = threading.Lock()

    # -- ids ------------------------------------------------------------------------------------------
    def _sign(self, token: str) -> str:
        return hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()[:32]

    def new_id(self) -> str:
        token = secrets.token_urlsafe(24)
        return f"{token}.{self._sign(token)}"

    def checked_id(self, value: str | None) -> str | None:
        """`value` when this process issued it, else None."""
        token, _, mac = (value or "").partition(".")
        if not token or len(value) > 128 or not hmac.compare_digest(mac, self._sign(token)):
            return None
        return value

    def of(self, request) -> str | None:
        """The session id of a Gradio request (its cookie, as the gate left it), or None."""
        inner = getattr(request, "request", None) if request is not None else None
        if inner is not None:
            cookies = getattr(inner, "cookies", None)
        else:  # a request Gradio rebuilt from its saved fields
            cookies = (getattr(request, "kwargs", None) or {}).get("cookies")
        return self.checked_id((cookies or {}).get(COOKIE))

    # -- binding ----------------------------------------------------------------------------------------
    def _get(self, sid: str) -> _Session:
        session = self._sessions.pop(sid, None) or _Session()
        self._sessions[sid] = session  # most recently used last
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return session

    def bind(self, sid: str | None) -> None:
        """The service accepted this session's key just now."""
        if sid:
            with self._lock:
                self._get(sid).bound_until = time.monotonic() + self.ttl_s

    def unbind(self, sid: str | None) -> None:
        """The service refused this session's key: no uploads until a key is accepted again."""
        if sid:
            with self._lock:
                if sid in self._sessions:
                    self._sessions[sid].bound_until = 0.0

    def is_bound(self, sid: str | None) -> bool:
        with self._lock:
            session = self._sessions.get(sid) if sid else None
            return session is not None and session.bound_until > time.monotonic()

    # -- files ----------------------------------------------------------------------------------------
    def _prune(self, session: _Session, now: float) -> None:
        session.files = {p: t for p, t in session.files.items() if now - t <= self.upload_max_age_s}

    def upload_room(self, sid: str) -> int:
        """How many more files this session may upload now."""
        with self._lock:
            session = self._get(sid)
            self._prune(session, time.monotonic())
            return self.max_uploads - len(session.files)

    def add_files(self, sid: str, paths: list[str]) -> bool:
        """Record `paths` as this session's uploads; False (nothing recorded) when over its limit."""
        now = time.monotonic()
        resolved = [_resolved(p) for p in paths]
        with self._lock:
            session = self._get(sid)
            self._prune(session, now)
            new = {p for p in resolved if p and p not in session.files}
            if len(session.files) + len(new) > self.max_uploads:
                return False
            session.files.update({p: now for p in resolved if p})
            return True

    def owns(self, sid: str | None, path) -> bool:
        """Whether `path` names a file this session uploaded (within UPLOAD_MAX_AGE_S)."""
        candidate = _resolved(path)
        if not sid or not candidate:
            return False
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return False
            uploaded = session.files.get(candidate)
            return uploaded is not None and time.monotonic() - uploaded <= self.upload_max_age_s


def _resolved(path) -> str | None:
    try:
        return str(Path(str(path)).resolve())
    except (OSError, ValueError, RuntimeError):
        return None


class KeyChecks:
    """Keys the service accepted, per session: (session, key digest) -> expiry. Bounded."""

    def __init__(self, ttl_s: float = KEY_CHECK_TTL_S, max_entries: int = 4096):
        self.ttl_s, self.max_entries = ttl_s, max_entries
        self._ok: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def valid(self, session: str, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return self._ok.get((session, hashlib.sha256(key.encode()).hexdigest()), 0.0) > now

    def remember(self, session: str, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._ok) >= self.max_entries:
                self._ok = {k: v for k, v in self._ok.items() if v > now}
                while len(self._ok) >= self.max_entries:
                    self._ok.pop(next(iter(self._ok)))
            self._ok[(session, hashlib.sha256(key.encode()).hexdigest())] = now + self.ttl_s


# -- the gate -------------------------------------------------------------------------------------------
_FILE_ROUTE = re.compile(r"/+gradio_api/+file[=/](.*)", re.DOTALL)
NOT_CONNECTED = ("connect with your API key first (enter it and press Connect): files are accepted only in a "
                 "UI session whose key the service has checked")


class UiSessionGate:
    """ASGI middleware for the UI mounted at `prefix` ("/ui" in the service, "" when run alone)."""

    def __init__(self, app, sessions: UiSessions, prefix: str = "/ui"):
        self.app, self.sessions, self.prefix = app, sessions, prefix.rstrip("/")

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path or not (path == self.prefix or path.startswith(self.prefix + "/")):
            return await self.app(scope, receive, send)
        headers = list(scope.get("headers") or [])
        sid = self._cookie(headers)
        if sid is None:
            sid = self.sessions.new_id()
            send = _SetCookie(send, sid, self.prefix or "/", scope.get("scheme") == "https")
        scope = {**scope, "headers": _with_cookie(headers, sid)}  # one cookie header, ours last: what Starlette reads
        raw = path[len(self.prefix):]
        route = re.sub("/+", "/", raw).rstrip("/")
        if route == "/gradio_api/upload":
            if not self.sessions.is_bound(sid):
                return await _refuse(send, 401, "authentication_error", NOT_CONNECTED)
            if self.sessions.upload_room(sid) <= 0:
                return await _refuse(send, 429, "rate_limit_error", f"at most {self.sessions.max_uploads} files an "
                                     "hour per session; load one of the files uploaded already, or wait")
            return await self.app(scope, receive, _RecordUploads(send, self.sessions, sid))
        file = _FILE_ROUTE.match(raw)  # Gradio's /file=<path> and its older /file/<path>
        if file and not self.sessions.owns(sid, file.group(1)):
            return await _refuse(send, 404, "not_found", "no such file in this session; upload it again")
        if route.startswith("/gradio_api/deep_link"):
            return await _refuse(send, 404, "not_found", "deep links are not used by this app")
        return await self.app(scope, receive, send)

    def _cookie(self, headers: list) -> str | None:
        found = None
        for name, value in headers:
            if name.lower() == b"cookie":
                for part in value.decode("latin-1").split(";"):
                    key, _, val = part.strip().partition("=")
                    if key == COOKIE and self.sessions.checked_id(val):
                        found = val  # the last valid one, as Starlette's parser keeps the last
        return found


def _with_cookie(headers: list, sid: str) -> list:
    others = []
    for name, value in headers:
        if name.lower() == b"cookie":
            others += [p.strip() for p in value.decode("latin-1").split(";")
                       if p.strip() and p.strip().partition("=")[0] != COOKIE]
    cookie = "; ".join([*others, f"{COOKIE}={sid}"]).encode("latin-1")
    return [(n, v) for n, v in headers if n.lower() != b"cookie"] + [(b"cookie", cookie)]


class _SetCookie:
    def __init__(self, send, sid: str, path: str, secure: bool):
        self.send = send
        attributes = f"{COOKIE}={sid}; Path={path}; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")
        self.header = (b"set-cookie", attributes.encode("latin-1"))

    async def __call__(self, message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), self.header]}
        await self.send(message)


class _RecordUploads:
    """The upload route's send(): its reply (the stored paths) is held, recorded as the session's
    files, then sent; over the session's limit it becomes a 429 and nothing is recorded."""

    def __init__(self, send, sessions: UiSessions, sid: str):
        self.send, self.sessions, self.sid = send, sessions, sid
        self.start: dict | None = None
        self.body, self.done = b"", False

    async def __call__(self, message):
        if self.done:  # answered already (a refusal): the rest of Gradio's reply is dropped
            return None
        if message["type"] == "http.response.start":
            if message["status"] != 200:
                return await self.send(message)
            self.start = message
            return None
        if message["type"] != "http.response.body" or self.start is None:
            return await self.send(message)
        self.body += message.get("body", b"")
        if message.get("more_body") and len(self.body) <= MAX_UPLOAD_REPLY_BYTES:
            return None
        paths = None
        if not message.get("more_body"):
            try:
                paths = json.loads(self.body)
            except ValueError:
                pass
        self.done = True
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            # Not the list of paths Gradio answers with: nothing is recorded, so nothing is loadable.
            return await _refuse(self.send, 502, "upload_error", "the upload was not stored; try again")
        if not self.sessions.add_files(self.sid, paths):
            return await _refuse(self.send, 429, "rate_limit_error", f"at most {self.sessions.max_uploads} files "
                                 "an hour per session; load one of the files uploaded already, or wait")
        await self.send(self.start)
        await self.send({"type": "http.response.body", "body": self.body})


async def _refuse(send, status: int, type_: str, message: str) -> None:
    payload = json.dumps({"error": {"type": type_, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
