"""PHI minimisation: nothing identifying from a Synthea bundle reaches the prompt or the logs."""

from __future__ import annotations

import json
import logging

import pytest

from clinical.cds_hooks import HookRequest, handle_hook
from clinical.fhir import parse_patient
from clinical.guardrails import check_input, check_output
from clinical.phi import PHIRedactingFilter, find_phi, install_log_redaction, patient_phi_strings, scrub_text
from tests_paths import SYNTHEA_FILES


@pytest.mark.parametrize("path", SYNTHEA_FILES, ids=[p.name.split("_")[0] for p in SYNTHEA_FILES])
def test_no_identifier_reaches_prompt_or_logs(path, caplog):
    bundle = json.loads(path.read_text())
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    secrets = patient_phi_strings(patient)
    assert patient["birthDate"] in secrets and patient["name"][0]["family"] in secrets
    with caplog.at_level(logging.DEBUG):
        context = parse_patient(bundle)
        prompt = context.to_prompt()
        check_input("What should I watch for with this patient's medications?", context)
        check_output("Consider lisinopril 10 mg daily.", context)
        response, _ = handle_hook("balancedbio-patient-view", HookRequest(
            hook="patient-view", hookInstance="t", context={"patientId": patient["id"]}, prefetch={"patient": bundle}))
    outputs = {"prompt": prompt, "context": context.model_dump_json(), "cards": response.model_dump_json(),
               "logs": "\n".join(r.getMessage() for r in caplog.records)}
    for where, text in outputs.items():
        leaked = sorted(s for s in secrets if s in text)
        assert not leaked, f"{where} holds identifiers from {path.name}: {leaked}"


SCRUB = [
    ("phone", "call 555-866-2259 now", "call [PHONE] now"),
    ("ssn", "SSN 999-59-2277", "SSN [SSN]"),
    ("email", "mail jane.doe@example.org", "mail [EMAIL]"),
    ("dob", "born 1988-03-16", "born [DATE]"),
    ("us_date", "seen 3/16/1988", "seen [DATE]"),
    ("mrn", "MRN: A1234567 today", "[MRN] today"),
    ("uuid", "id ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423", "id [ID]"),
    ("clinical_text_untouched", "amoxicillin 500 mg every 8 hours", "amoxicillin 500 mg every 8 hours"),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in SCRUB], ids=[c[0] for c in SCRUB])
def test_scrub_text(text, expected):
    assert scrub_text(text) == expected


def test_log_filter_scrubs_arguments():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "patient phone %s", ("555-866-2259",), None)
    PHIRedactingFilter().filter(record)
    assert record.getMessage() == "patient phone [PHONE]"
    assert find_phi(record.getMessage()) == []


def test_installed_redaction_scrubs_child_logger_lines_and_is_idempotent():
    import io

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    parent = logging.getLogger("bb-test-parent")
    parent.addHandler(handler)
    parent.setLevel(logging.INFO)
    try:
        assert install_log_redaction(["bb-test-parent"]) == 1
        assert install_log_redaction(["bb-test-parent"]) == 0  # a second install adds nothing
        # A child logger's record reaches the parent's handler without passing the parent's own filters.
        logging.getLogger("bb-test-parent.child").info("callback number %s", "555-866-2259")
    finally:
        parent.removeHandler(handler)
    line = stream.getvalue()
    assert "555-866-2259" not in line and "[PHONE]" in line
