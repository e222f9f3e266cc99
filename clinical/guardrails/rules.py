"""Facts the guardrails need beyond the knowledge base, each with the source it comes from.

Kept small on purpose: a guardrail that claims a fact must be able to name where it came from,
and a short table that is right beats a long one nobody checked. Absence here means "not
checked", never "safe"; the findings say so.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- allergy cross-reactivity classes -------------------------------------------------------------
# Membership is read from the drug dictionary's MeSH tree numbers (NLM MeSH, Chemicals and Drugs
# category): a drug is in the class when one of its tree numbers lies under the class node.
MESH_CLASSES: dict[str, tuple[str, str]] = {
    # name: (MeSH tree node, MeSH descriptor name)
    "penicillins": ("D02.065.589.099.750", "Penicillins"),
    "cephalosporins": ("D02.065.589.099.249", "Cephalosporins"),
    "carbapenems": ("D02.065.589.099.124", "Carbapenems"),
    "macrolides (erythromycin group)": ("D02.540.576.500.992", "Erythromycin"),
    "tetracyclines": ("D04.615.562.900", "Tetracyclines"),
    "fluoroquinolones": ("D03.633.100.810.835.830.250", "Fluoroquinolones"),
    "morphinan opioids": ("D03.132.577.249.562", "Morphinans"),
}
# Sulfonamide antibiotics: MeSH "Sulfonamides" (D02.065.884) also holds loop and thiazide diuretics
# and sulfonylureas, whose cross-reactivity with the antibiotics is not established; the WHO INN
# stem "sulfa-" marks the anti-infective ones.
SULFONAMIDE_NODE = "D02.065.884"
SULFONAMIDE_STEM = "sulfa"

# Classes read from the ONC non-interruptive list's class labels (Phansalkar et al. 2013), used
# for cross-reactivity only where a class effect is recognised: NSAID hypersensitivity and ACE
# inhibitor angioedema.
ONC_CROSS_REACTIVE_CLASSES = {"NSAID": "NSAIDs", "NSAIDS": "NSAIDs", "ACE inhibitors": "ACE inhibitors"}

# Penicillin and cephalosporin/carbapenem allergy: low but real cross-reactivity.
# Khan DA et al., "Drug allergy: A 2022 practice parameter update", J Allergy Clin Immunol 2022.
BETA_LACTAM_NEIGHBOURS = {
    ("penicillins", "cephalosporins"),
    ("penicillins", "carbapenems"),
    ("cephalosporins", "penicillins"),
}
BETA_LACTAM_SOURCE = "AAAAI/ACAAI drug allergy practice parameter 2022"


# --- maximum daily doses --------------------------------------------------------------------------
@dataclass(frozen=True)
class MaxDose:
    mg_per_day: float
    source: str


# Adult maximum total daily doses as stated in US labelling (DailyMed). Only drugs whose label
# gives one number for adults; renal/hepatic adjustments are not modelled.
MAX_DAILY_DOSE = {
    "acetaminophen": MaxDose(4000, "FDA OTC monograph / acetaminophen labelling: max 4 g per 24 h"),
    "ibuprofen": MaxDose(3200, "Motrin (ibuprofen) prescribing information: max 3200 mg/day"),
    "naproxen": MaxDose(1500, "Naprosyn prescribing information: up to 1500 mg/day for limited periods"),
    "aspirin": MaxDose(4000, "FDA OTC monograph (aspirin, analgesic use): max 4 g per 24 h"),
    "metformin": MaxDose(2550, "Glucophage prescribing information: max 2550 mg/day"),
    "atorvastatin": MaxDose(80, "Lipitor prescribing information: 10-80 mg once daily"),
    "simvastatin": MaxDose(80, "Zocor prescribing information: 80 mg only for long-term users"),
    "lisinopril": MaxDose(80, "Zestril prescribing information: up to 80 mg/day"),
    "amlodipine": MaxDose(10, "Norvasc prescribing information: max 10 mg once daily"),
    "sertraline": MaxDose(200, "Zoloft prescribing information: max 200 mg/day"),
    "hydrochlorothiazide": MaxDose(50, "Microzide/HCTZ labelling: hypertension, max 50 mg/day"),
    "loratadine": MaxDose(10, "Claritin (OTC) labelling: 10 mg once daily"),
}


# --- contraindications with conditions -----------------------------------------------------------
@dataclass(frozen=True)
class Contraindication:
    drugs: frozenset[str]  # canonical names
    condition_terms: tuple[str, ...]  # lowercase words matched in a condition's display
    condition_codes: frozenset[str]  # SNOMED CT / ICD-10-CM codes
    pregnancy: bool  # also fires when PatientContext.pregnant is True
    summary: str
    source: str


_ACE_INHIBITORS = frozenset({"benazepril", "captopril", "enalapril", "fosinopril", "lisinopril", "moexipril",
                             "perindopril", "quinapril", "ramipril", "trandolapril"})
_ARBS = frozenset({"candesartan", "irbesartan", "losartan", "olmesartan", "telmisartan", "valsartan"})

CONTRAINDICATIONS = (
    Contraindication(_ACE_INHIBITORS | _ARBS, ("pregnan",), frozenset({"77386006", "72892002"}), True,
                     "renin-angiotensin blocker in pregnancy (fetal toxicity)",
                     "FDA boxed warning, ACE inhibitor and ARB labelling: discontinue when pregnancy is detected"),
    Contraindication(frozenset({"warfarin"}), ("pregnan",), frozenset({"77386006", "72892002"}), True,
                     "warfarin in pregnancy",
                     "Coumadin prescribing information: contraindicated in pregnancy (except mechanical valves)"),
    Contraindication(frozenset({"isotretinoin"}), ("pregnan",), frozenset({"77386006", "72892002"}), True,
                     "isotretinoin in pregnancy", "Isotretinoin labelling (iPLEDGE): contraindicated in pregnancy"),
    Contraindication(frozenset({"methotrexate"}), ("pregnan",), frozenset({"77386006", "72892002"}), True,
                     "methotrexate in pregnancy (non-neoplastic use)",
                     "Methotrexate labelling: contraindicated in pregnancy for non-neoplastic diseases"),
    Contraindication(frozenset({"propranolol", "nadolol", "timolol", "sotalol", "pindolol"}), ("asthma",),
                     frozenset({"195967001", "233678006", "J45", "J45.909"}), False,
                     "non-selective beta-blocker with asthma",
                     "Inderal (propranolol) prescribing information: contraindicated in bronchial asthma"),
    Contraindication(_ACE_INHIBITORS, ("angioedema",), frozenset({"41291007"}), False,
                     "ACE inhibitor with a history of angioedema",
                     "ACE inhibitor labelling: contraindicated with a history of angioedema"),
    Contraindication(frozenset({"metformin"}), ("end-stage renal", "end stage renal", "chronic kidney disease stage 4",
                                                "chronic kidney disease stage 5"),
                     frozenset({"46177005", "433146000", "431857002", "N18.4", "N18.5", "N18.6"}), False,
                     "metformin with severe renal impairment (eGFR < 30)",
                     "Glucophage prescribing information: contraindicated with eGFR below 30 mL/min/1.73 m2"),
)
