"""Paths of the shared FHIR data, found once; empty lists (tests skip) when the data is absent."""

from __future__ import annotations

import os
from pathlib import Path

SHARED = Path(os.environ.get("BALANCEDBIO_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")
FHIR_FILES = sorted((SHARED / "fhir").glob("*/*.json")) if (SHARED / "fhir").exists() else []
SYNTHEA_FILES = sorted((SHARED / "fhir" / "synthea").glob("*.json")) if (SHARED / "fhir").exists() else []
CDS_DIR = SHARED / "cds_hooks"
CDS_FILES = sorted(p for p in CDS_DIR.glob("*.json") if p.name != "MANIFEST.json") if CDS_DIR.exists() else []
