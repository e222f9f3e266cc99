"""POST /feedback: accept / override / edit of a consult, once per outcome, from the consult's own key."""

from __future__ import annotations

from fastapi import Depends
from starlette.concurrency import run_in_threadpool

from serving.auth import ApiError
from serving.routes.common import authorized, count, svc
from serving.schemas import FeedbackRequest, FeedbackResponse


async def feedback(body: FeedbackRequest, key_id: str = Depends(authorized)) -> FeedbackResponse:
    """Once per consult and outcome (a repeat returns the first feedback id and counts nothing), and
    only from the key that made the consult: another key's consult is answered like a missing one."""
    store = svc().store
    consult_id = body.consult_id.removeprefix("chatcmpl-")  # a chat completion's id names its audit row too
    row = await run_in_threadpool(store.get_consult, consult_id)
    if row is None or row.api_key_id != key_id:
        raise ApiError(404, "not_found", f"no consult with id {body.consult_id!r} made with this API key; send the "
                       "consult_id that /consult returned to you")
    dedupe_key = f"api:{consult_id}:{body.outcome}"
    existing = await run_in_threadpool(store.feedback_by_key, dedupe_key)
    if existing is not None:
        return FeedbackResponse(feedback_id=existing.id, consult_id=consult_id)
    feedback_id = await run_in_threadpool(lambda: store.add_feedback(
        consult_id=consult_id, outcome=body.outcome, reason=body.reason, edited_answer=body.edited_answer,
        correct=body.correct, details={"api_key_id": key_id}, dedupe_key=dedupe_key))
    count("record_feedback", body.outcome, body.correct)
    return FeedbackResponse(feedback_id=feedback_id, consult_id=consult_id)


def record_cds_feedback(item: dict) -> bool:
    """Store one CDS feedback item; False when that card already had that outcome (not counted again)."""
    store = svc().store
    before = store.feedback_by_key(f"cds:{item.get('card')}:{item.get('outcome')}") if item.get("card") else None
    store.record_cds_feedback(item)
    return before is None


def record_cds_cards(service_id: str, client: str, uuids: list[str]) -> None:
    svc().store.record_cds_cards(service_id, client, uuids)
