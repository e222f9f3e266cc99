"""Where a patient comes from in the UI: a bundled sample, an uploaded Bundle, or a FHIR server.

The UI shows the de-identified summary that clinical.fhir builds (the same text the model gets),
never the raw Bundle: names and identifiers in an uploaded file stay off the screen.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # a large Synthea bundle is a few MB


class PatientLoadError(ValueError):
    """A patient could not be loaded; the message says what to fix."""


def _samples_module():
    try:
        return importlib.import_module("clinical.samples")
    except ImportError:
        return None


def sample_names() -> list[str]:
    """Names of the bundled sample patients (clinical.samples, issue 6); empty when not installed."""
    module = _samples_module()
    return list(module.list_samples()) if module is not None else []


def load_sample(name: str) -> dict:
    module = _samples_module()
    if module is None:
        raise PatientLoadError("no sample patients are installed (clinical.samples is missing)")
    if not name:
        raise PatientLoadError("pick a sample patient first")
    if name not in sample_names():
        raise PatientLoadError(f"unknown sample {name!r}; choose one of: {', '.join(sample_names())}")
    return _as_json(module.load_sample(name), f"sample {name}")


def load_upload(path: str | Path | None) -> dict:
    """A FHIR Bundle or single resource from an uploaded JSON file."""
    if not path:
        raise PatientLoadError("choose a FHIR Bundle JSON file to upload")
    path = Path(path)
    if path.stat().st_size > MAX_UPLOAD_BYTES:
        raise PatientLoadError(f"{path.name} is larger than {MAX_UPLOAD_BYTES // 2**20} MB")
    try:
        return _as_json(json.loads(path.read_text(encoding="utf-8")), path.name)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PatientLoadError(f"{path.name} is not JSON: {exc}") from exc


def fhir_client():
    """serving.fhir_client.FHIRClient (the one module that talks to an EHR's FHIR API), or None."""
    try:
        module = importlib.import_module("serving.fhir_client")
    except ImportError:
        return None
    return getattr(module, "FHIRClient", None)


def load_from_fhir(base_url: str, patient_id: str, token: str | None = None) -> dict:
    client_class = fhir_client()
    if client_class is None:
        raise PatientLoadError("reading from a FHIR server is not available in this installation")
    if not (base_url or "").strip().startswith(("http://", "https://")) or not (patient_id or "").strip():
        raise PatientLoadError("give the FHIR base URL (http[s]://...) and a patient id")
    try:
        with client_class(base_url.strip(), token=(token or "").strip() or None) as client:
            return _as_json(client.patient_bundle(patient_id.strip()), "FHIR server")
    except PatientLoadError:
        raise
    except Exception as exc:  # network and server errors; FHIRServerError never carries the token
        raise PatientLoadError(f"the FHIR server did not return the patient: {type(exc).__name__}: {exc}") from exc


def _as_json(payload: Any, where: str) -> dict:
    if isinstance(payload, (str, Path)) and Path(payload).exists():
        payload = json.loads(Path(payload).read_text(encoding="utf-8"))
    if hasattr(payload, "model_dump"):
        payload = payload.model_dump(mode="json", exclude_none=True)
    if not isinstance(payload, dict) or "resourceType" not in payload:
        raise PatientLoadError(f"{where} is not a FHIR resource (no resourceType)")
    return payload


def summarize(patient: dict) -> str:
    """The de-identified summary as Markdown; a clear message for input that is not a patient."""
    from clinical.fhir import FHIRInputError, parse_patient

    try:
        context = parse_patient(patient)
    except (FHIRInputError, ValueError, KeyError) as exc:
        raise PatientLoadError(f"the FHIR data could not be read: {exc}") from exc
    return context.to_prompt()
