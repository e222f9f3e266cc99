"""ui/sessions.py without a server: signed session ids, binding, per-session files, and the ASGI gate
in front of a stand-in for Gradio's routes. The real server is replayed in tests/security/test_ui_attacks.py."""

from __future__ import annotations

import json

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from ui import sessions as ui_sessions
from ui.sessions import COOKIE, UiSessionGate, UiSessions


@pytest.fixture
def clock(monkeypatch):
    """ui.sessions' monotonic clock, moved by hand."""
    now = [1000.0]
    monkeypatch.setattr(ui_sessions.time, "monotonic", lambda: now[0])
    return now


def test_ids_are_signed_by_the_process_that_issued_them():
    a, b = UiSessions(), UiSessions()
    sid = a.new_id()
    assert a.checked_id(sid) == sid
    assert b.checked_id(sid) is None  # another process's (or a restarted server's) cookie
    token, _, mac = sid.partition(".")
    for forged in (f"{token}.{'0' * len(mac)}", token, "", None, "x" * 200, f"other.{mac}"):
        assert a.checked_id(forged) is None, forged


def test_binding_lasts_its_ttl_and_a_refused_key_unbinds(clock):
    s = UiSessions(ttl_s=60)
    sid = s.new_id()
    assert not s.is_bound(sid)
    s.bind(sid)
    assert s.is_bound(sid)
    clock[0] += 61
    assert not s.is_bound(sid)
    s.bind(sid)
    s.unbind(sid)
    assert not s.is_bound(sid) and not s.is_bound(None)


def test_files_belong_to_their_session_for_the_upload_age_only(clock, tmp_path):
    s = UiSessions(max_uploads=2, upload_max_age_s=3600)
    a, b = s.new_id(), s.new_id()
    f1, f2, f3 = (tmp_path / f"{n}.json" for n in (1, 2, 3))
    assert s.add_files(a, [str(f1)])
    assert s.owns(a, f1) and s.owns(a, tmp_path / "x" / ".." / "1.json")  # the same file, however it is spelled
    assert not s.owns(b, f1) and not s.owns(None, f1) and not s.owns(a, f2)
    assert s.add_files(a, [str(f1), str(f2)]) and s.upload_room(a) == 0  # f1 again is not a new file
    assert not s.add_files(a, [str(f3)]) and not s.owns(a, f3)  # over the limit: nothing recorded
    clock[0] += 3601
    assert not s.owns(a, f1) and s.upload_room(a) == 2  # aged out with the file's clean-up


def test_the_session_table_is_bounded():
    s = UiSessions(max_sessions=2)
    first, second, third = s.new_id(), s.new_id(), s.new_id()
    for sid in (first, second, third):
        s.bind(sid)
    assert not s.is_bound(first) and s.is_bound(second) and s.is_bound(third)


# -- the gate in front of a stand-in for Gradio ----------------------------------------------------------------
def gradio_stand_in(stored: list[str]) -> Starlette:
    async def page(request: Request):
        return JSONResponse({"cookie": request.cookies.get(COOKIE), "headers": request.headers.getlist("cookie")})

    async def upload(_):
        return JSONResponse(stored)

    async def file(request: Request):
        return PlainTextResponse("served " + request.path_params["path"])

    return Starlette(routes=[Route("/ui/", page), Route("/elsewhere", page),
                             Route("/ui/gradio_api/upload", upload, methods=["POST"]),
                             Route("/ui/gradio_api/file={path:path}", file),
                             Route("/ui/gradio_api/deep_link", page)])


@pytest.fixture
def gate(tmp_path):
    stored = [str(tmp_path / "hash1" / "bundle.json")]
    sessions = UiSessions(max_uploads=2)
    client = TestClient(UiSessionGate(gradio_stand_in(stored), sessions, prefix="/ui"))
    return client, sessions, stored


def test_the_gate_issues_an_httponly_cookie_that_the_same_request_already_carries(gate):
    client, sessions, _ = gate
    first = client.get("/ui/", headers={"cookie": f"theme=dark; {COOKIE}=forged.value"})
    set_cookie = first.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie and "Path=/ui" in set_cookie
    issued = first.cookies[COOKIE]
    assert sessions.checked_id(issued) == issued
    assert first.json()["cookie"] == issued  # the forged value is gone, other cookies stay, in one header
    assert first.json()["headers"] == [f"theme=dark; {COOKIE}={issued}"]
    again = client.get("/ui/")  # the client's jar sends it back: kept, no new cookie
    assert again.json()["cookie"] == issued and "set-cookie" not in again.headers
    assert "set-cookie" not in client.get("/elsewhere").headers  # only the UI's paths


def test_upload_needs_a_bound_session_and_is_recorded_for_it(gate):
    client, sessions, stored = gate
    for spelling in ("/ui/gradio_api/upload", "/ui//gradio_api/upload/", "/ui/gradio_api//upload"):
        refused = client.post(spelling, files={"files": ("b.json", b"{}")}, follow_redirects=False)
        assert refused.status_code == 401 and "press Connect" in refused.json()["error"]["message"], spelling
    sid = client.cookies[COOKIE]
    assert not sessions.owns(sid, stored[0])
    sessions.bind(sid)  # what a UI function does when the service accepts the key
    accepted = client.post("/ui/gradio_api/upload", files={"files": ("b.json", b"{}")})
    assert accepted.status_code == 200 and accepted.json() == stored
    assert sessions.owns(sid, stored[0])


def test_upload_count_per_session_is_limited(gate, tmp_path):
    client, sessions, stored = gate
    client.get("/ui/")
    sessions.bind(client.cookies[COOKIE])
    for n in range(2):
        stored[:] = [str(tmp_path / f"h{n}" / "b.json")]
        assert client.post("/ui/gradio_api/upload", files={"files": ("b.json", b"{}")}).status_code == 200
    stored[:] = [str(tmp_path / "h9" / "b.json")]
    over = client.post("/ui/gradio_api/upload", files={"files": ("b.json", b"{}")})
    assert over.status_code == 429 and "at most 2 files" in over.json()["error"]["message"]
    assert not sessions.owns(client.cookies[COOKIE], stored[0])


def test_files_are_served_only_to_the_session_that_uploaded_them(gate):
    client, sessions, stored = gate
    client.get("/ui/")
    sessions.bind(client.cookies[COOKIE])
    client.post("/ui/gradio_api/upload", files={"files": ("b.json", b"{}")})
    assert client.get(f"/ui/gradio_api/file={stored[0]}").text == f"served {stored[0]}"
    other = TestClient(client.app)  # another browser: its own cookie
    for path in (f"/ui/gradio_api/file={stored[0]}", f"/ui/gradio_api/file/{stored[0]}", "/ui/gradio_api/file=/etc/hostname"):
        refused = other.get(path)
        assert refused.status_code == 404 and stored[0] not in refused.text, path
    assert client.get("/ui/gradio_api/deep_link?session_hash=x").status_code == 404
    assert json.loads(client.get("/ui/gradio_api/file=/etc/hostname").text)["error"]["type"] == "not_found"
