"""API keys (held hashed), the per-key rate limit and the settings that feed them."""

from __future__ import annotations

import hashlib

import pytest

from serving.auth import ApiError, KeyRing, RateLimiter
from serving.config import Settings, SettingsError, load_keys

KEY = "s3cret-key"


@pytest.mark.parametrize("name,entries,header,status", [
    ("no keys configured", [], f"Bearer {KEY}", 401),
    ("no header", [KEY], None, 401),
    ("basic scheme", [KEY], "Basic abc", 401),
    ("empty bearer", [KEY], "Bearer ", 401),
    ("wrong key", [KEY], "Bearer other", 403),
])
def test_refused(name, entries, header, status):
    with pytest.raises(ApiError) as e:
        KeyRing(entries).identify(header)
    assert e.value.status == status and e.value.body()["error"]["message"]


@pytest.mark.parametrize("name,entry", [("raw key", KEY), ("hashed entry", "sha256:" + hashlib.sha256(KEY.encode()).hexdigest())])
def test_accepted_key_gives_an_id_not_the_key(name, entry):
    key_id = KeyRing([entry]).identify(f"Bearer {KEY}")
    assert KEY not in key_id and len(key_id) == 12


def test_rate_limit_is_per_key():
    limiter = RateLimiter(per_minute=3)
    for _ in range(3):
        limiter.check("a")
    with pytest.raises(ApiError) as e:
        limiter.check("a")
    assert e.value.status == 429 and int(e.value.headers["Retry-After"]) >= 1
    limiter.check("b")  # another key has its own bucket


def test_keys_from_env_and_file(tmp_path, monkeypatch):
    keys_file = tmp_path / "keys"
    keys_file.write_text("# operators\nk2\n\nsha256:abcd\n")
    monkeypatch.setenv("BALANCEDBIO_API_KEYS", "k1, ")
    monkeypatch.setenv("BALANCEDBIO_API_KEYS_FILE", str(keys_file))
    assert load_keys() == ["k1", "k2", "sha256:abcd"]


@pytest.mark.parametrize("name,var,value", [
    ("not a number", "BALANCEDBIO_MAX_TOKENS", "many"),
    ("too small", "BALANCEDBIO_RATE_LIMIT", "0"),
    ("missing key file", "BALANCEDBIO_API_KEYS_FILE", "/nonexistent/keys"),
    ("unknown batching", "BALANCEDBIO_BATCHING", "dynamic"),
])
def test_bad_settings_name_the_variable(monkeypatch, name, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError, match=var):
        Settings.from_env()
