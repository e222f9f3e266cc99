"""Issue 13, finding 2: CDS Hooks was open by default (300 fabricated `accepted` items moved the
acceptance metric from 0 to 100 %), feedback writes stalled the event loop, a token for another
audience passed without BALANCEDBIO_CDS_PUBLIC_URL, and the issuer key fetch blocked the loop.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import start_server

ORDER_SIGN = "/cds-services/balancedbio-order-sign"
HOOK = {"hook": "order-sign", "hookInstance": "sec-1",
        "context": {"userId": "Practitioner/1", "patientId": "x",
                    "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
                        "resourceType": "MedicationRequest", "id": "d1", "status": "draft", "intent": "order",
                        "subject": {"reference": "Patient/x"},
                        "medicationCodeableConcept": {"text": "Clarithromycin 500 MG Oral Tablet"}}}]}},
        "prefetch": {"patient": {"resourceType": "Patient", "id": "x", "gender": "male", "birthDate": "1960-01-01"},
                     "medications": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
                         "resourceType": "MedicationRequest", "id": "m0", "status": "active", "intent": "order",
                         "subject": {"reference": "Patient/x"},
                         "medicationCodeableConcept": {"text": "Simvastatin 40 MG"}}}]},
                     "conditions": {"resourceType": "Bundle", "type": "searchset"},
                     "allergies": {"resourceType": "Bundle", "type": "searchset"}}}


def accepted(cards: list[str]) -> dict:
    return {"feedback": [{"card": c, "outcome": "accepted", "outcomeTimestamp": "2026-12-02T09:00:00Z"} for c in cards]}


def accept_count(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=30).text
    match = re.search(r'^balancedbio_feedback_total\{outcome="accept"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


# -- the running server, no development switch -------------------------------------------------------
@pytest.mark.e2e
def test_cds_hooks_without_issuers_refuses_every_call(hardened):
    call = httpx.post(hardened.url + ORDER_SIGN, json=HOOK, timeout=60)
    assert call.status_code == 401 and "BALANCEDBIO_CDS_JWT_ISSUERS" in call.json()["error"], call.text
    before = accept_count(hardened.url)
    fabricated = httpx.post(hardened.url + ORDER_SIGN + "/feedback", json=accepted([str(uuid.uuid4()) for _ in range(300)]),
                            timeout=60)
    assert fabricated.status_code == 401
    assert accept_count(hardened.url) == before, "unauthenticated feedback moved the acceptance metric"
    ready = httpx.get(hardened.url + "/readyz", timeout=10)
    assert ready.status_code == 200 and "refuses every call" in ready.headers["x-balancedbio-warning"]
    assert ready.text.startswith("ready\nwarning: CDS Hooks refuses every call"), ready.text


@pytest.mark.e2e
def test_jwt_on_without_a_public_url_refuses_to_start(base_export, tmp_path):
    """With issuers configured the audience must be fixed: the server does not start without it."""
    env = {"BALANCEDBIO_CDS_JWT_ISSUERS": json.dumps({"https://ehr.example.org": "https://ehr.example.org/jwks.json"}),
           "BALANCEDBIO_CDS_PUBLIC_URL": ""}
    with pytest.raises(pytest.fail.Exception) as refused:
        server = start_server(base_export, tmp_path / "nourl", **env)
        server.kill()  # reached only if it (wrongly) started
    assert "BALANCEDBIO_CDS_PUBLIC_URL" in str(refused.value)


# -- the running server with the development switch ---------------------------------------------------
@pytest.fixture(scope="module")
def unsigned(base_export, tmp_path_factory):
    srv = start_server(base_export, tmp_path_factory.mktemp("unsigned"), BALANCEDBIO_CDS_ALLOW_UNSIGNED="1",
                       BALANCEDBIO_CDS_MAX_FEEDBACK_ITEMS="20")
    yield srv
    srv.kill()


def feedback_rows(server, card: str) -> list[tuple]:
    with sqlite3.connect(server.data_dir / "balancedbio.db") as db:
        return db.execute("SELECT outcome, source FROM feedback WHERE card_uuid = ?", (card,)).fetchall()


@pytest.mark.e2e
def test_development_switch_is_announced_by_readyz(unsigned):
    ready = httpx.get(unsigned.url + "/readyz", timeout=10)
    assert ready.status_code == 200
    assert "unsigned" in ready.headers["x-balancedbio-warning"] and "ALLOW_UNSIGNED" in ready.headers["x-balancedbio-warning"]
    # The body says it too (issue 13: "the startup log and /readyz say so"), after BentoML's own text.
    assert ready.text.splitlines() == ["ready", "warning: CDS Hooks accepts unsigned calls "
                                       "(BALANCEDBIO_CDS_ALLOW_UNSIGNED=1, development only)"], ready.text
    assert "accepts UNSIGNED calls" in unsigned.log_path.read_text(errors="replace")


@pytest.mark.e2e
def test_cds_feedback_is_idempotent_bounded_and_only_for_issued_cards(unsigned):
    response = httpx.post(unsigned.url + ORDER_SIGN, json=HOOK, timeout=120)
    assert response.status_code == 200, response.text
    card = response.json()["cards"][0]["uuid"]
    before = accept_count(unsigned.url)
    for _ in range(3):  # the original attack repeated the same outcome without limit
        assert httpx.post(unsigned.url + ORDER_SIGN + "/feedback", json=accepted([card]), timeout=30).status_code == 200
    assert feedback_rows(unsigned, card) == [("accepted", "cds-hooks")]
    assert accept_count(unsigned.url) == before + 1
    never_issued = httpx.post(unsigned.url + ORDER_SIGN + "/feedback", json=accepted([str(uuid.uuid4())]), timeout=30)
    assert never_issued.status_code == 404 and "returned" in never_issued.json()["error"]
    too_many = httpx.post(unsigned.url + ORDER_SIGN + "/feedback", json=accepted([card] * 21), timeout=30)
    assert too_many.status_code == 413 and "at most 20" in too_many.json()["error"]


@pytest.mark.e2e
def test_feedback_writes_do_not_stall_the_event_loop(unsigned):
    """Each item was an fsync'ed write on the event loop: /livez waited 0.8 s per request. Now the
    writes run in worker threads: /livez answers while 8 clients send 20-item feedback bodies."""
    cards = []
    for i in range(4):
        r = httpx.post(unsigned.url + ORDER_SIGN, json={**HOOK, "hookInstance": f"stall-{i}"}, timeout=120)
        cards += [c["uuid"] for c in r.json()["cards"]]
    bodies = [accepted([str(uuid.uuid4()) for _ in range(19)] + [cards[i % len(cards)]]) for i in range(8)]
    probes: list[float] = []
    stop = threading.Event()

    def probe():
        while not stop.is_set() and len(probes) < 200:  # bounded
            started = time.perf_counter()
            httpx.get(unsigned.url + "/livez", timeout=30)
            probes.append(time.perf_counter() - started)
            time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with httpx.Client(timeout=60) as client:
            threads = [threading.Thread(target=client.post, args=(unsigned.url + ORDER_SIGN + "/feedback",),
                                        kwargs={"json": body}) for body in bodies]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
    finally:
        stop.set()
        prober.join(timeout=60)
    assert probes and max(probes) < 1.0, f"/livez took up to {max(probes):.2f} s during feedback writes"


# -- the app, JWT on ------------------------------------------------------------------------------------
ISS = "https://ehr.example.org"
PUBLIC = "https://cds.example.org/cds-services"
KEY = ec.generate_private_key(ec.SECP256R1())


def token(aud: str) -> str:
    now = int(time.time())
    return jwt.encode({"iss": ISS, "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}, KEY,
                      algorithm="ES256", headers={"kid": "k1", "typ": "JWT"})


class SlowJWKS:
    """A JWKS endpoint that answers after `delay` seconds and counts its requests."""

    def __init__(self, delay: float):
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key()))
        body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "ES256"}]}).encode()
        outer = self
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests += 1
                time.sleep(delay)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_token_for_another_audience_is_refused():
    """The Host header (here the test client's) no longer decides the audience."""
    from starlette.testclient import TestClient

    from serving.cds_hooks_app import create_cds_app
    from serving.cds_jwt import JWTSettings

    app = create_cds_app(jwt_settings=JWTSettings.single(ISS, keys={"k1": KEY.public_key()}, public_base_url=PUBLIC))
    client = TestClient(app)
    for aud in ("http://testserver/balancedbio-order-sign", "https://other-service.example/cds-services/balancedbio-order-sign"):
        refused = client.post("/balancedbio-order-sign", json=HOOK, headers={"Authorization": f"Bearer {token(aud)}"})
        assert refused.status_code == 401 and "audience" in refused.json()["error"], aud
    ok = client.post("/balancedbio-order-sign", json=HOOK,
                     headers={"Authorization": f"Bearer {token(PUBLIC + '/balancedbio-order-sign')}"})
    assert ok.status_code == 200, ok.text


def test_jwks_fetch_runs_off_the_event_loop_and_is_cached():
    from serving.cds_hooks_app import create_cds_app
    from serving.cds_jwt import JWTSettings

    async def scenario(jwks: SlowJWKS) -> tuple[float, float]:
        app = create_cds_app(jwt_settings=JWTSettings.single(ISS, jwks_url=jwks.url, public_base_url=PUBLIC))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cds.local") as client:
            started = time.perf_counter()
            signed = asyncio.create_task(client.post("/balancedbio-order-sign", json=HOOK, headers={
                "Authorization": f"Bearer {token(PUBLIC + '/balancedbio-order-sign')}"}))
            await asyncio.sleep(0.2)
            discovery = await client.get("/")
            discovery_done = time.perf_counter() - started
            assert discovery.status_code == 200
            response = await signed
            assert response.status_code == 200, response.text
            signed_done = time.perf_counter() - started
            again = await client.post("/balancedbio-order-sign", json=HOOK, headers={
                "Authorization": f"Bearer {token(PUBLIC + '/balancedbio-order-sign')}"})
            assert again.status_code == 200
            return discovery_done, signed_done

    with SlowJWKS(delay=1.5) as jwks:
        discovery_done, signed_done = asyncio.run(scenario(jwks))
        assert discovery_done < 1.0 < signed_done, (discovery_done, signed_done)  # answered during the fetch
        assert jwks.requests == 1  # the second call used the cached key set
