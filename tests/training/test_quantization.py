"""A quantised variant is served only when its paired scores show it loses at most the tolerance."""

from __future__ import annotations

import json

import pytest

from training.paired import PairedRow
from training.quantization import judge, main, record_in_card, serve_choice


def _row(benchmark: str, metric: str, diff: float, half_width: float = 0.02, n: int = 250) -> PairedRow:
    return PairedRow(benchmark, metric, n, 0.40, 0.40 + diff, diff, diff - half_width, diff + half_width, 0.5,
                     False, (0.35, 0.45), (0.35, 0.45), 0.05, 0.04)


def _evidence(knowledge_diff: float = 0.0, half_width: float = 0.02, cloze_n: int = 250, capabilities: bool = True):
    rows = [_row("medmcqa", "acc_cloze", 0.0, n=cloze_n), _row("medmcqa", "acc_cloze_norm", 0.0, n=cloze_n),
            _row("medmcqa", "acc_loglik", 0.01, n=cloze_n)]
    if capabilities:
        rows += [_row("capabilities", "knowledge", knowledge_diff, half_width), _row("capabilities", "instruction", 0.0)]
    return rows


VERDICTS = [
    # name, rows, accepted, reason contains
    ("equal scores, tight intervals", _evidence(), True, "every paired 95% interval stays above -0.03"),
    ("a small gain is no reason to refuse", _evidence(knowledge_diff=0.02), True, "every paired"),
    ("a loss beyond the tolerance", _evidence(knowledge_diff=-0.04), False, "capabilities/knowledge -0.040"),
    ("no change, but too few items to bound it", _evidence(half_width=0.05), False, "may lose more than 0.03"),
    ("fewer than 200 cloze items", _evidence(cloze_n=150), False, "150 cloze items scored"),
    ("capability split missing", _evidence(capabilities=False), False, "capability test split was not scored"),
]


@pytest.mark.parametrize("rows, accepted, reason", [c[1:] for c in VERDICTS], ids=[c[0] for c in VERDICTS])
def test_a_variant_is_accepted_only_when_every_interval_stays_within_the_tolerance(rows, accepted, reason):
    verdict = judge("int4", rows, tolerance=0.03)
    assert verdict.accepted is accepted and reason in verdict.reason


CHOICES = [
    ("int4 first when both pass", {"int4": True, "int8": True}, "int4"),
    ("int8 when int4 fails", {"int4": False, "int8": True}, "int8"),
    ("fp32 when none passes", {"int4": False, "int8": False}, "fp32"),
]


@pytest.mark.parametrize("passes, served", [c[1:] for c in CHOICES], ids=[c[0] for c in CHOICES])
def test_the_fastest_accepted_variant_is_served(passes, served):
    verdicts = [judge(v, _evidence(knowledge_diff=0.0 if ok else -0.1), 0.03) for v, ok in passes.items()]
    serve, why = serve_choice(verdicts)
    assert serve == served
    if served == "fp32":
        assert why.endswith("serving fp32") and "int4 may lose" in why


def test_the_card_records_the_evidence_and_the_served_variant(tmp_path):
    card = {"model_version": "smollm2-135m-fp32", "aligned": False, "serve": "fp32", "serve_reason": "export",
            "source": {"reference": "smollm2-135m", "model_dir": "m"}, "exported_at": "t", "export_seconds": 1.0,
            "files": {}}
    (tmp_path / "model_card.json").write_text(json.dumps(card))
    written = record_in_card(tmp_path, [judge("int8", _evidence(), 0.03), judge("int4", _evidence(-0.1), 0.03)])
    saved = json.loads((tmp_path / "model_card.json").read_text())
    assert written["serve"] == saved["serve"] == "int8" and saved["model_version"] == "smollm2-135m-int8"
    assert saved["acceptance"]["int4"]["accepted"] is False and len(saved["acceptance"]["int8"]["rows"]) == 5
    shown = (tmp_path / "MODEL_CARD.md").read_text()
    assert "## int4 against fp32: not accepted (tolerance 0.03)" in shown and "| capabilities/knowledge | 250 |" in shown


def test_an_export_without_the_variant_is_refused_with_how_to_make_it(tmp_path, capsys):
    (tmp_path / "fp32").mkdir()
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--data", str(tmp_path), "--variants", "int4"])
    assert "--int8 --int4" in capsys.readouterr().err
