"""Synthetic sample patients (Synthea FHIR R4 transaction Bundles) shipped with the package.

    from clinical.samples import list_samples, load_sample
    list_samples()                                   # ['synthea_chronic_sinusitis', ...]
    bundle = load_sample("synthea_hypertension_allergies")   # the Bundle as a dict

Provenance and license: ATTRIBUTION.md beside this file.
"""

from __future__ import annotations

import json
from pathlib import Path

SAMPLES_DIR = Path(__file__).parent


def list_samples() -> list[str]:
    """Names of the bundled sample patients, sorted."""
    return sorted(p.stem for p in SAMPLES_DIR.glob("*.json"))


def load_sample(name: str) -> dict:
    """The FHIR Bundle of one sample patient; ValueError naming the valid ones if unknown."""
    if name not in list_samples():
        raise ValueError(f"Unknown sample patient {name!r}; choose one of {list_samples()}.")
    return json.loads((SAMPLES_DIR / f"{name}.json").read_text(encoding="utf-8"))
