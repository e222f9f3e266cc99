"""Paths of the shared FHIR data, found once (tests/conftest.py fails the run when the data folder is absent,
unless BALANCEDBIO_ALLOW_MISSING_DATA=1; then these lists are empty and their tests skip)."""

from __future__ import annotations

from shared_data import SHARED_DATA

SHARED = SHARED_DATA
FHIR_FILES = sorted((SHARED / "fhir").glob("*/*.json")) if (SHARED / "fhir").exists() else []
SYNTHEA_DIR = SHARED / "fhir" / "synthea"
SYNTHEA_FILES = sorted(SYNTHEA_DIR.glob("*.json")) if SYNTHEA_DIR.exists() else []
CDS_DIR = SHARED / "cds_hooks"
CDS_FILES = sorted(p for p in CDS_DIR.glob("*.json") if p.name != "MANIFEST.json") if CDS_DIR.exists() else []
