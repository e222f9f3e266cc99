"""JWT bearer verification for CDS Hooks calls (spec 2.0, "Trusting CDS Clients").

The CDS Client signs a short-lived JWT per call: header alg/kid/typ=JWT; claims iss, aud (the
service endpoint being called), exp, iat, jti. The service SHALL check the issuer against an
allow-list, the signature against that issuer's keys (configured, or fetched from its `jku`/JWKS
URL), the audience, the expiry, and that a `jti` is never accepted twice.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field

import jwt

# Asymmetric algorithms only: a CDS client publishes public keys, and "none"/HMAC would let a
# caller who knows the verification key forge tokens.
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384"]


class JWTVerificationError(Exception):
    """Why a token was refused; safe to return to the caller (no key material)."""


@dataclass
class TrustedIssuer:
    issuer: str
    keys: dict[str, object] = field(default_factory=dict)  # kid -> public key (PEM str or key object)
    jwks_url: str | None = None  # fetched (and cached) when a kid is not in `keys`


@dataclass
class JWTSettings:
    issuers: dict[str, TrustedIssuer]
    audience: str | None = None  # a fixed audience; None: the URL of the endpoint being called
    # Behind a proxy the URL a request arrives at is not the one the EHR called: give the public
    # URL of the mount point ("https://cds.example.org/cds-services") and the expected audience
    # becomes that URL plus "/{service_id}".
    public_base_url: str | None = None
    leeway_s: int = 30
    max_lifetime_s: int = 3600  # a CDS JWT is per call; refuse long-lived ones

    @classmethod
    def single(cls, issuer: str, keys: dict[str, object] | None = None, jwks_url: str | None = None,
               audience: str | None = None, public_base_url: str | None = None) -> "JWTSettings":
        return cls(issuers={issuer: TrustedIssuer(issuer, keys or {}, jwks_url)}, audience=audience,
                   public_base_url=public_base_url)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "JWTSettings | None":
        """BALANCEDBIO_CDS_JWT_ISSUERS = JSON {"issuer": "jwks url", ...}; BALANCEDBIO_CDS_PUBLIC_URL =
        the public URL of the mount point. None when no issuer is configured."""
        env = os.environ if environ is None else environ
        raw = env.get("BALANCEDBIO_CDS_JWT_ISSUERS", "").strip()
        if not raw:
            return None
        try:
            issuers = json.loads(raw)
            assert isinstance(issuers, dict) and all(isinstance(v, str) for v in issuers.values())
        except (ValueError, AssertionError):
            raise ValueError('BALANCEDBIO_CDS_JWT_ISSUERS must be a JSON object {"issuer": "https://.../jwks.json"}') from None
        public = (env.get("BALANCEDBIO_CDS_PUBLIC_URL") or "").strip() or None
        if public is None:
            # Without it the expected audience would come from the request's own Host header, which
            # the caller chooses: a token minted for another service would pass.
            raise ValueError("BALANCEDBIO_CDS_JWT_ISSUERS is set but BALANCEDBIO_CDS_PUBLIC_URL is not: set it to the "
                             "public URL EHRs call, e.g. https://cds.example.org/cds-services (the JWT audience "
                             "is that URL plus /{service_id})")
        return cls(issuers={iss: TrustedIssuer(iss, {}, url) for iss, url in issuers.items()}, public_base_url=public)

    def expected_audience(self, service_id: str) -> str:
        """The one audience a token for `service_id` must carry (never derived from the request)."""
        if self.audience:
            return self.audience
        if not self.public_base_url:
            raise JWTVerificationError("the server has no CDS public URL configured (BALANCEDBIO_CDS_PUBLIC_URL)")
        return f"{self.public_base_url.rstrip('/')}/{service_id}"


class ReplayCache:
    """jti values seen, kept until their token expires."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def check_and_add(self, issuer: str, jti: str, expires: float) -> bool:
        now = time.time()
        key = f"{issuer}\x00{jti}"
        with self._lock:
            if len(self._seen) > 10000:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
            if key in self._seen and self._seen[key] > now:
                return False
            self._seen[key] = expires
            return True


class JWTVerifier:
    def __init__(self, settings: JWTSettings):
        self.settings = settings
        self.replay = ReplayCache()
        self._jwks: dict[str, jwt.PyJWKClient] = {}
        self._lock = threading.Lock()

    def _key(self, issuer: TrustedIssuer, kid: str | None, token: str):
        if kid and kid in issuer.keys:
            return issuer.keys[kid]
        if issuer.jwks_url:
            # PyJWKClient caches the key set (lifespan 300 s) and each key; one client per URL.
            with self._lock:
                client = self._jwks.setdefault(issuer.jwks_url, jwt.PyJWKClient(
                    issuer.jwks_url, cache_keys=True, lifespan=300, timeout=5))
            try:
                return client.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientError as exc:
                raise JWTVerificationError(f"no key {kid!r} in the issuer's JWKS: {exc}") from None
        if not kid and len(issuer.keys) == 1:
            return next(iter(issuer.keys.values()))
        raise JWTVerificationError(f"unknown key id {kid!r} for issuer {issuer.issuer!r}")

    def verify(self, authorization: str | None, endpoint_url: str) -> dict:
        """Claims of a valid `Authorization: Bearer <jwt>` header, else JWTVerificationError."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise JWTVerificationError("missing 'Authorization: Bearer <JWT>' header")
        token = authorization[7:].strip()
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise JWTVerificationError(f"malformed JWT: {exc}") from None
        if header.get("alg") not in ALGORITHMS:
            raise JWTVerificationError(f"algorithm {header.get('alg')!r} not accepted; use one of {ALGORITHMS}")
        issuer = self.settings.issuers.get(unverified.get("iss"))
        if issuer is None:
            raise JWTVerificationError(f"issuer {unverified.get('iss')!r} is not trusted")
        key = self._key(issuer, header.get("kid"), token)
        audience = self.settings.audience or endpoint_url
        try:
            claims = jwt.decode(token, key=key, algorithms=ALGORITHMS, audience=audience, issuer=issuer.issuer,
                                leeway=self.settings.leeway_s,
                                options={"require": ["iss", "aud", "exp", "iat", "jti"]})
        except jwt.ExpiredSignatureError:
            raise JWTVerificationError("token expired") from None
        except jwt.InvalidAudienceError:
            raise JWTVerificationError(f"token audience does not match {audience}") from None
        except jwt.PyJWTError as exc:
            raise JWTVerificationError(f"invalid token: {exc}") from None
        if claims["exp"] - claims["iat"] > self.settings.max_lifetime_s:
            raise JWTVerificationError(f"token lifetime over {self.settings.max_lifetime_s} s")
        if not self.replay.check_and_add(issuer.issuer, str(claims["jti"]), float(claims["exp"]) + self.settings.leeway_s):
            raise JWTVerificationError("token replayed (jti already used)")
        return claims
