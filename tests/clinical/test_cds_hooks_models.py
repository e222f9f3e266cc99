"""Spec objects: every response/discovery/feedback/card example of the spec validates against our
models (or is rejected for the one thing the spec's own text says it lacks), and our conversions
produce valid cards and DetectedIssues."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from clinical import cds_hooks as ch
from clinical.guardrails import Finding
from shared_data import require
from tests_paths import CDS_DIR

MODEL_FOR = [
    ("discovery_response_example.json", ch.DiscoveryResponse, None),
    ("hl7_discovery_response_example.json", ch.DiscoveryResponse, None),
    ("discovery_with_extension_example.json", ch.DiscoveryResponse, None),
    ("cards_response_example_info_warning_links_overrideReasons.json", ch.CDSResponse, None),
    # The spec's own example omits `indicator`, which its Card table marks REQUIRED.
    ("cards_response_example_autolaunchable.json", ch.CDSResponse, "indicator"),
    ("empty_cards_response.json", ch.CDSResponse, None),
    ("systemActions_response_example.json", ch.CDSResponse, None),
    ("hl7_systemActions_response_example.json", ch.CDSResponse, None),
    ("hl7_feedback_overridden_no_reason.json", ch.FeedbackRequest, None),
    ("hl7_feedback_overridden_with_reason.json", ch.FeedbackRequest, None),
    ("hl7_feedback_suggestion_accepted.json", ch.FeedbackRequest, None),
    ("patient-view_request_example.json", ch.HookRequest, None),
    ("request_with_extension_example.json", ch.HookRequest, None),
    ("hl7_order-sign_request_with_paginated_prefetch.json", ch.HookRequest, None),
    ("suggestion_action_create.json", ch.Action, None),
    ("suggestion_action_update.json", ch.Action, None),
    ("suggestion_action_delete.json", ch.Action, None),
]


@pytest.mark.parametrize("name,model,rejects", MODEL_FOR, ids=[m[0] for m in MODEL_FOR])
def test_spec_examples_against_models(name, model, rejects):
    path = require(CDS_DIR / name)
    data = json.loads(path.read_text())
    if rejects:
        with pytest.raises(ValidationError, match=rejects):
            model.model_validate(data)
    else:
        model.model_validate(data)


def test_fragment_examples_validate():
    require(CDS_DIR)
    ch.Source.model_validate(json.loads((CDS_DIR / "card_source_example.json").read_text())["source"])
    for reason in json.loads((CDS_DIR / "card_overrideReasons_example.json").read_text())["overrideReasons"]:
        ch.Coding.model_validate(reason)
    templates = json.loads((CDS_DIR / "prefetch_templates_example.json").read_text())["prefetch"]
    assert ch.render_prefetch(templates["patient"], {"patientId": "123"}) == "Patient/123"
    with pytest.raises(ch.HookInputError, match="userPractitionerRoleId"):
        ch.render_prefetch(templates["user"], {"patientId": "123"})


CARD_RULES = [
    ("summary_140", dict(summary="x" * 140, indicator="info", source={"label": "s"}), "140|139"),
    ("bad_indicator", dict(summary="s", indicator="hard-stop", source={"label": "s"}), "indicator"),
    ("no_source", dict(summary="s", indicator="info"), "source"),
    ("suggestions_need_selection", dict(summary="s", indicator="info", source={"label": "s"},
                                        suggestions=[{"label": "do"}]), "selectionBehavior"),
]


@pytest.mark.parametrize("fields,message", [c[1:] for c in CARD_RULES], ids=[c[0] for c in CARD_RULES])
def test_card_rules(fields, message):
    with pytest.raises(ValidationError, match=message):
        ch.Card.model_validate(fields)


FINDING = Finding(kind="interaction", severity="critical", summary="High-priority interaction: clarithromycin + simvastatin",
                  detail="On the ONC list.", evidence=["ONC-high-priority:clarithromycin+simvastatin"],
                  suggested_action="Avoid the combination.")


def test_finding_to_card_with_removal_suggestion():
    card = ch.finding_to_card(FINDING, remove_order="MedicationRequest/d1")
    assert card.indicator == "critical" and card.overrideReasons and card.selectionBehavior == "at-most-one"
    assert card.suggestions[0].actions[0].type == "delete"
    assert "ONC-high-priority" in card.detail


@pytest.mark.parametrize("severity,expected", [("critical", "high"), ("warning", "moderate"), ("info", "low")])
def test_finding_to_detected_issue(severity, expected):
    issue = ch.finding_to_detected_issue(FINDING.model_copy(update={"severity": severity}), "Patient/p1")
    assert issue["severity"] == expected and issue["code"]["coding"][0]["code"] == "DRG"
    assert issue["patient"] == {"reference": "Patient/p1"}
