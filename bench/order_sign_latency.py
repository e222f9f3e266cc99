"""order-sign latency through the CDS Hooks app (in-process ASGI, no network), p50/p95/p99.

Requests go through httpx's ASGI transport in one event loop, as a server's worker runs the app
(Starlette's TestClient starts a thread and an event loop for every request, which on a loaded
2-core machine added more wall time than the checks themselves).

    OMP_NUM_THREADS=1 python bench/order_sign_latency.py [--requests 300] [--bundle PATH]

Each request carries a prefetch: a Synthea patient's Patient, active conditions, active
MedicationRequests and allergies (what the service's prefetch templates ask for) and two draft
orders, one of them a high-priority interaction. Knowledge sources are loaded before timing, as a
server does at startup (the drug dictionary, the ONC lists and the ANSM thesaurus).

--drafts N adds more draft orders (common drugs) to the same request, to see how the pair lookups
scale with the order sheet; the load average is printed, since timings on a shared machine move with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

import httpx

from clinical.knowledge import get_knowledge_base
from serving.cds_hooks_app import create_cds_app

DATA = Path(os.environ.get("BALANCEDBIO_DATA") or Path(__file__).resolve().parents[2] / "shared/data")
DEFAULT = DATA / "fhir/synthea/Asa_Hermiston_4384bf23-1dc3-48ca-8c84-89fbaff201ae.json"


EXTRA_DRAFTS = ["Lisinopril 10 MG Oral Tablet", "Metformin hydrochloride 500 MG Oral Tablet",
                "Ibuprofen 400 MG Oral Tablet", "Warfarin Sodium 5 MG Oral Tablet", "Sertraline 50 MG Oral Tablet",
                "Omeprazole 20 MG Delayed Release Oral Capsule", "Amlodipine 5 MG Oral Tablet",
                "Fluconazole 150 MG Oral Capsule"]


def _known_sources() -> set[str]:
    from clinical.knowledge.loading import registered_sources

    return set(registered_sources())


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


async def _timed_requests(app, body: str, n: int) -> tuple[list[float], list[float], int]:
    headers = {"content-type": "application/json"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cds.local") as client:
        for _ in range(20):  # warm-up: first-call imports and caches
            await client.post("/balancedbio-order-sign", content=body, headers=headers)
        times, cpu = [], []
        for _ in range(n):
            start, start_cpu = time.perf_counter(), time.process_time()
            r = await client.post("/balancedbio-order-sign", content=body, headers=headers)
            times.append((time.perf_counter() - start) * 1000)
            # CPU time of this process (client, app and checks run in it): the share of the wall time that
            # is ours, which moves much less than wall time when other jobs load the machine.
            cpu.append((time.process_time() - start_cpu) * 1000)
            if r.status_code != 200 or not any(c["indicator"] == "critical" for c in r.json()["cards"]):
                raise SystemExit(f"order-sign answered {r.status_code} without the expected critical card: {r.text[:300]}")
    return times, cpu, len(r.json()["cards"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--bundle", type=Path, default=DEFAULT)
    parser.add_argument("--drafts", type=int, default=2, help="draft orders per request (2 to 10)")
    args = parser.parse_args()
    if not 2 <= args.drafts <= len(EXTRA_DRAFTS) + 2:
        raise SystemExit(f"--drafts must be between 2 and {len(EXTRA_DRAFTS) + 2}")
    sources = ["drugs", "interactions", "ansm"]
    get_knowledge_base().preload([s for s in sources if s in _known_sources()])
    bundle = json.loads(args.bundle.read_text())
    drafts = [{"resourceType": "MedicationRequest", "id": f"d{i}", "status": "draft", "intent": "order",
               "subject": {"reference": "Patient/x"}, "medicationCodeableConcept": {"text": text}}
              for i, text in enumerate(["Clarithromycin 500 MG Oral Tablet", "Amoxicillin 500 MG Oral Capsule"]
                                       + EXTRA_DRAFTS[: args.drafts - 2])]
    body = json.dumps({"hook": "order-sign", "hookInstance": "bench", "context": {
        "userId": "Practitioner/1", "patientId": "x",
        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": d} for d in drafts]}},
        "prefetch": prefetch_from(bundle)})
    # CDS Hooks refuses unsigned calls unless the development switch is set; the bench times the checks,
    # not JWT verification (a cached key and one signature check per request), so it runs unsigned.
    os.environ.setdefault("BALANCEDBIO_CDS_ALLOW_UNSIGNED", "1")
    times, cpu, cards = asyncio.run(_timed_requests(create_cds_app(), body, args.requests))
    q = statistics.quantiles(times, n=100)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"order-sign, {args.requests} requests, {args.drafts} drafts, body {len(body) / 1024:.0f} KiB, "
          f"{cards} cards: p50 {q[49]:.1f} ms, p95 {q[94]:.1f} ms, p99 {q[98]:.1f} ms, "
          f"max {max(times):.1f} ms; CPU per request p50 {statistics.median(cpu):.1f} ms, "
          f"p95 {statistics.quantiles(cpu, n=100)[94]:.1f} ms (sources {sorted(get_knowledge_base().load_stats())}, load average {load:.1f})")


if __name__ == "__main__":
    main()
