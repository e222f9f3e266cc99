"""The UI's client of the service's HTTP API (the contract of issues 5-7), over httpx.

The UI is a plain client of the public API, mounted or not: it holds no model and no database,
so what a clinician sees is exactly what an EHR integration would get.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

# A consult generates text on a CPU: allow minutes to read, but fail fast when nothing listens.
TIMEOUT = httpx.Timeout(connect=5.0, read=300.0, write=30.0, pool=5.0)
FEEDBACK_OUTCOMES = ("accept", "override", "edit")


class ApiError(RuntimeError):
    """An error the service (or the network) returned, with a message fit for a clinician."""

    def __init__(self, status: int | None, kind: str, message: str):
        super().__init__(f"{kind}: {message}" if status is None else f"{status} {kind}: {message}")
        self.status, self.kind, self.message = status, kind, message


def _error_of(response: httpx.Response) -> ApiError:
    """Read the contract's `{"error": {"type", "message"}}`, or whatever else came back."""
    try:
        body = response.json()
        err = body.get("error", body) if isinstance(body, dict) else {}
        kind = str(err.get("type") or response.reason_phrase or "error")
        message = str(err.get("message") or err.get("detail") or response.text[:300])
    except (ValueError, AttributeError):
        kind, message = response.reason_phrase or "error", response.text[:300]
    if response.status_code == 401:
        message = f"{message} (check the API key)"
    return ApiError(response.status_code, kind, message)


@dataclass
class ServiceClient:
    base_url: str
    api_key: str

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise ApiError(None, "configuration", f"API URL {self.base_url!r} must start with http:// or https://")
        if not self.api_key or not self.api_key.strip():
            raise ApiError(None, "authentication", "enter an API key first")

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key.strip()}"}

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = httpx.request(method, self.base_url + path, headers=self._headers, timeout=TIMEOUT, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(None, "connection", f"cannot reach {self.base_url}: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            raise _error_of(response)
        return response.json()

    def models(self) -> list[dict]:
        """`GET /v1/models`: OpenAI list whose entries carry `aligned`."""
        return list(self._call("GET", "/v1/models").get("data", []))

    def consult_stream(self, question: str, patient: dict | None, max_tokens: int | None = None) -> Iterator[dict]:
        """`POST /consult_stream`: yields `{"event": "token", "text"}` events, then `{"event": "done", "consult"}`."""
        body: dict[str, Any] = {"question": question, "patient": patient}
        if max_tokens:
            body["max_tokens"] = int(max_tokens)
        try:
            with httpx.stream("POST", self.base_url + "/consult_stream", json=body, headers=self._headers,
                              timeout=TIMEOUT) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error_of(response)
                for line in response.iter_lines():
                    if line.strip():
                        try:
                            yield json.loads(line)
                        except ValueError as exc:
                            raise ApiError(response.status_code, "protocol",
                                           f"the stream sent a line that is not JSON: {line[:80]!r}") from exc
        except httpx.HTTPError as exc:
            raise ApiError(None, "connection", f"the answer stream broke off: {type(exc).__name__}") from exc

    def fhir_patient(self, fhir_server: str, patient_id: str, token: str | None = None) -> dict:
        """`POST /v1/fhir/patient`: the service reads the record from an allow-listed FHIR server."""
        body: dict[str, Any] = {"fhir_server": fhir_server, "patient_id": patient_id}
        if token:
            body["token"] = token
        return self._call("POST", "/v1/fhir/patient", json=body)

    def feedback(self, consult_id: str, outcome: str, reason: str | None = None,
                 edited_answer: str | None = None, correct: bool | None = None) -> dict:
        """`POST /feedback`: accept / override (with a reason) / edit (with the edited answer)."""
        if outcome not in FEEDBACK_OUTCOMES:
            raise ApiError(None, "validation", f"outcome must be one of {', '.join(FEEDBACK_OUTCOMES)}")
        if outcome == "override" and not (reason or "").strip():
            raise ApiError(None, "validation", "an override needs a reason")
        if outcome == "edit" and not (edited_answer or "").strip():
            raise ApiError(None, "validation", "an edit needs the edited answer")
        body: dict[str, Any] = {"consult_id": consult_id, "outcome": outcome}
        if reason:
            body["reason"] = reason.strip()
        if edited_answer:
            body["edited_answer"] = edited_answer
        if correct is not None:
            body["correct"] = bool(correct)
        return self._call("POST", "/feedback", json=body)
