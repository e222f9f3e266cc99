"""ONNX Runtime text generation with a KV cache, request batching and token streaming.

Plain onnxruntime + numpy, no torch: per-token overhead, not FLOPs, bounds a 135M model's decode
speed on a CPU, and Optimum's `generate()` pays the whole transformers generation loop per token.

Batching is engine-level: one worker thread takes the requests that arrive within a short window
(up to `max_batch`), left-pads them into one prefill (a fused GroupQueryAttention graph: prefills
each alone and keeps the rows right-padded), then decodes them together, dropping rows as they finish. With continuous batching (the default) a request that arrives meanwhile is prefilled
and joins the running rows at the next step (serving/batching.py); with `batching="static"` it waits
until the batch has drained.

The engine also implements the evaluator's `LanguageModel` protocol (chat_prompt, generate,
loglikelihood), so the served model is scored by the same code as its PyTorch source.

Decoding honours the model's generation_config.json (its eos ids; a repetition control it states)
and the project's repetition control (training/evaluate/decoding.py): transformers' own
RepetitionPenaltyLogitsProcessor / NoRepeatNGramLogitsProcessor run on each row's logits as torch
tensors, so greedy decoding here and in PyTorch's `generate()` pick the same tokens. Each row is
processed over its own tokens (prompt + generated, no padding), so an answer never depends on
which requests it was batched with.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import AsyncIterator, Callable, Iterator, Sequence

import numpy as np

from serving.batching import BATCHING_MODES, CACHE_LAYOUTS, LAYOUT_METADATA_KEY, DecodeBatch, admit
from serving.heap import IDLE_RELEASE_INTERVAL_S, release_free_memory
from training.evaluate.decoding import DecodingConfig, eos_ids, explicit_from_env

log = logging.getLogger("balancedbio.engine")


class EngineError(RuntimeError):
    """The engine could not load or run; the message says what to do."""


class PromptTooLong(ValueError):
    """A prompt plus its token budget exceeds the model's context window (a client error)."""


@dataclass
class SamplingParams:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 means greedy: clinical answers should be reproducible by default
    top_p: float = 1.0
    seed: int | None = None
    stop: Sequence[str] = ()
    # None: the engine's decoding settings (model generation config, then project defaults).
    repetition_penalty: float | None = None
    no_repeat_ngram_size: int | None = None


@dataclass
class GenerationOutput:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (eos or a stop string) or "length"
    seconds: float = 0.0


@dataclass
class _Job:
    ids: list[int]
    params: SamplingParams
    sink: Callable[[str, object], None]  # ("token", str) | ("done", GenerationOutput) | ("error", Exception)
    tokens: list[int] = field(default_factory=list)
    emitted: str = ""
    cancelled: bool = False
    eos: int | None = None  # the end-of-sequence token that finished the job, if one did
    processors: object = None  # transformers LogitsProcessorList for this job's decoding settings
    started: float = field(default_factory=time.perf_counter)


def resolve_model_dir(model_dir: str | Path) -> tuple[Path, dict]:
    """An export folder (with model_card.json naming the served variant) or a folder holding one .onnx."""
    root = Path(model_dir)
    card_path = root / "model_card.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    directory = root / card["serve"] if card.get("serve") else root
    if not directory.is_dir() or not list(directory.glob("*.onnx")):
        raise EngineError(f"{directory} holds no .onnx model; export one with "
                          "`python -m training.export --run RUN_OR_MODEL --out DIR` and point BALANCEDBIO_MODEL at DIR")
    return directory, card


def _session(path: Path, threads: int | None, prefer_gpu: bool, memory_arena: bool = False):
    import onnxruntime as ort

    options = ort.SessionOptions()
    # ONNX Runtime's CPU arena keeps every block it ever grew to: a process holding this engine (with
    # torch and transformers) was at 1,335-1,566 MB after three batches of 8 with it and 1,182-1,237 MB
    # without, at the same decode time, three processes each. Off unless asked for (docs/serving.md,
    # "Worker memory", has the service's figures).
    options.enable_cpu_mem_arena = memory_arena
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # One op at a time, each spread over the cores: decoding is a chain of small matmuls.
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or int(os.environ.get("BALANCEDBIO_ORT_THREADS", 0)) or (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if prefer_gpu and "CUDAExecutionProvider" in ort.get_available_providers():
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    # The provider list is only a wish: ORT falls back to CPU when CUDA libraries or a device are
    # missing, so what the created session reports is the truth (get_device() only says how ORT was built).
    ort.set_default_logger_severity(4)  # the failed probe's load error is expected; we log the outcome
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    finally:
        ort.set_default_logger_severity(2)
    return session, session.get_providers()[0]


class OnnxEngine:
    def __init__(self, model_dir: str | Path, threads: int | None = None, prefer_gpu: bool = True,
                 max_batch: int = 8, batch_window_ms: float = 4.0, decoding: DecodingConfig | None = None,
                 prefill_tokens: int = 512, batching: str = "continuous", memory_arena: bool = False):
        from transformers import AutoTokenizer, GenerationConfig

        if prefill_tokens < 1:
            raise EngineError(f"prefill_tokens must be at least 1 (got {prefill_tokens}): it is the most prompt tokens "
                              "one prefill step computes logits for; 512 bounds a worker's memory at little cost")
        self.directory, self.card = resolve_model_dir(model_dir)
        onnx_files = sorted(self.directory.glob("*.onnx"))
        self.session, self.provider = _session(onnx_files[0], threads, prefer_gpu, memory_arena)
        self.tokenizer = AutoTokenizer.from_pretrained(self.directory, local_files_only=True)
        self.name = self.card.get("model_version") or self.directory.name
        self.aligned = bool(self.card.get("aligned", False))
        self.max_batch, self.batch_window = max_batch, batch_window_ms / 1000
        self.prefill_tokens = prefill_tokens
        if batching not in BATCHING_MODES:
            raise EngineError(f"batching {batching!r} is not known; use one of {', '.join(BATCHING_MODES)}")
        self.batching = batching
        self.joined_running = 0  # requests that joined rows already decoding (continuous batching at work)
        config = json.loads((self.directory / "config.json").read_text())
        self.max_context = int(config.get("max_position_embeddings", 2048))
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.past_names = [n for n in inputs if n.startswith("past_key_values.")]
        if not self.past_names:
            raise EngineError(f"{onnx_files[0]} has no KV-cache inputs; export with task text-generation-with-past")
        shape = inputs[self.past_names[0]].shape  # [batch, kv_heads, past_len, head_dim]
        self.kv_heads, self.head_dim = int(shape[1]), int(shape[3])
        self.kv_dtype = np.float16 if "float16" in inputs[self.past_names[0]].type else np.float32
        self.has_position_ids = "position_ids" in inputs
        # An export with `logits_to_keep` (training/export_graph.py) computes the head for the positions
        # asked for only; older exports compute it for every prompt position, and still work.
        self.keeps_logits = "logits_to_keep" in {i.name for i in self.session.get_overridable_initializers()}
        self.present_names = ["present." + n[len("past_key_values."):] for n in self.past_names]
        # Where a row's tokens sit in the batch's cache (serving/batching.py): a fused
        # GroupQueryAttention graph says `right` in its metadata (training/export_fused.py); Optimum's are `left`.
        self.cache_layout = self.session.get_modelmeta().custom_metadata_map.get(LAYOUT_METADATA_KEY, "left")
        if self.cache_layout not in CACHE_LAYOUTS:
            raise EngineError(f"{onnx_files[0]}: metadata {LAYOUT_METADATA_KEY}={self.cache_layout!r} is not one of "
                              f"{', '.join(CACHE_LAYOUTS)}; export the model again")
        # The model's generation config, as transformers' generate() reads it: generation_config.json
        # when the export carries one, else what the model config implies.
        if (self.directory / "generation_config.json").is_file():
            self.generation_config = GenerationConfig.from_pretrained(self.directory, local_files_only=True)
        else:
            from transformers import PretrainedConfig

            self.generation_config = GenerationConfig.from_model_config(PretrainedConfig(**config))
        self.eos_ids = eos_ids(self.generation_config, config.get("eos_token_id", self.tokenizer.eos_token_id))
        # An explicit `decoding` wins over the model's generation config, which wins over the defaults.
        self.decoding = DecodingConfig().for_model(self.generation_config,
                                                   asdict(decoding) if decoding else explicit_from_env())
        self._processors: dict[DecodingConfig, object] = {}
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        log.info("engine loaded %s on %s (%d threads); eos %s; %s", self.name, self.provider,
                 self.session.get_session_options().intra_op_num_threads, sorted(self.eos_ids), self.decoding.label())

    def processors_for(self, params: SamplingParams):
        """transformers' logits processors for a request: the engine's settings, updated by the request's."""
        config = self.decoding.updated(repetition_penalty=params.repetition_penalty,
                                       no_repeat_ngram_size=params.no_repeat_ngram_size)
        if config not in self._processors:  # stateless, so one list per setting serves every request
            self._processors[config] = config.logits_processors()
        return self._processors[config]

    # -- prompts ------------------------------------------------------------------------------------
    def chat_prompt(self, messages: Sequence[dict]) -> str:
        if self.tokenizer.chat_template is None:
            return "\n\n".join(m["content"] for m in messages) + "\n\n"
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def check_budget(self, ids: Sequence[int], max_new_tokens: int) -> None:
        if len(ids) + max_new_tokens > self.max_context:
            raise PromptTooLong(f"the prompt has {len(ids)} tokens and max_tokens is {max_new_tokens}; together they "
                                f"must stay within the model's context of {self.max_context} tokens: shorten the input")

    # -- the decode loop ----------------------------------------------------------------------------
    def _feed(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, past: list[np.ndarray]):
        feed = {"input_ids": ids, "attention_mask": mask}
        if self.has_position_ids:
            feed["position_ids"] = positions
        feed.update(zip(self.past_names, past))
        if self.keeps_logits:  # the next token needs the last position's logits only
            feed["logits_to_keep"] = np.array([1], np.int64)
        outputs = self.session.run(["logits", *self.present_names], feed)
        return outputs[0][:, -1, :], outputs[1:]

    def _process(self, logits: np.ndarray, jobs: list[_Job]) -> np.ndarray:
        """Each row's logits through its job's processors, over that row's own tokens."""
        if not any(job.processors for job in jobs):
            return logits
        import torch

        logits = np.array(logits, dtype=np.float32)  # generate() processes float32 logits too
        for row, job in enumerate(jobs):
            if job.processors:
                ids = torch.tensor([job.ids + job.tokens], dtype=torch.long)
                logits[row] = job.processors(ids, torch.from_numpy(logits[row:row + 1]))[0].numpy()
        return logits

    def _pick(self, logits: np.ndarray, jobs: list[_Job], rngs: list[np.random.Generator]) -> list[int]:
        logits = self._process(logits, jobs)
        picked = []
        for row, job in enumerate(jobs):
            p = job.params
            if p.temperature <= 0:
                picked.append(int(np.argmax(logits[row])))
                continue
            scaled = logits[row].astype(np.float64) / p.temperature
            probs = np.exp(scaled - scaled.max())
            probs /= probs.sum()
            if p.top_p < 1.0:  # nucleus: keep the smallest set of tokens whose mass reaches top_p
                order = np.argsort(-probs)
                keep = order[: int(np.searchsorted(np.cumsum(probs[order]), p.top_p) + 1)]
                mask = np.zeros_like(probs)
                mask[keep] = probs[keep]
                probs = mask / mask.sum()
            picked.append(int(rngs[row].choice(len(probs), p=probs)))
        return picked

    def _advance(self, job: _Job, token: int) -> str | None:
        """Record one token, stream its text; return the finish reason when the job is done."""
        if token in self.eos_ids:
            job.eos = token
            return "stop"
        job.tokens.append(token)
        text = self.tokenizer.decode(job.tokens, skip_special_tokens=True)
        for stop in job.params.stop:
            cut = text.find(stop)
            if stop and cut >= 0:
                if cut > len(job.emitted):
                    job.sink("token", text[len(job.emitted):cut])
                job.emitted = text[:cut]
                return "stop"
        # A multi-byte character split over tokens decodes to U+FFFD until its last piece arrives.
        if not text.endswith("\ufffd") and len(text) > len(job.emitted):
            job.sink("token", text[len(job.emitted):])
            job.emitted = text
        if len(job.tokens) >= job.params.max_new_tokens:
            return "length"
        return None

    def _prefill(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray):
        """The prompt through the model in column chunks of at most `prefill_tokens` tokens in all,
        each chunk attending to the KV cache of those before it; the last column's logits and the cache.

        Why chunks: the exported graph returns logits for every prompt position, 196 KB a token for a
        49k vocabulary in float32, and ONNX Runtime keeps its peak allocation; 8 prompts of 785 tokens
        in one piece took a worker from 1.1 GB to 3.6 GB resident. Chunking bounds that to the budget
        and, with left padding, the final column is every row's last prompt token."""
        rows, width = ids.shape
        # A fused graph's prompt (one row, unpadded) goes in whole: chunks would feed GroupQueryAttention a
        # prompt beside a cache, a case its parity tests do not cover. Its logits cover every position
        # (196 KB a token), one prompt at a time.
        step = width if self.cache_layout == "right" else max(1, self.prefill_tokens // rows)
        past = [np.zeros((rows, self.kv_heads, 0, self.head_dim), self.kv_dtype) for _ in self.past_names]
        for start in range(0, width, step):
            end = min(width, start + step)
            logits, past = self._feed(ids[:, start:end], mask[:, :end], positions[:, start:end], past)
        return logits, past

    def _finish(self, job: _Job, reason: str) -> None:
        job.sink("done", GenerationOutput(job.emitted, len(job.ids), len(job.tokens) + (job.eos is not None),
                                          reason, time.perf_counter() - job.started))

    def _choose(self, logits: np.ndarray, batch: DecodeBatch) -> DecodeBatch | None:
        """Each row's next token from its logits; finished rows leave the batch."""
        tokens = self._pick(logits, batch.jobs, batch.rngs)
        keep = []
        for slot, (job, token) in enumerate(zip(batch.jobs, tokens)):
            reason = "stop" if job.cancelled else self._advance(job, token)
            if reason is None:
                keep.append(slot)
            else:
                self._finish(job, reason)
        batch.next_tokens = tokens
        return batch.keep(keep)

    def _start(self, jobs: list[_Job]) -> DecodeBatch | None:
        """Prefill `jobs` together (left-padded) and choose their first tokens; in the right layout each
        prompt is prefilled alone, unpadded, and the rows are merged."""
        for job in jobs:
            if job.processors is None:
                job.processors = self.processors_for(job.params)
        if self.cache_layout == "right":
            batch = None
            for job in jobs:
                ids = np.array([job.ids], np.int64)
                mask, positions = np.ones_like(ids), np.arange(len(job.ids), dtype=np.int64)[None]
                logits, past = self._prefill(ids, mask, positions)
                one = self._choose(logits, DecodeBatch([job], [np.random.default_rng(job.params.seed)], [], past, mask,
                                                       positions[:, -1:], layout="right"))
                batch = one.merged(batch) if one is not None else batch
            return batch
        width = max(len(j.ids) for j in jobs)
        ids = np.full((len(jobs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(jobs), width), dtype=np.int64)
        for r, job in enumerate(jobs):
            ids[r, width - len(job.ids):] = job.ids
            mask[r, width - len(job.ids):] = 1
        # Positions count from each row's first real token, so a padded row computes as if alone.
        positions = np.clip(mask.cumsum(-1) - 1, 0, None)
        logits, past = self._prefill(ids, mask, positions)
        batch = DecodeBatch(list(jobs), [np.random.default_rng(j.params.seed) for j in jobs], [], past, mask,
                            positions[:, -1:])
        return self._choose(logits, batch)

    def _step(self, batch: DecodeBatch) -> DecodeBatch | None:
        """One decode step: every row feeds the token it chose and chooses the next."""
        batch.advance()
        logits, batch.past = self._feed(np.array(batch.next_tokens, np.int64)[:, None], batch.mask,
                                        batch.positions, batch.past)
        return self._choose(logits, batch)

    def _run_batch(self, jobs: list[_Job]) -> None:
        """Decode `jobs` together until every one is done (the caller's thread; no one joins)."""
        batch = self._start(jobs)
        while batch is not None:
            batch = self._step(batch)

    # -- the batcher ------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._serve, name="onnx-engine", daemon=True)
            self._worker.start()

    def close(self) -> None:
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout=30)
            self._worker = None

    def _serve(self) -> None:
        batch: DecodeBatch | None = None
        stopping, released, used = False, 0.0, False
        while not stopping or batch is not None:
            idle_wait = None  # how long an idle worker waits for a request before it releases memory
            if batch is None and used:
                # Idle after work: the batches' caches and buffers go back to the system
                # (serving/heap.py), at most every IDLE_RELEASE_INTERVAL_S.
                idle_wait = released + IDLE_RELEASE_INTERVAL_S - time.monotonic()
                if idle_wait <= 0:
                    release_free_memory()
                    released, used, idle_wait = time.monotonic(), False, None
            running = batch is not None
            # Static batching: newcomers wait until the running batch has drained.
            closed = stopping or (running and self.batching == "static")
            capacity = 0 if closed else self.max_batch - (len(batch) if running else 0)
            jobs, stop = admit(lambda timeout: self._queue.get(timeout=timeout), capacity, self.batch_window,
                               running=running, idle_wait=idle_wait)
            stopping = stopping or stop
            used = used or bool(jobs)
            if jobs:
                started = self._guarded(jobs, self._start, jobs)
                if started is not None and running:
                    self.joined_running += len(started)
                batch = started.merged(batch) if started is not None else batch
            if batch is not None:
                batch = self._guarded(batch.jobs, self._step, batch)

    def _guarded(self, jobs: list[_Job], work, *args):
        """Run one step of the batcher; a failure ends only the rows it concerns, reported to their
        callers, and the worker goes on serving."""
        try:
            return work(*args)
        except Exception as e:
            log.exception("generation failed")
            for job in jobs:
                job.sink("error", e)
            return None

    def _run_safely(self, batch: list[_Job]) -> None:
        self._guarded(batch, self._run_batch, batch)

    def submit(self, ids: Sequence[int], params: SamplingParams, sink: Callable[[str, object], None]) -> _Job:
        self.check_budget(ids, params.max_new_tokens)
        # A bad repetition setting fails here, in the caller, not later for its whole batch.
        job = _Job(list(ids), params, sink, processors=self.processors_for(params))
        if self._worker is None:  # no batcher running: generate in the caller's thread
            self._run_safely([job])
        else:
            self._queue.put(job)
        return job

    def stream(self, ids: Sequence[int], params: SamplingParams) -> Iterator[str | GenerationOutput]:
        """Text pieces as they are decoded, then the GenerationOutput (blocking; for scripts and benches)."""
        events: queue.Queue = queue.Queue()
        self.start()
        job = self.submit(ids, params, lambda kind, value: events.put((kind, value)))
        try:
            while True:
                kind, value = events.get()
                if kind == "error":
                    raise value
                yield value
                if kind == "done":
                    return
        finally:
            job.cancelled = True

    async def astream(self, ids: Sequence[int], params: SamplingParams) -> AsyncIterator[str | GenerationOutput]:
        """As `stream`, for asyncio callers; cancelling the consumer frees the job's batch row."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        self.start()
        job = self.submit(ids, params, lambda kind, value: loop.call_soon_threadsafe(events.put_nowait, (kind, value)))
        try:
            while True:
                kind, value = await events.get()
                if kind == "error":
                    raise value
                yield value
                if kind == "done":
                    return
        finally:
            job.cancelled = True

    async def acomplete(self, ids: Sequence[int], params: SamplingParams) -> GenerationOutput:
        async for item in self.astream(ids, params):
            if isinstance(item, GenerationOutput):
                return item
        raise EngineError("generation ended without a result")

    # -- LanguageModel protocol ----------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        """Greedy completions (with the engine's decoding settings), batched `max_batch` at a time in the
        caller's thread."""
        results: list[str] = [""] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        for start in range(0, len(order), self.max_batch):
            jobs = []
            for i in order[start:start + self.max_batch]:
                ids = self.encode(prompts[i])[-(self.max_context - max_new_tokens):]

                def sink(kind, value, i=i):
                    if kind == "done":
                        results[i] = value.text.strip()
                jobs.append(_Job(ids, SamplingParams(max_new_tokens=max_new_tokens), sink))
            self._run_batch(jobs)
        return results

    def greedy_tokens(self, ids: Sequence[int], max_new_tokens: int, params: SamplingParams | None = None) -> list[int]:
        """Greedy token ids (eos included when reached): what the parity test compares with PyTorch.
        `params` may set the request's repetition control; its max_new_tokens is ignored."""
        params = replace(params or SamplingParams(), max_new_tokens=max_new_tokens, temperature=0.0)
        job = _Job(list(ids), params, lambda kind, value: None)
        self._run_batch([job])
        return job.tokens + ([job.eos] if job.eos is not None else [])

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[float]:
        out = []
        for context, continuation in requests:
            ctx, whole = self.encode(context), self.encode(context + continuation)
            cont = whole[len(ctx):]
            ids = np.array([whole], np.int64)
            mask = np.ones_like(ids)
            past = [np.zeros((1, self.kv_heads, 0, self.head_dim), self.kv_dtype) for _ in self.past_names]
            feed = {"input_ids": ids, "attention_mask": mask, **dict(zip(self.past_names, past))}
            if self.has_position_ids:
                feed["position_ids"] = np.arange(ids.shape[1], dtype=np.int64)[None]
            if self.keeps_logits:  # the positions that predict the continuation, and the last one
                feed["logits_to_keep"] = np.array([len(cont) + 1], np.int64)
            logits = self.session.run(["logits"], feed)[0][0, -len(cont) - 1:-1].astype(np.float64)
            logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
            out.append(float(sum(logits[k, t] - logz[k] for k, t in enumerate(cont))))
        return out
