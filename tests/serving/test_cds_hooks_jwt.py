"""JWT bearer verification as CDS Hooks 2.0 asks: issuer allow-list, signature by configured keys or
JWKS, audience, expiry, jti replay. Keys are generated per run; the JWKS is served over real HTTP."""

from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

from serving.cds_hooks_app import create_cds_app
from serving.cds_jwt import JWTSettings, JWTVerificationError, JWTVerifier

ISS = "https://ehr.example.org"
AUD = "http://testserver/balancedbio-order-sign"
KEY = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())


def token(key=KEY, kid="k1", **claims):
    now = int(time.time())
    body = {"iss": ISS, "aud": AUD, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4()), **claims}
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm="ES256", headers={"kid": kid, "typ": "JWT"})


@pytest.fixture
def verifier():
    return JWTVerifier(JWTSettings.single(ISS, keys={"k1": KEY.public_key()}))


CASES = [
    ("valid", lambda: token(), None),
    ("untrusted_issuer", lambda: token(iss="https://evil.example"), "not trusted"),
    ("wrong_signature", lambda: token(key=OTHER), "invalid token"),
    ("unknown_kid", lambda: token(kid="k9"), "unknown key id"),
    ("wrong_audience", lambda: token(aud="https://other/cds-services/x"), "audience"),
    ("expired", lambda: token(iat=int(time.time()) - 900, exp=int(time.time()) - 600), "expired"),
    ("no_jti", lambda: token(jti=None), "jti"),
    ("too_long_lived", lambda: token(exp=int(time.time()) + 86400), "lifetime"),
    ("hs256_refused", lambda: jwt.encode({"iss": ISS}, "secret-secret-secret-secret-32by", algorithm="HS256"), "algorithm"),
    ("garbage", lambda: "not.a.jwt", "malformed"),
]


@pytest.mark.parametrize("make,error", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_verify(verifier, make, error):
    header = f"Bearer {make()}"
    if error is None:
        assert verifier.verify(header, AUD)["iss"] == ISS
    else:
        with pytest.raises(JWTVerificationError, match=error):
            verifier.verify(header, AUD)


def test_replayed_jti_refused(verifier):
    header = f"Bearer {token()}"
    verifier.verify(header, AUD)
    with pytest.raises(JWTVerificationError, match="replayed"):
        verifier.verify(header, AUD)


def test_missing_header(verifier):
    with pytest.raises(JWTVerificationError, match="Bearer"):
        verifier.verify(None, AUD)


def test_keys_from_jwks_over_http():
    from fhir_stub import FHIRStub

    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key()))
    stub = FHIRStub([], jwks={"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "ES256"}]}).start()
    try:
        base = stub.base_url.removesuffix("/fhir")
        verifier = JWTVerifier(JWTSettings.single(ISS, jwks_url=f"{base}/jwks.json"))
        assert verifier.verify(f"Bearer {token()}", AUD)["iss"] == ISS
    finally:
        stub.stop()


def test_app_refuses_calls_without_valid_jwt():
    app = create_cds_app(jwt_settings=JWTSettings.single(ISS, keys={"k1": KEY.public_key()},
                                                         public_base_url="http://testserver"))
    client = TestClient(app)
    body = {"hook": "order-sign", "hookInstance": "h", "context": {"draftOrders": {"resourceType": "Bundle", "type": "collection"}}}
    refused = client.post("/balancedbio-order-sign", json=body)
    assert refused.status_code == 401 and "Bearer" in refused.json()["error"]
    ok = client.post("/balancedbio-order-sign", json=body, headers={"Authorization": f"Bearer {token()}"})
    assert ok.status_code == 200


def test_feedback_and_public_base_url_audience():
    settings = JWTSettings.single(ISS, keys={"k1": KEY.public_key()})
    settings.public_base_url = "https://cds.example.org/cds-services"
    client = TestClient(create_cds_app(jwt_settings=settings))
    feedback = {"feedback": [{"card": "c1", "outcome": "accepted", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}
    public = "https://cds.example.org/cds-services/balancedbio-order-sign"
    ok = client.post("/balancedbio-order-sign/feedback", json=feedback, headers={"Authorization": f"Bearer {token(aud=public)}"})
    assert ok.status_code == 200
    wrong = client.post("/balancedbio-order-sign/feedback", json=feedback, headers={"Authorization": f"Bearer {token()}"})
    assert wrong.status_code == 401 and "audience" in wrong.json()["error"]


ENV = [
    ("unset", {}, None),
    ("one_issuer", {"BALANCEDBIO_CDS_JWT_ISSUERS": json.dumps({ISS: "https://ehr.example.org/jwks.json"}),
                    "BALANCEDBIO_CDS_PUBLIC_URL": "https://cds.example.org/cds-services"}, ISS),
]


def test_settings_from_env_need_the_public_url():
    """JWT on without BALANCEDBIO_CDS_PUBLIC_URL would take the audience from the caller's Host header."""
    with pytest.raises(ValueError, match="BALANCEDBIO_CDS_PUBLIC_URL"):
        JWTSettings.from_env({"BALANCEDBIO_CDS_JWT_ISSUERS": json.dumps({ISS: "https://ehr.example.org/jwks.json"})})


def test_app_refuses_to_build_without_a_fixed_audience():
    with pytest.raises(ValueError, match="fixed audience"):
        create_cds_app(jwt_settings=JWTSettings.single(ISS, keys={"k1": KEY.public_key()}))


@pytest.mark.parametrize("env,issuer", [e[1:] for e in ENV], ids=[e[0] for e in ENV])
def test_settings_from_env(env, issuer):
    settings = JWTSettings.from_env(env)
    if issuer is None:
        assert settings is None
    else:
        assert list(settings.issuers) == [issuer] and settings.public_base_url.endswith("/cds-services")


def test_settings_from_env_bad_json():
    with pytest.raises(ValueError, match="JSON object"):
        JWTSettings.from_env({"BALANCEDBIO_CDS_JWT_ISSUERS": "[1]"})
