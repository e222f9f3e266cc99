"""The ONNX Runtime engine against PyTorch: same greedy tokens, batched or not, streamed or not."""

from __future__ import annotations

import pytest

from serving.engine import GenerationOutput, OnnxEngine, PromptTooLong, SamplingParams

QUESTIONS = ["What is the first-line drug for type 2 diabetes?", "Name two symptoms of hypoglycaemia.",
             "Is warfarin safe with aspirin?"]
NEW_TOKENS = 16


@pytest.fixture(scope="module")
def engine(base_export):
    e = OnnxEngine(base_export, threads=1, max_batch=4)
    yield e
    e.close()


@pytest.fixture(scope="module")
def prompts(engine):
    return [engine.encode(engine.chat_prompt([{"role": "user", "content": q}])) for q in QUESTIONS]


@pytest.fixture(scope="module")
def torch_greedy(prompts):
    import torch

    from training.models import load_model

    model, tok = load_model("smollm2-135m")
    out = []
    with torch.inference_mode():
        for ids in prompts:
            gen = model.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False, temperature=None,
                                 top_p=None, top_k=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
            out.append(gen[0, len(ids):].tolist())
    return out


def test_runs_on_the_machines_device_and_flags_the_base_model(engine):
    """CUDA when this machine has a CUDA device and ONNX Runtime's CUDA provider, else the CPU."""
    import onnxruntime as ort
    import torch

    has_cuda = torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()
    assert engine.provider == ("CUDAExecutionProvider" if has_cuda else "CPUExecutionProvider")
    assert engine.aligned is False


def test_greedy_tokens_match_pytorch(engine, prompts, torch_greedy):
    for ids, expected in zip(prompts, torch_greedy):
        assert engine.greedy_tokens(ids, NEW_TOKENS) == expected


def test_a_padded_batch_decodes_as_each_prompt_alone(engine, prompts, torch_greedy):
    texts = engine.generate([engine.tokenizer.decode(p) for p in prompts], NEW_TOKENS)
    for text, expected in zip(texts, torch_greedy):
        assert text == engine.tokenizer.decode(expected, skip_special_tokens=True).strip()


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
