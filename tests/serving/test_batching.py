"""Continuous batching: requests join rows already decoding and leave when done, and no row's tokens
depend on when it joined or whom it decoded beside."""

from __future__ import annotations

import queue
import threading
import time

import numpy as np
import pytest

from serving.batching import DecodeBatch, admit
from serving.engine import EngineError, OnnxEngine, SamplingParams

LAYERS, HEADS, DIM = 2, 1, 2


def _batch(name: str, lengths: list[int], layout: str = "left") -> DecodeBatch:
    """Rows whose caches hold `lengths` real tokens, padded to the longest on the layout's side; cache
    values name the row."""
    width = max(lengths)
    mask = np.zeros((len(lengths), width), np.int64)
    past = [np.zeros((len(lengths), HEADS, width, DIM)) for _ in range(LAYERS)]
    for r, n in enumerate(lengths):
        cols = slice(0, n) if layout == "right" else slice(width - n, width)
        mask[r, cols] = 1
        for p in past:
            p[r, :, cols] = r + 1
    return DecodeBatch([f"{name}{r}" for r in range(len(lengths))], [None] * len(lengths), list(range(len(lengths))),
                       past, mask, np.array([[n - 1] for n in lengths]), layout)


def _contiguous_on_its_side(batch: DecodeBatch) -> bool:
    """Each row's attended columns form one run at the end (left layout) or the start (right layout)."""
    for row in batch.mask.astype(bool):
        n = int(row.sum())
        want = np.zeros_like(row)
        want[slice(0, n) if batch.layout == "right" else slice(len(row) - n, len(row))] = True
        if not (row == want).all():
            return False
    return True


def _real_tokens(batch: DecodeBatch) -> dict[str, int]:
    """Each row's count of attended cache columns, checked to hold that row's own values."""
    out = {}
    for r, job in enumerate(batch.jobs):
        cols = batch.mask[r].astype(bool)
        assert all((p[r, :, ~cols] == 0).all() for p in batch.past), f"{job}: a masked column holds data"
        out[job] = int(cols.sum())
    return out


# (name, running lengths, joining lengths): shorter, longer and equal caches join the running rows.
MERGES = [
    ("joiner shorter", [5, 3], [2]),
    ("joiner longer", [3], [6, 1]),
    ("same length", [4], [4]),
]


@pytest.mark.parametrize("layout", ["left", "right"])
@pytest.mark.parametrize("running, joining", [c[1:] for c in MERGES], ids=[c[0] for c in MERGES])
def test_a_merged_batch_keeps_every_rows_tokens_behind_masked_padding(running, joining, layout):
    merged = _batch("new", joining, layout).merged(_batch("run", running, layout))
    assert merged.layout == layout and _contiguous_on_its_side(merged)
    width = max(running + joining)
    assert merged.mask.shape == (len(running) + len(joining), width)
    assert all(p.shape[2] == width for p in merged.past)
    expected = {f"new{r}": n for r, n in enumerate(joining)} | {f"run{r}": n for r, n in enumerate(running)}
    assert _real_tokens(merged) == expected
    assert [int(p) for p in merged.positions[:, 0]] == [n - 1 for n in joining + running]


@pytest.mark.parametrize("layout", ["left", "right"])
def test_rows_that_leave_take_their_padding_with_them(layout):
    batch = _batch("run", [7, 2, 3], layout)
    kept = batch.keep([1, 2])
    assert _contiguous_on_its_side(kept)
    assert kept.jobs == ["run1", "run2"] and kept.next_tokens == [1, 2]
    assert kept.mask.shape[1] == 3, "the columns only the finished long row used were not trimmed"
    assert _real_tokens(kept) == {"run1": 2, "run2": 3}
    assert batch.keep([]) is None


def test_layouts_do_not_mix():
    with pytest.raises(ValueError, match="cannot merge a left-padded batch with a right-padded one"):
        _batch("a", [2]).merged(_batch("b", [3], "right"))


# (name, layout, lengths, expected mask after one step): every row gains the column after its last token.
STEPS = [
    ("left appends a shared column", "left", [3, 1], [[1, 1, 1, 1], [0, 0, 1, 1]]),
    ("right fills each row's next column", "right", [3, 1], [[1, 1, 1, 1], [1, 1, 0, 0]]),
    ("right, equal rows", "right", [2, 2], [[1, 1, 1], [1, 1, 1]]),
]


@pytest.mark.parametrize("layout, lengths, expected", [c[1:] for c in STEPS], ids=[c[0] for c in STEPS])
def test_a_decode_step_marks_each_rows_new_token(layout, lengths, expected):
    batch = _batch("run", lengths, layout)
    before = batch.mask.copy()
    batch.advance()
    assert batch.mask.tolist() == expected
    assert [int(p) for p in batch.positions[:, 0]] == lengths, "positions did not move to the fed token"
    assert _contiguous_on_its_side(batch) and (before == _batch("run", lengths, layout).mask).all()


def _queue_of(*items) -> queue.Queue:
    q: queue.Queue = queue.Queue()
    for item in items:
        q.put(item)
    return q


# (name, queued, capacity, running, expected jobs, expected stop)
ADMISSIONS = [
    ("idle takes what came together", ["a", "b", "c"], 8, False, ["a", "b", "c"], False),
    ("capacity bounds an admission", ["a", "b", "c"], 2, False, ["a", "b"], False),
    ("running takes what is waiting", ["a"], 8, True, ["a"], False),
    ("running does not wait", [], 8, True, [], False),
    ("a full batch admits no one", ["a"], 0, True, [], False),
    ("the stop signal ends admission", ["a", None, "b"], 8, False, ["a"], True),
]


def test_an_idle_wait_ends_without_a_request():
    q = _queue_of()
    started = time.monotonic()
    assert admit(lambda timeout: q.get(timeout=timeout), 8, 0.01, running=False, idle_wait=0.2) == ([], False)
    assert 0.15 <= time.monotonic() - started < 5


@pytest.mark.parametrize("queued, capacity, running, jobs, stop", [c[1:] for c in ADMISSIONS],
                         ids=[c[0] for c in ADMISSIONS])
def test_admission(queued, capacity, running, jobs, stop):
    q = _queue_of(*queued)
    assert admit(lambda timeout: q.get(timeout=timeout), capacity, 0.01, running) == (jobs, stop)


# -- on the embedded model's export ------------------------------------------------------------------
LONG_TOKENS, SHORT_TOKENS = 48, 12
QUESTIONS = ["Explain in detail how metformin lowers blood glucose.", "Name two symptoms of hypoglycaemia.",
             "Is warfarin safe with aspirin?"]


@pytest.fixture(scope="module", params=[("optimum", "continuous"), ("optimum", "static"), ("fused", "continuous")],
                ids=lambda p: "-".join(p))
def engine(request):
    # Optimum's export keeps rows left-padded; the fused GroupQueryAttention graph right-padded.
    graph, batching = request.param
    export = request.getfixturevalue("base_export" if graph == "optimum" else "fused_export")
    e = OnnxEngine(export, threads=1, max_batch=4, batching=batching)
    assert e.cache_layout == ("left" if graph == "optimum" else "right")
    yield e
    e.close()


def _ids(engine, question: str) -> list[int]:
    return engine.encode(engine.chat_prompt([{"role": "user", "content": question}]))


def test_requests_sent_during_a_decode_get_the_tokens_they_get_alone(engine):
    prompts = [_ids(engine, q) for q in QUESTIONS]
    alone = [engine.greedy_tokens(prompts[0], LONG_TOKENS)] + [engine.greedy_tokens(p, SHORT_TOKENS) for p in prompts[1:]]
    joined_before = engine.joined_running
    first_token, results = threading.Event(), {}

    def run(i: int, budget: int) -> None:
        for item in engine.stream(prompts[i], SamplingParams(max_new_tokens=budget)):
            first_token.set()
        results[i] = item

    long = threading.Thread(target=run, args=(0, LONG_TOKENS))
    long.start()
    assert first_token.wait(120), "the long request produced no token"
    late = [threading.Thread(target=run, args=(i, SHORT_TOKENS)) for i in (1, 2)]
    for t in late:
        t.start()
    for t in [long, *late]:
        t.join(timeout=300)
    for i, tokens in enumerate(alone):
        text = engine.tokenizer.decode([t for t in tokens if t not in engine.eos_ids], skip_special_tokens=True)
        assert results[i].text == text, f"request {i} decoded differently beside others"
    assert results[0].completion_tokens > SHORT_TOKENS, "the long request ended before the others could join"
    joined = engine.joined_running - joined_before
    if engine.batching == "continuous":
        assert joined == 2, f"{joined} of 2 late requests joined the running decode"
        assert max(results[i].seconds for i in (1, 2)) < results[0].seconds
    else:
        assert joined == 0, "static batching let a request join a running batch"


def test_an_unknown_batching_mode_is_refused(base_export):
    with pytest.raises(EngineError, match="use one of continuous, static"):
        OnnxEngine(base_export, threads=1, batching="dynamic")
