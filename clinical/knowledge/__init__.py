"""Clinical knowledge from real offline sources: ICD-10-CM, HPO (with OMIM/Orphanet diseases),
drug names (DrugBank/MeSH), the ONC drug-drug interaction lists and the ANSM interaction thesaurus.

    from clinical.knowledge import get_knowledge_base
    kb = get_knowledge_base()
    kb.normalize_drug("Lipitor").drugbank_id          # 'DB01076'
    kb.icd10_description("E11.9")                     # 'Type 2 diabetes mellitus without complications'
    kb.interactions(["simvastatin", "clarithromycin"])           # ONC only, high/low
    kb.interactions_between("warfarin", "fluconazole")            # graded: ONC + ANSM
    kb.identify_drug("Percocet").ingredients                      # ('oxycodone', 'acetaminophen')

Sources load on first use, once per process; importing this package loads none of them.
"""

from clinical.knowledge.base import KnowledgeBase, get_knowledge_base
from clinical.knowledge.models import (
    Disease,
    DiseaseMatch,
    Drug,
    DrugIdentity,
    DrugMention,
    GradedInteraction,
    Icd10Chapter,
    Icd10Code,
    Interaction,
    KnowledgeError,
    KnowledgeSourceError,
    LoadStats,
    Phenotype,
    Unidentified,
)

__all__ = [
    "Disease",
    "DiseaseMatch",
    "Drug",
    "DrugIdentity",
    "DrugMention",
    "GradedInteraction",
    "Icd10Chapter",
    "Icd10Code",
    "Interaction",
    "KnowledgeBase",
    "KnowledgeError",
    "KnowledgeSourceError",
    "LoadStats",
    "Phenotype",
    "Unidentified",
    "get_knowledge_base",
]
