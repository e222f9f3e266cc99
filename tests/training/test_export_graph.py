"""`logits_to_keep` on a small decoder-shaped graph: every position by default, the last k when fed,
refused (with the fix) on a graph whose logits do not come from a head MatMul; the export's format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.export import CARD_JSON, EXPORT_FORMAT, is_current
from training.export_graph import LOGITS_TO_KEEP, GraphRewriteError, add_logits_to_keep

BATCH, POSITIONS, HIDDEN, VOCAB = 2, 5, 4, 6


def _save_graph(path, head_op: str = "MatMul"):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.arange(HIDDEN * VOCAB, dtype=np.float32).reshape(HIDDEN, VOCAB) / 10
    hidden = helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch_size", "sequence_length", HIDDEN])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", "sequence_length", VOCAB])
    if head_op == "MatMul":
        nodes = [helper.make_node("Relu", ["hidden"], ["normed"]), helper.make_node("MatMul", ["normed", "head"], ["logits"])]
        init = [numpy_helper.from_array(weight, "head")]
    else:  # a graph the rewrite does not know: logits from an Add
        logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", "sequence_length", HIDDEN])
        nodes, init = [helper.make_node("Add", ["hidden", "hidden"], ["logits"])], []
    graph = helper.make_graph(nodes, "decoder_head", [hidden], [logits], init)
    # IR 8 as the exports carry: this onnx writes a newer one than the pinned ONNX Runtime reads.
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), str(path))
    return weight


def _session(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # the overridable-initializer warning is intended
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.fixture()
def rewritten(tmp_path):
    path = tmp_path / "model.onnx"
    weight = _save_graph(path)
    assert add_logits_to_keep(path) is True
    hidden = np.random.default_rng(0).normal(size=(BATCH, POSITIONS, HIDDEN)).astype(np.float32)
    return path, hidden, np.maximum(hidden, 0) @ weight


# (name, fed value or None, positions expected): transformers' convention, 0 keeps every position.
KEEP_CASES = [
    ("not fed: every position, as before the rewrite", None, slice(0, POSITIONS)),
    ("0: every position", 0, slice(0, POSITIONS)),
    ("1: the last position, what generation reads", 1, slice(POSITIONS - 1, POSITIONS)),
    ("3: the last three, a continuation's scores", 3, slice(POSITIONS - 3, POSITIONS)),
    ("more than there are: every position", POSITIONS + 4, slice(0, POSITIONS)),
]


@pytest.mark.parametrize("name, keep, expected", KEEP_CASES, ids=[c[0] for c in KEEP_CASES])
def test_logits_to_keep_selects_the_last_positions(rewritten, name, keep, expected):
    path, hidden, full = rewritten
    feed = {"hidden": hidden}
    if keep is not None:
        feed[LOGITS_TO_KEEP] = np.array([keep], np.int64)
    logits = _session(path).run(["logits"], feed)[0]
    np.testing.assert_allclose(logits, full[:, expected], rtol=1e-6)


def test_the_input_is_optional_and_the_rewrite_happens_once(rewritten):
    path, _, _ = rewritten
    session = _session(path)
    assert [i.name for i in session.get_overridable_initializers()] == [LOGITS_TO_KEEP]
    assert [i.name for i in session.get_inputs()] == ["hidden"]  # callers that never heard of it still run
    assert add_logits_to_keep(path) is False


def test_a_graph_without_a_head_matmul_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "model.onnx"
    _save_graph(path, head_op="Add")
    with pytest.raises(GraphRewriteError, match="text-generation-with-past"):
        add_logits_to_keep(path)


# (name, card text or None, current): caches made by an older export are made again.
FORMAT_CASES = [
    ("no card: not exported yet", None, False),
    ("a card cut short by a kill", '{"serve": "fp3', False),
    ("a card from before formats were written", json.dumps({"serve": "fp32"}), False),
    ("this format", json.dumps({"serve": "fp32", "format": EXPORT_FORMAT}), True),
]


@pytest.mark.parametrize("name, card, current", FORMAT_CASES, ids=[c[0] for c in FORMAT_CASES])
def test_an_export_is_current_only_in_this_format(tmp_path, name, card, current):
    if card is not None:
        (tmp_path / CARD_JSON).write_text(card)
    assert is_current(tmp_path) is current
