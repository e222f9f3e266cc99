"""order-sign latency through the CDS Hooks app (in-process ASGI, no network), p50/p95/p99.

    OMP_NUM_THREADS=1 python bench/order_sign_latency.py [--requests 300] [--bundle PATH]

Each request carries a prefetch: a Synthea patient's Patient, active conditions, active
MedicationRequests and allergies (what the service's prefetch templates ask for) and two draft
orders, one of them a high-priority interaction. Knowledge sources are loaded before timing, as a
server does at startup.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from starlette.testclient import TestClient

from clinical.knowledge import get_knowledge_base
from serving.cds_hooks_app import create_cds_app

DEFAULT = Path(__file__).resolve().parents[2] / "shared/data/fhir/synthea/Asa_Hermiston_4384bf23-1dc3-48ca-8c84-89fbaff201ae.json"


def prefetch_from(bundle: dict) -> dict:
    res = [e["resource"] for e in bundle["entry"]]
    search = lambda rs: {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in rs]}
    return {
        "patient": next(r for r in res if r["resourceType"] == "Patient"),
        "conditions": search([r for r in res if r["resourceType"] == "Condition"
                              and "active" in json.dumps(r.get("clinicalStatus", {}))]),
        "medications": search([r for r in res if r["resourceType"] == "MedicationRequest" and r.get("status") == "active"]
                              + [{"resourceType": "MedicationRequest", "id": "bench-simva", "status": "active", "intent": "order",
                                  "subject": {"reference": "Patient/x"}, "medicationCodeableConcept": {"text": "Simvastatin 40 MG"}}]),
        "allergies": search([r for r in res if r["resourceType"] == "AllergyIntolerance"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--bundle", type=Path, default=DEFAULT)
    args = parser.parse_args()
    get_knowledge_base().preload(["drugs", "interactions"])
    bundle = json.loads(args.bundle.read_text())
    drafts = [{"resourceType": "MedicationRequest", "id": f"d{i}", "status": "draft", "intent": "order",
               "subject": {"reference": "Patient/x"}, "medicationCodeableConcept": {"text": text}}
              for i, text in enumerate(["Clarithromycin 500 MG Oral Tablet", "Amoxicillin 500 MG Oral Capsule"])]
    body = json.dumps({"hook": "order-sign", "hookInstance": "bench", "context": {
        "userId": "Practitioner/1", "patientId": "x",
        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": d} for d in drafts]}},
        "prefetch": prefetch_from(bundle)})
    client = TestClient(create_cds_app())
    headers = {"content-type": "application/json"}
    for _ in range(20):  # warm-up: first-call imports and caches
        client.post("/balancedbio-order-sign", content=body, headers=headers)
    times = []
    for _ in range(args.requests):
        start = time.perf_counter()
        r = client.post("/balancedbio-order-sign", content=body, headers=headers)
        times.append((time.perf_counter() - start) * 1000)
        assert r.status_code == 200 and any(c["indicator"] == "critical" for c in r.json()["cards"])
    q = statistics.quantiles(times, n=100)
    print(f"order-sign, {args.requests} requests, body {len(body) / 1024:.0f} KiB ({args.bundle.name.split('_')[0]}): "
          f"p50 {q[49]:.1f} ms, p95 {q[94]:.1f} ms, p99 {q[98]:.1f} ms, max {max(times):.1f} ms")


if __name__ == "__main__":
    main()
