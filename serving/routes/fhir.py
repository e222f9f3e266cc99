"""The FHIR side of the API: POST /v1/fhir/patient (the UI's patient reads, allow-listed servers only)
and the CDS Hooks discovery document at the spec's exact path."""

from __future__ import annotations

from fastapi import Depends
from starlette.concurrency import run_in_threadpool

from serving.auth import ApiError
from serving.config import fhir_server_allowed
from serving.routes.common import SETTINGS, authorized, count
from serving.schemas import FhirPatientRequest


async def cds_discovery() -> dict:
    """The mounted CDS Hooks app answers at /cds-services/; the bare path (what EHRs are given) would
    otherwise get a 307 redirect, which some CDS clients do not follow."""
    from clinical.cds_hooks import discovery_document

    return discovery_document()


async def fhir_patient(body: FhirPatientRequest, key_id: str = Depends(authorized)) -> dict:
    """A patient's record (Patient + the resources a consult uses) as one Bundle, read from a FHIR
    server in BALANCEDBIO_FHIR_SERVERS only (exact origin and base path, no redirects followed)."""
    from serving.fhir_client import FHIRClient, FHIRServerError

    if not SETTINGS.fhir_servers:
        raise ApiError(403, "permission_error", "this server reads from no FHIR server; its operator can allow "
                       "some with BALANCEDBIO_FHIR_SERVERS")
    if not fhir_server_allowed(body.fhir_server, SETTINGS.fhir_servers):
        raise ApiError(403, "permission_error", "that FHIR server is not allowed here; use one of: "
                       + ", ".join(SETTINGS.fhir_servers))

    def read() -> dict:
        with FHIRClient(body.fhir_server, token=body.token or None) as client:
            return client.patient_bundle(body.patient_id)
    try:
        return await run_in_threadpool(read)
    except (FHIRServerError, ValueError) as e:
        count("record_error", "fhir")
        raise ApiError(502, "fhir_server_error", f"the FHIR server did not return the patient: {e}") from None
