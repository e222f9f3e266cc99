"""A small FHIR R4 server for tests: real HTTP on 127.0.0.1, a free port, Synthea bundles as data.

Supports what serving/fhir_client.py and the CDS Hooks prefetch templates use: read
(`GET /Patient/{id}`), search by patient (`GET /{type}?patient={id}`, with `status`,
`clinical-status` and `category` filters and `_count` paging with `next` links), a bearer token
check, and `/jwks.json` for JWT tests. Requests are logged in `.requests` for assertions.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


class FHIRStub:
    def __init__(self, bundles: list[Path], token: str = "test-token", jwks: dict | None = None):
        self.token = token
        self.jwks = jwks or {"keys": []}
        self.requests: list[tuple[str, bool]] = []  # (path, had the right token)
        self.patients: dict[str, dict] = {}
        self.by_patient: dict[str, list[dict]] = {}
        for path in bundles:
            bundle = json.loads(Path(path).read_text())
            resources = [e["resource"] for e in bundle["entry"]]
            patient = next(r for r in resources if r["resourceType"] == "Patient")
            self.patients[patient["id"]] = patient
            self.by_patient[patient["id"]] = [r for r in resources if r["resourceType"] != "Patient"]
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/fhir"

    def start(self) -> "FHIRStub":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def search(self, rtype: str, params: dict[str, str]) -> list[dict]:
        pid = params.get("patient", "").removeprefix("Patient/")
        out = [r for r in self.by_patient.get(pid, []) if r["resourceType"] == rtype]
        if "status" in params:
            out = [r for r in out if r.get("status") == params["status"]]
        if "clinical-status" in params:
            out = [r for r in out if params["clinical-status"] in json.dumps(r.get("clinicalStatus", {}))]
        if "category" in params:
            out = [r for r in out if params["category"] in json.dumps(r.get("category", []))]
        return out

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urlsplit(self.path)
                if url.path == "/jwks.json":
                    return self._send(200, stub.jwks)
                authorised = self.headers.get("Authorization") == f"Bearer {stub.token}"
                stub.requests.append((self.path, authorised))
                if not authorised:
                    return self._send(401, {"resourceType": "OperationOutcome", "issue": [
                        {"severity": "error", "code": "login", "diagnostics": "bearer token required"}]})
                parts = url.path.removeprefix("/fhir/").strip("/").split("/")
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                if len(parts) == 2 and parts[0] == "Patient":
                    if parts[1] in stub.patients:
                        return self._send(200, stub.patients[parts[1]])
                    return self._send(404, {"resourceType": "OperationOutcome", "issue": [
                        {"severity": "error", "code": "not-found"}]})
                if len(parts) == 1:
                    found = stub.search(parts[0], params)
                    count = int(params.get("_count", 0)) or len(found) or 1
                    page = int(params.get("_page", 1))
                    chunk = found[(page - 1) * count: page * count]
                    links = [{"relation": "self", "url": stub.base_url + self.path.removeprefix("/fhir")}]
                    if page * count < len(found):
                        nxt = {**params, "_count": str(count), "_page": str(page + 1)}
                        links.append({"relation": "next", "url": f"{stub.base_url}/{parts[0]}?" +
                                      "&".join(f"{k}={v}" for k, v in nxt.items())})
                    return self._send(200, {"resourceType": "Bundle", "type": "searchset", "total": len(found),
                                            "link": links, "entry": [{"resource": r} for r in chunk]})
                return self._send(400, {"resourceType": "OperationOutcome", "issue": [
                    {"severity": "error", "code": "not-supported"}]})

        return Handler
