"""Where a patient comes from in the UI: a bundled sample, an uploaded Bundle, or a FHIR server.

The UI shows the de-identified summary that clinical.fhir builds (the same text the model gets),
never the raw Bundle: names and identifiers in an uploaded file stay off the screen.

An upload is read only from inside the upload folder (Gradio's; never a path the request names
elsewhere), as a regular file under the size limit; error messages never name a server path.
A FHIR server is read by the service (`POST /v1/fhir/patient`, allow-listed), not from here.
"""

from __future__ import annotations

import importlib
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # a large Synthea bundle is a few MB
UPLOAD_MAX_AGE_S = 3600  # uploads older than this are deleted (the patient is kept in the session)
CLEANUP_SCAN_LIMIT = 2000  # bounded: one clean-up never walks more entries than this


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


def load_upload(path: str | Path | None, root: str | Path) -> dict:
    """A FHIR Bundle or single resource from an uploaded JSON file inside `root` (the upload folder).

    Anything else — a path outside `root`, a symlink, a folder, a missing or oversized file — is
    refused with a message that does not repeat the path."""
    if not path:
        raise PatientLoadError("choose a FHIR Bundle JSON file to upload")
    try:
        base = Path(root).resolve(strict=True)
        candidate = Path(str(path))
        info = os.lstat(candidate)
        resolved = candidate.resolve(strict=True)
    except (OSError, ValueError, RuntimeError):
        raise PatientLoadError("the uploaded file is not available; upload it again") from None
    if not resolved.is_relative_to(base) or resolved == base or not stat.S_ISREG(info.st_mode):
        raise PatientLoadError("only a file uploaded in this session can be loaded; upload the Bundle again")
    if info.st_size > MAX_UPLOAD_BYTES:
        raise PatientLoadError(f"the uploaded file is larger than {MAX_UPLOAD_BYTES // 2**20} MB")
    try:
        return _as_json(json.loads(resolved.read_text(encoding="utf-8")), "the uploaded file")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PatientLoadError(f"the uploaded file is not JSON: {exc}") from exc


def clean_uploads(root: str | Path, max_age_s: float = UPLOAD_MAX_AGE_S, now: float | None = None) -> int:
    """Delete uploaded files older than `max_age_s` under `root` (and their emptied folders); the
    number of files deleted. Bounded by CLEANUP_SCAN_LIMIT entries per call."""
    now = time.time() if now is None else now
    removed, seen = 0, 0
    root = Path(root)
    if not root.is_dir():
        return 0
    for folder, dirs, files in os.walk(root, topdown=False):
        for name in files:
            seen += 1
            if seen > CLEANUP_SCAN_LIMIT:
                return removed
            file = Path(folder) / name
            try:
                if now - file.lstat().st_mtime > max_age_s:
                    file.unlink()
                    removed += 1
            except OSError:
                continue
        if Path(folder) != root:
            try:
                os.rmdir(folder)  # only succeeds when empty
            except OSError:
                pass
    return removed


def _as_json(payload: Any, where: str) -> dict:
    if isinstance(payload, Path):  # clinical.samples gives a packaged file
        payload = json.loads(payload.read_text(encoding="utf-8"))
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
