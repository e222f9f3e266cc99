"""Read a patient's record from a FHIR R4 server with a bearer token (SMART/CDS Hooks style).

clinical/ has no HTTP (DESIGN); this is the one place that talks to an EHR's FHIR API. Searches
follow `next` links, but only on the same server, so a hostile Bundle cannot send the token
elsewhere.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import httpx

PATIENT_SEARCHES = (
    "Condition?patient={id}",
    "MedicationRequest?patient={id}&status=active",
    "MedicationStatement?patient={id}",
    "AllergyIntolerance?patient={id}",
    "Observation?patient={id}&category=laboratory&_sort=-date&_count=100",
)


class FHIRServerError(RuntimeError):
    """The FHIR server could not be read; the message says what failed (never the token)."""


class FHIRClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 5.0, max_pages: int = 10,
                 transport: httpx.BaseTransport | None = None):
        if not base_url or urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"FHIR base URL must be http(s)://..., got {base_url!r}")
        self.base_url = base_url.rstrip("/") + "/"
        self.max_pages = max_pages
        headers = {"Accept": "application/fhir+json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(headers=headers, timeout=timeout, transport=transport, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "FHIRClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _get(self, url: str) -> dict:
        if not url.startswith(self.base_url):
            raise FHIRServerError("refusing to follow a link to another server")
        try:
            response = self._http.get(url)
        except httpx.HTTPError as exc:
            raise FHIRServerError(f"FHIR server unreachable ({type(exc).__name__}) at {self.base_url}") from None
        if response.status_code in (401, 403):
            raise FHIRServerError(f"FHIR server refused the token (HTTP {response.status_code}); check fhirAuthorization")
        if response.status_code == 404:
            raise FHIRServerError(f"FHIR server has no {urlsplit(url).path.rsplit('/', 2)[-2:]} (HTTP 404)")
        if response.status_code >= 400:
            raise FHIRServerError(f"FHIR server answered HTTP {response.status_code} for {urlsplit(url).path}")
        try:
            return response.json()
        except ValueError:
            raise FHIRServerError("FHIR server answered with something that is not JSON") from None

    def get(self, query: str) -> dict:
        """A read or search relative to the base URL; a searchset's pages are merged into one Bundle."""
        first = self._get(urljoin(self.base_url, query.lstrip("/")))
        if first.get("resourceType") != "Bundle":
            return first
        entries = list(first.get("entry") or [])
        page, pages = first, 1
        while pages < self.max_pages:
            nxt = next((link.get("url") for link in page.get("link") or [] if link.get("relation") == "next"), None)
            if not nxt:
                break
            page = self._get(nxt)
            entries.extend(page.get("entry") or [])
            pages += 1
        return {**first, "entry": entries, "link": [link for link in first.get("link") or [] if link.get("relation") == "self"]}

    def patient_bundle(self, patient_id: str) -> dict:
        """The Patient and the resources a PatientContext uses, as one collection Bundle."""
        entries = [{"resource": self.get(f"Patient/{patient_id}")}]
        for search in PATIENT_SEARCHES:
            bundle = self.get(search.format(id=patient_id))
            entries.extend(e for e in bundle.get("entry") or [] if e.get("resource"))
        return {"resourceType": "Bundle", "type": "collection", "entry": entries}
