"""The ONNX Runtime engine against PyTorch: same greedy tokens, batched or not, streamed or not, with
the same repetition control (transformers' processors) and the model's generation config."""

from __future__ import annotations

import pytest

from serving.engine import GenerationOutput, OnnxEngine, PromptTooLong, SamplingParams
from training.evaluate.decoding import DecodingConfig

QUESTIONS = ["What is the first-line drug for type 2 diabetes?", "Name two symptoms of hypoglycaemia.",
             "Is warfarin safe with aspirin?"]
NEW_TOKENS = 16
LOOP_TOKENS = 64  # long enough for greedy decoding of a 135M model to repeat itself
# (name, settings): greedy parity must hold for each, the repetition controls on and off.
DECODINGS = [
    ("off", DecodingConfig(repetition_penalty=1.0, no_repeat_ngram_size=0)),
    ("penalty 1.3", DecodingConfig(repetition_penalty=1.3, no_repeat_ngram_size=0)),
    ("no repeated 3-gram", DecodingConfig(repetition_penalty=1.0, no_repeat_ngram_size=3)),
    ("both", DecodingConfig(repetition_penalty=1.2, no_repeat_ngram_size=4)),
]


@pytest.fixture(scope="module")
def engine(base_export):
    e = OnnxEngine(base_export, threads=1, max_batch=4)
    yield e
    e.close()


@pytest.fixture(scope="module")
def prompts(engine):
    return [engine.encode(engine.chat_prompt([{"role": "user", "content": q}])) for q in QUESTIONS]


@pytest.fixture(scope="module")
def torch_model():
    from training.models import load_model

    return load_model("smollm2-135m")


def _torch_greedy(torch_model, prompts, max_new_tokens: int, decoding: DecodingConfig) -> list[list[int]]:
    """transformers' own generate(), one prompt at a time, eos from the model's generation config."""
    import torch

    model, tok = torch_model
    out = []
    with torch.inference_mode():
        for ids in prompts:
            gen = model.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
                                 top_p=None, top_k=None, pad_token_id=tok.pad_token_id, **decoding.generate_kwargs())
            out.append(gen[0, len(ids):].tolist())
    return out


@pytest.fixture(scope="module")
def torch_greedy(torch_model, prompts, engine):
    """PyTorch's greedy tokens under the engine's own (default) decoding settings."""
    return _torch_greedy(torch_model, prompts, NEW_TOKENS, engine.decoding)


def test_runs_on_the_machines_device_and_flags_the_base_model(engine):
    """CUDA when this machine has a CUDA device and ONNX Runtime's CUDA provider, else the CPU."""
    import onnxruntime as ort
    import torch

    has_cuda = torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()
    assert engine.provider == ("CUDAExecutionProvider" if has_cuda else "CPUExecutionProvider")
    assert engine.aligned is False


def test_the_base_export_computes_the_head_for_the_last_position_only(engine):
    # So every parity test below covers the sliced head (training/export_graph.py), and the cached base
    # export was made again when it predated it (serving.config.ensure_base_export).
    assert engine.keeps_logits


def test_greedy_tokens_match_pytorch(engine, prompts, torch_greedy):
    for ids, expected in zip(prompts, torch_greedy):
        assert engine.greedy_tokens(ids, NEW_TOKENS) == expected


@pytest.mark.parametrize("name,decoding", DECODINGS, ids=[d[0] for d in DECODINGS])
def test_greedy_parity_holds_under_each_repetition_setting(engine, torch_model, prompts, name, decoding):
    expected = _torch_greedy(torch_model, prompts, LOOP_TOKENS, decoding)
    params = SamplingParams(repetition_penalty=decoding.repetition_penalty,
                            no_repeat_ngram_size=decoding.no_repeat_ngram_size)
    assert [engine.greedy_tokens(ids, LOOP_TOKENS, params) for ids in prompts] == expected


@pytest.mark.parametrize("name,decoding", DECODINGS[1:], ids=[d[0] for d in DECODINGS[1:]])
def test_each_repetition_setting_changes_what_is_decoded(engine, prompts, name, decoding):
    # Parity alone would pass if neither side applied the setting: it must also change some answer.
    off = SamplingParams(repetition_penalty=1.0, no_repeat_ngram_size=0)
    on = SamplingParams(repetition_penalty=decoding.repetition_penalty, no_repeat_ngram_size=decoding.no_repeat_ngram_size)
    assert any(engine.greedy_tokens(ids, LOOP_TOKENS, off) != engine.greedy_tokens(ids, LOOP_TOKENS, on) for ids in prompts)


def test_no_repeat_ngram_leaves_no_repeated_ngram(engine, prompts):
    params = SamplingParams(repetition_penalty=1.0, no_repeat_ngram_size=3)
    for ids in prompts:
        sequence = ids + engine.greedy_tokens(ids, LOOP_TOKENS, params)
        # The chat template repeats its own trigrams; no generated token may complete one already seen.
        for end in range(len(ids), len(sequence)):
            seen = {tuple(sequence[i:i + 3]) for i in range(end - 2)}
            assert tuple(sequence[end - 2:end + 1]) not in seen, f"token {end - len(ids)} repeats a trigram"


def test_eos_ids_come_from_the_generation_config(engine, base_export):
    import json

    from serving.engine import resolve_model_dir

    directory, _ = resolve_model_dir(base_export)
    stated = json.loads((directory / "generation_config.json").read_text())["eos_token_id"]
    assert engine.eos_ids == set(stated if isinstance(stated, list) else [stated])


def test_a_bad_decoding_setting_is_refused_with_its_range():
    with pytest.raises(ValueError, match="no_repeat_ngram_size=-1 must be a whole number >= 0"):
        DecodingConfig(no_repeat_ngram_size=-1)
    with pytest.raises(ValueError, match="repetition_penalty=0 must be > 0"):
        DecodingConfig(repetition_penalty=0)


def test_a_padded_batch_decodes_as_each_prompt_alone(engine, prompts, torch_greedy):
    texts = engine.generate([engine.tokenizer.decode(p) for p in prompts], NEW_TOKENS)
    for text, expected in zip(texts, torch_greedy):
        assert text == engine.tokenizer.decode(expected, skip_special_tokens=True).strip()


# (name, prefill_tokens): prompt chunks of one column, of uneven columns, and the whole prompt at once.
PREFILL_BUDGETS = [("one column per step", 1), ("uneven chunks of 5 columns", 15), ("one piece", 100_000)]


@pytest.mark.parametrize("name,budget", PREFILL_BUDGETS, ids=[n for n, _ in PREFILL_BUDGETS])
def test_a_chunked_prefill_decodes_as_pytorch(engine, prompts, torch_greedy, name, budget):
    default = engine.prefill_tokens
    engine.prefill_tokens = budget
    try:
        texts = engine.generate([engine.tokenizer.decode(p) for p in prompts], NEW_TOKENS)
    finally:
        engine.prefill_tokens = default
    assert texts == [engine.tokenizer.decode(t, skip_special_tokens=True).strip() for t in torch_greedy]


def test_a_prefill_budget_below_one_token_is_refused(base_export):
    from serving.engine import EngineError

    with pytest.raises(EngineError, match="prefill_tokens must be at least 1"):
        OnnxEngine(base_export, threads=1, prefill_tokens=0)


def test_stream_pieces_add_up_to_the_result(engine, prompts):
    items = list(engine.stream(prompts[0], SamplingParams(max_new_tokens=NEW_TOKENS)))
    *pieces, result = items
    assert isinstance(result, GenerationOutput) and "".join(pieces) == result.text
    assert result.finish_reason == "length" and result.completion_tokens == NEW_TOKENS


def test_concurrent_streams_are_batched_and_correct(engine, prompts, torch_greedy):
    import threading

    results = {}

    def run(i):
        *_, out = engine.stream(prompts[i], SamplingParams(max_new_tokens=NEW_TOKENS))
        results[i] = out.text
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for i, expected in enumerate(torch_greedy):
        assert results[i] == engine.tokenizer.decode(expected, skip_special_tokens=True)


def test_stop_sequence_ends_the_answer_before_it(engine, prompts):
    full = list(engine.stream(prompts[0], SamplingParams(max_new_tokens=NEW_TOKENS)))[-1].text
    stop = full.split()[2]
    out = list(engine.stream(prompts[0], SamplingParams(max_new_tokens=NEW_TOKENS, stop=[stop])))[-1]
    assert out.finish_reason == "stop" and stop not in out.text and full.startswith(out.text)


def test_seeded_sampling_is_reproducible(engine, prompts):
    params = SamplingParams(max_new_tokens=8, temperature=0.9, top_p=0.9, seed=7)
    first = list(engine.stream(prompts[1], params))[-1].text
    assert list(engine.stream(prompts[1], params))[-1].text == first


def test_prompt_over_the_context_is_refused(engine):
    with pytest.raises(PromptTooLong, match="context"):
        engine.check_budget([1] * engine.max_context, 10)


def test_loglikelihood_matches_pytorch(engine):
    from training.evaluate.lm import load_language_model

    requests = [("The capital of France is", " Paris"), ("Metformin treats", " diabetes")]
    torch_lm = load_language_model("smollm2-135m", progress=False)
    for ours, theirs in zip(engine.loglikelihood(requests), torch_lm.loglikelihood_naive(requests)):
        assert ours == pytest.approx(theirs, abs=1e-3)


def test_a_bad_per_request_setting_fails_its_caller_not_the_batch(engine, prompts, torch_greedy):
    with pytest.raises(ValueError, match="repetition_penalty=-1 must be > 0"):
        engine.submit(prompts[0], SamplingParams(max_new_tokens=4, repetition_penalty=-1), lambda kind, value: None)
    assert list(engine.stream(prompts[0], SamplingParams(max_new_tokens=NEW_TOKENS)))[-1].text == \
        engine.tokenizer.decode(torch_greedy[0], skip_special_tokens=True)


def test_onnx_all_scores_log_likelihood_on_the_export_itself(base_export, tmp_path):
    """A quantised variant must be judged on its own weights: `onnx-all` hands the evaluator the engine
    for generation and log-likelihood alike, where `onnx` scores log-likelihood on PyTorch."""
    from training.evaluate.engines import SplitLM, load_for_eval

    whole = load_for_eval("smollm2-135m", "onnx-all", onnx_dir=str(base_export), threads=1)
    assert isinstance(whole, OnnxEngine) and whole.engine.startswith("onnx-all")
    assert isinstance(load_for_eval("smollm2-135m", "onnx", onnx_dir=str(base_export), threads=1), SplitLM)
    with pytest.raises(ValueError, match="--engine onnx-all: no ONNX export"):
        load_for_eval(str(tmp_path), "onnx-all")
