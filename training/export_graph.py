"""One rewrite of Optimum's exported decoder: `logits_to_keep`, as transformers' models take it.

Optimum's `text-generation-with-past` graph projects every prompt position through the language-model
head, although generation reads only the last one. For SmolLM2-135M the head is the tied 49,152 x 576
embedding, so a 300-token prefill spends about a fifth of its multiply-adds there and returns a
300 x 49,152 float32 block (59 MB per row) that is thrown away at once: time to first token and a
worker's transient memory both pay for it.

The rewrite slices the hidden states before the head by a new graph input `logits_to_keep` (int64,
shape [1]) with transformers' meaning: keep the last k positions, 0 keeps all. The input is also an
initializer holding 0, which makes it an *overridable initializer*: a caller that does not feed it
(Optimum's `ORTModelForCausalLM`, the log-likelihood scorer) gets every position exactly as before,
and ONNX Runtime does not constant-fold it away. The serving engine feeds 1 while it generates.
"""

from __future__ import annotations

from pathlib import Path

LOGITS_TO_KEEP = "logits_to_keep"
HEAD_OUTPUT = "logits"


class GraphRewriteError(RuntimeError):
    pass


def add_logits_to_keep(model_path: Path) -> bool:
    """Rewrite `model_path` in place so the head sees only the last `logits_to_keep` positions.
    Returns False when the graph already has the input; raises `GraphRewriteError` when the graph's
    `logits` output is not a MatMul over the hidden states (an export this rewrite does not know)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(model_path))
    graph = model.graph
    if any(i.name == LOGITS_TO_KEEP for i in graph.input):
        return False
    head = next((n for n in graph.node if HEAD_OUTPUT in n.output), None)
    if head is None or head.op_type != "MatMul":
        found = "nothing" if head is None else f"a {head.op_type} node"
        raise GraphRewriteError(f"{model_path}: expected the '{HEAD_OUTPUT}' output to come from a MatMul (the language-"
                                f"model head), found {found}; export with Optimum's text-generation-with-past task")
    hidden = head.input[0]
    sliced = f"{hidden}/last_positions"
    # Slice(hidden, starts=-k, ends=max, axes=[1]): -0 == 0 starts at the first position, keeping all.
    graph.initializer.extend([
        numpy_helper.from_array(np.array([0], np.int64), LOGITS_TO_KEEP),
        numpy_helper.from_array(np.array([np.iinfo(np.int64).max], np.int64), f"{sliced}/ends"),
        numpy_helper.from_array(np.array([1], np.int64), f"{sliced}/axes"),
    ])
    graph.input.append(helper.make_tensor_value_info(LOGITS_TO_KEEP, TensorProto.INT64, [1]))
    at = list(graph.node).index(head)
    graph.node.insert(at, helper.make_node("Neg", [LOGITS_TO_KEEP], [f"{sliced}/starts"], name=f"{sliced}/Neg"))
    graph.node.insert(at + 1, helper.make_node("Slice", [hidden, f"{sliced}/starts", f"{sliced}/ends", f"{sliced}/axes"],
                                               [sliced], name=f"{sliced}/Slice"))
    head.input[0] = sliced
    # The output no longer has the prompt's length along positions: name that axis for what it holds.
    output = next(o for o in graph.output if o.name == HEAD_OUTPUT)
    output.type.tensor_type.shape.dim[1].ClearField("dim_value")
    output.type.tensor_type.shape.dim[1].dim_param = "kept_positions"
    # Overridable initializers need an IR version that lets initializers double as inputs (>= 4).
    model.ir_version = max(model.ir_version, 4)
    onnx.save(model, str(model_path))
    return True
