"""OpenAI-compatible routes: GET /v1/models, POST /v1/chat/completions (stream true/false)."""

from __future__ import annotations

import json
import time
import uuid
from typing import AsyncIterator

from fastapi import Depends
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from serving import safety
from serving.auth import ApiError
from serving.engine import GenerationOutput, SamplingParams
from serving.routes.common import (SETTINGS, audit_unfinished, authorized, count, count_dict_findings, encode,
                                   log, max_tokens, svc)
from serving.schemas import ChatCompletion, ChatCompletionRequest, Choice, ModelCard, ModelList, ResponseMessage, Usage


async def list_models(key_id: str = Depends(authorized)) -> ModelList:
    engine = svc().ready_engine()
    return ModelList(data=[ModelCard(id=engine.name, created=svc().loaded_at, aligned=engine.aligned)])


async def chat_completions(body: ChatCompletionRequest, key_id: str = Depends(authorized)):
    """OpenAI-compatible chat through the same safety pipeline as /consult (serving/safety.py): the
    input checks may escalate (the model is not called), the output checks report findings in the
    `balancedbio` field and the X-BalancedBio-* headers. Only keys an operator lists in
    BALANCEDBIO_CHAT_UNCHECKED_KEY_IDS skip the checks (and the response says checked=false)."""
    service = svc()
    engine = service.ready_engine()
    if body.model and body.model not in (engine.name, "balancedbio", "default"):
        raise ApiError(404, "model_not_found", f"model {body.model!r} is not served here; use {engine.name!r} "
                       "(see GET /v1/models)")
    budget = max_tokens(body.max_completion_tokens or body.max_tokens)
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    checked = key_id not in SETTINGS.chat_unchecked_key_ids
    check = await run_in_threadpool(safety.check_chat, messages, service.control_tokens(engine), checked)
    count_dict_findings(check.findings)
    ids = None if check.escalation else await run_in_threadpool(encode, engine, check.messages, budget)
    params = SamplingParams(max_new_tokens=budget, temperature=body.temperature or 0.0, top_p=body.top_p or 1.0,
                            seed=body.seed, stop=body.stop_list())
    consult_id, created = str(uuid.uuid4()), int(time.time())
    question = json.dumps(messages)
    headers = check.headers()

    async def finish(out: GenerationOutput | None, answer: str, finish_reason: str) -> dict:
        findings = await run_in_threadpool(safety.finish_chat, check, answer)
        summary = [{k: f.get(k) for k in ("kind", "severity", "summary")} for f in findings]
        await service.audit("/v1/chat/completions", consult_id, key_id, question, None, out, check.escalation is not None,
                            answer=answer, findings=summary, finish_reason=finish_reason)
        return check.report(findings)

    if not body.stream:
        out = None if ids is None else await engine.acomplete(ids, params)
        answer = check.escalation if out is None else out.text
        report = await finish(out, answer, "escalated" if out is None else out.finish_reason)
        completion = ChatCompletion(
            id=f"chatcmpl-{consult_id}", created=created, model=engine.name,
            choices=[Choice(message=ResponseMessage(content=answer), finish_reason=out.finish_reason if out else "stop")],
            usage=Usage(prompt_tokens=out.prompt_tokens if out else 0, completion_tokens=out.completion_tokens if out else 0,
                        total_tokens=(out.prompt_tokens + out.completion_tokens) if out else 0),
            aligned=engine.aligned, balancedbio=report)
        return JSONResponse(completion.model_dump(mode="json"), headers=headers)

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    async def events() -> AsyncIterator[str]:
        def chunk(delta: dict, finish: str | None = None, **extra) -> str:
            return "data: " + json.dumps({"id": f"chatcmpl-{consult_id}", "object": "chat.completion.chunk",
                                          "created": created, "model": engine.name, "aligned": engine.aligned,
                                          "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                                          **extra}) + "\n\n"
        streamed, audited = [], False
        try:
            yield chunk({"role": "assistant", "content": ""})
            if ids is None:
                streamed.append(check.escalation)
                yield chunk({"content": check.escalation})
                report = await finish(None, check.escalation, "escalated")
                audited = True
                yield chunk({}, "stop", balancedbio=report)
            else:
                async for item in engine.astream(ids, params):
                    if isinstance(item, GenerationOutput):
                        report = await finish(item, item.text, item.finish_reason)
                        audited = True
                        yield chunk({}, item.finish_reason, balancedbio=report)
                        if include_usage:
                            usage = Usage(prompt_tokens=item.prompt_tokens, completion_tokens=item.completion_tokens,
                                          total_tokens=item.prompt_tokens + item.completion_tokens)
                            yield "data: " + json.dumps({"id": f"chatcmpl-{consult_id}", "object": "chat.completion.chunk",
                                                         "created": created, "model": engine.name, "choices": [],
                                                         "usage": usage.model_dump()}) + "\n\n"
                    else:
                        streamed.append(item)
                        yield chunk({"content": item})
        except Exception as e:  # headers are sent: report in-band, as OpenAI does
            log.exception("streaming generation failed")
            count("record_error", "model")
            await audit_unfinished(service, "/v1/chat/completions", consult_id, key_id, question, streamed,
                                   check.escalation is not None, "error")
            audited = True
            yield "data: " + json.dumps({"error": {"type": "internal_error", "message": type(e).__name__}}) + "\n\n"
        finally:
            if not audited:  # the client went away mid-stream: the id it holds must still be in the store
                await audit_unfinished(service, "/v1/chat/completions", consult_id, key_id, question, streamed,
                                       check.escalation is not None, "disconnected")
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
