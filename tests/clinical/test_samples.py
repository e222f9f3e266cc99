"""The bundled sample patients load, parse, and are byte-identical to the shared Synthea files."""

from __future__ import annotations

import hashlib

import pytest

from clinical.fhir import parse_patient
from clinical.samples import SAMPLES_DIR, list_samples, load_sample
from shared_data import require
from tests_paths import SYNTHEA_DIR

ORIGINALS = {
    "synthea_chronic_sinusitis": "Buster_Hoeger_ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423.json",
    "synthea_hypertension_allergies": "Kermit_Trantow_f1a650a5-737e-4fd7-828e-03c3348b9524.json",
    "synthea_multiple_allergies": "Marcos_Delagarza_4acb6705-25a7-430a-b799-a4ad8d7fbb38.json",
}


def test_list_samples():
    assert list_samples() == sorted(ORIGINALS)


@pytest.mark.parametrize("name", sorted(ORIGINALS))
def test_sample_parses(name):
    context = parse_patient(load_sample(name))
    assert context.sex and context.age_years is not None


@pytest.mark.parametrize("name,original", sorted(ORIGINALS.items()))
def test_sample_is_a_verbatim_copy(name, original):
    shared = require(SYNTHEA_DIR / original)
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()
    assert digest(SAMPLES_DIR / f"{name}.json") == digest(shared)


def test_unknown_sample_names_the_valid_ones():
    with pytest.raises(ValueError, match="synthea_chronic_sinusitis"):
        load_sample("nobody")
