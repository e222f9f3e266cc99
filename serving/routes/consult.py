"""The clinical routes: POST /consult and /consult_stream (question + optional FHIR patient)."""

from __future__ import annotations

import json
from typing import AsyncIterator

from fastapi import Depends
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from serving import consult as consult_pipeline
from serving import safety
from serving.engine import GenerationOutput, OnnxEngine, SamplingParams
from serving.routes.common import (Service, audit_unfinished, authorized, count, count_dict_findings, encode,
                                   log, max_tokens, svc)
from serving.schemas import ConsultRequest, ConsultResponse


def _prepare(question: str, patient: dict | None, tokens: tuple[str, ...]):
    """consult.prepare with control tokens neutralised in the question and in the FHIR-derived summary."""
    question, found_q = safety.neutralise(question, tokens)
    c = consult_pipeline.prepare(question, patient)
    c.patient_summary, found_p = safety.neutralise(c.patient_summary, tokens)
    if found_q:
        c.findings.append(safety.control_token_finding(found_q, "question"))
    if found_p:
        c.findings.append(safety.control_token_finding(found_p, "patient record"))
    count_dict_findings([f for f in c.findings if isinstance(f, dict)])
    return c


async def _consult_start(body: ConsultRequest):
    service = svc()
    engine = service.ready_engine()
    budget = max_tokens(body.max_tokens)
    c = await run_in_threadpool(_prepare, body.question, body.patient, service.control_tokens(engine))
    ids = None if c.escalation else await run_in_threadpool(encode, engine, c.messages(), budget)
    return service, engine, c, ids, SamplingParams(max_new_tokens=budget)


async def _consult_finish(service: Service, engine: OnnxEngine, c, out: GenerationOutput | None,
                          key_id: str) -> ConsultResponse:
    answer = c.escalation if out is None else out.text
    findings, cards, issues = await run_in_threadpool(consult_pipeline.finish, c, answer)
    answer = await run_in_threadpool(consult_pipeline.final_answer, c, answer)  # led by critical findings, de-identified
    summary = [{k: f.get(k) for k in ("kind", "severity", "summary")} for f in findings]
    await service.audit("/consult", c.consult_id, key_id, c.question, c.patient_json, out, c.escalation is not None,
                        answer=answer, findings=summary,
                        finish_reason="escalated" if out is None else out.finish_reason)
    return ConsultResponse(consult_id=c.consult_id, answer=answer, model=engine.name, aligned=engine.aligned,
                           escalated=c.escalation is not None, findings=findings, cards=cards,
                           detected_issues=issues, patient_summary=c.patient_summary, evidence=c.evidence)


async def consult(body: ConsultRequest, key_id: str = Depends(authorized)) -> ConsultResponse:
    service, engine, c, ids, params = await _consult_start(body)
    out = None if ids is None else await engine.acomplete(ids, params)
    return await _consult_finish(service, engine, c, out, key_id)


async def consult_stream(body: ConsultRequest, key_id: str = Depends(authorized)):
    # Everything that can be refused (auth, FHIR, budget) is checked before the first byte, so
    # those errors are ordinary JSON responses; only generation runs inside the stream.
    service, engine, c, ids, params = await _consult_start(body)

    async def lines() -> AsyncIterator[str]:
        out, streamed, audited = None, [], False
        try:
            if ids is None:
                streamed.append(c.escalation)
                yield json.dumps({"event": "token", "text": c.escalation}) + "\n"
            else:
                async for item in engine.astream(ids, params):
                    if isinstance(item, GenerationOutput):
                        out = item
                    else:
                        streamed.append(item)
                        yield json.dumps({"event": "token", "text": item}) + "\n"
            result = await _consult_finish(service, engine, c, out, key_id)
            audited = True
            yield json.dumps({"event": "done", "consult": result.model_dump(mode="json")}) + "\n"
        except Exception as e:
            log.exception("consult stream failed")
            count("record_error", "model")
            if not audited:
                await audit_unfinished(service, "/consult", c.consult_id, key_id, c.question, streamed,
                                       c.escalation is not None, "error", c.patient_json)
                audited = True
            yield json.dumps({"event": "error", "error": {"type": "internal_error", "message": type(e).__name__}}) + "\n"
        finally:
            if not audited:  # the client disconnected before the end
                await audit_unfinished(service, "/consult", c.consult_id, key_id, c.question, streamed,
                                       c.escalation is not None, "disconnected", c.patient_json)

    return StreamingResponse(lines(), media_type="application/x-ndjson")
