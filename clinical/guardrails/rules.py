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
# Classes where any member is critical for a patient with an allergy to another member, whatever the
# recorded criticality: a penicillin allergy label means no penicillin until delabelled (same source).
CRITICAL_CLASS_ALLERGIES = frozenset({"penicillins"})


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

# Pregnancy is handled by TERATOGENS below (patient_rules.pregnancy_rule), not here.
CONTRAINDICATIONS = (
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


# --- patient-aware rules (clinical/guardrails/patient_rules.py) -----------------------------------
# LOINC codes of the results the rules read. Synthea records eGFR as 33914-3, creatinine as
# 38483-4 and potassium as 6298-4; US Core labs also use the serum/plasma codes.
EGFR_LOINC = frozenset({"33914-3", "48642-3", "48643-1", "50044-7", "62238-1", "69405-9", "88293-6", "88294-4",
                        "98979-8", "98980-6"})
CREATININE_MG_DL_LOINC = frozenset({"2160-0", "38483-4"})  # mass concentration, mg/dL
CREATININE_UMOL_L_LOINC = frozenset({"14682-9", "59826-8"})  # substance concentration, umol/L
POTASSIUM_LOINC = frozenset({"2823-3", "6298-4", "77142-8"})
CKD_EPI_2021_SOURCE = "CKD-EPI 2021 race-free creatinine equation (Inker LA et al., N Engl J Med 2021;385:1737-49)"

_NSAIDS = frozenset({"ibuprofen", "naproxen", "diclofenac", "ketorolac", "indomethacin", "meloxicam", "celecoxib",
                     "piroxicam", "etodolac", "nabumetone", "ketoprofen", "flurbiprofen", "sulindac", "oxaprozin"})
_KDIGO = "KDIGO 2012 CKD guideline, 4.4 (avoid NSAIDs with GFR < 30; not prolonged with GFR < 60)"


@dataclass(frozen=True)
class RenalRule:
    bands: tuple[tuple[float, str, str], ...]  # (eGFR below which, severity, advice), strictest first
    why: str
    source: str


_METFORMIN = RenalRule(
    ((30, "critical", "Contraindicated below 30: do not start or continue metformin."),
     (45, "warning", "Starting is not recommended between 30 and 45; if already taking it, weigh benefit and risk.")),
    "metformin accumulates in renal impairment (lactic acidosis)",
    "Glucophage (metformin) prescribing information, FDA 2016 labelling change on renal function")
_NSAID = RenalRule(
    ((30, "critical", "Avoid NSAIDs with eGFR below 30."),
     (60, "warning", "Avoid prolonged NSAID use with eGFR below 60; use the lowest dose for the shortest time.")),
    "NSAIDs reduce renal perfusion and can cause acute kidney injury", _KDIGO)

RENAL_RULES: dict[str, RenalRule] = {
    "metformin": _METFORMIN,
    **{drug: _NSAID for drug in _NSAIDS},
    "dabigatran": RenalRule(((30, "critical", "Not recommended below CrCl 30 (US label: dose 75 mg only at 15-30)."),),
                            "dabigatran is cleared about 80% by the kidney",
                            "Pradaxa (dabigatran) prescribing information, renal impairment"),
    "nitrofurantoin": RenalRule(((30, "critical", "Avoid with CrCl below 30: ineffective and toxic."),),
                                "nitrofurantoin needs renal excretion to reach the urine",
                                "AGS Beers Criteria 2023 (avoid with CrCl < 30)"),
    "gabapentin": RenalRule(((60, "warning", "Reduce the gabapentin dose for CrCl below 60 (label table)."),),
                            "gabapentin is cleared unchanged by the kidney",
                            "Neurontin (gabapentin) prescribing information, dosage in renal impairment"),
    "enoxaparin": RenalRule(((30, "warning", "Use the renal dose (1 mg/kg once daily) with CrCl below 30."),),
                            "enoxaparin accumulates in renal impairment (bleeding)",
                            "Lovenox (enoxaparin) prescribing information, renal impairment"),
    "spironolactone": RenalRule(((30, "critical", "Avoid spironolactone with eGFR below 30 (hyperkalaemia)."),),
                                "spironolactone retains potassium, more so as kidney function falls",
                                "Aldactone (spironolactone) prescribing information, 2018 (not recommended eGFR < 30)"),
}


@dataclass(frozen=True)
class PotassiumLimit:
    max_mmol_l: float
    why: str
    source: str


_K_SPARING = PotassiumLimit(5.0, "Potassium-sparing diuretics raise potassium further.",
                            "Aldactone (spironolactone) prescribing information: do not start if potassium > 5.0 mEq/L")
_K_SUPPLEMENT = PotassiumLimit(5.0, "Potassium supplements are contraindicated in hyperkalaemia.",
                               "Klor-Con (potassium chloride) prescribing information: contraindicated in hyperkalaemia")
POTASSIUM_LIMITS: dict[str, PotassiumLimit] = {
    "spironolactone": _K_SPARING, "eplerenone": _K_SPARING, "amiloride": _K_SPARING, "triamterene": _K_SPARING,
    "potassium chloride": _K_SUPPLEMENT, "potassium citrate": _K_SUPPLEMENT, "potassium": _K_SUPPLEMENT,
    "potassium bicarbonate": _K_SUPPLEMENT,
}


@dataclass(frozen=True)
class Teratogen:
    risk: str
    statement: str
    source: str


_RAS = Teratogen("fetal renal toxicity and death", "Drugs acting on the renin-angiotensin system cause fetal injury.",
                 "FDA boxed warning, ACE inhibitor and ARB labelling: discontinue when pregnancy is detected")
TERATOGENS: dict[str, Teratogen] = {
    **{drug: _RAS for drug in _ACE_INHIBITORS | _ARBS},
    "warfarin": Teratogen("warfarin embryopathy, fetal bleeding", "Warfarin is contraindicated in pregnancy "
                          "except with mechanical heart valves at high thrombotic risk.",
                          "Coumadin prescribing information: contraindicated in pregnancy (except mechanical valves)"),
    "isotretinoin": Teratogen("severe birth defects", "Isotretinoin must not be used in pregnancy.",
                              "Isotretinoin labelling (iPLEDGE): contraindicated in pregnancy"),
    "methotrexate": Teratogen("embryo-fetal death and malformations", "Methotrexate is contraindicated in "
                              "pregnancy for non-neoplastic disease.",
                              "Methotrexate labelling: contraindicated in pregnancy for non-neoplastic diseases"),
    "valproic acid": Teratogen("neural tube defects, reduced IQ", "Valproate must not be used in pregnancy unless "
                               "no alternative exists (epilepsy).",
                               "Depakote boxed warning (fetal risk); EMA/MHRA 2018 valproate pregnancy prevention programme"),
}


class ChildbearingAge:
    """Ages at which a woman's unknown pregnancy status matters for a teratogen (a screening range)."""
    LOW = 12
    HIGH = 50


@dataclass(frozen=True)
class AgeRule:
    min_age: int
    severity: str
    why: str
    source: str
    advice: str
    exempt_terms: tuple[str, ...] = ()


AGE_RULES: dict[str, AgeRule] = {
    "aspirin": AgeRule(16, "critical", "Aspirin in children and adolescents is associated with Reye's syndrome.",
                       "MHRA (2002) / BNF for Children: aspirin contraindicated under 16 except on specialist advice; "
                       "FDA aspirin labelling Reye's syndrome warning",
                       "Use paracetamol (acetaminophen) or ibuprofen instead, unless a specialist indication applies.",
                       exempt_terms=("kawasaki",)),
}
