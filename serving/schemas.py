"""Typed request and response bodies of the HTTP API (see serving/README.md for the contract).

The OpenAI-compatible models accept what the official `openai` client sends (unknown fields are
ignored, as OpenAI's API does for fields it does not use); the clinical ones are strict, so a
misspelt field is a 422 naming it rather than a silently ignored option.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Bounds that keep one request from occupying the engine for long; the service checks max_tokens
# against its configured limit (BALANCEDBIO_MAX_TOKENS) as well.
MAX_MESSAGES = 64
MAX_TEXT = 32_000
MAX_QUESTION = 4_000


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


# -- OpenAI-compatible ----------------------------------------------------------------------------
class TextPart(BaseModel):
    type: Literal["text"]
    text: str = Field(max_length=MAX_TEXT)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: Annotated[str, Field(max_length=MAX_TEXT)] | Annotated[list[TextPart], Field(max_length=MAX_MESSAGES)]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = Field(None, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)  # ge, not gt: BentoML labels the schema OpenAPI 3.0
    n: int | None = Field(None, ge=1, le=1, description="only 1 is supported")
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    user: str | None = Field(None, max_length=256)

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value):
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: Literal["stop", "length"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class SafetyReport(BaseModel):
    """The `balancedbio` extension of a chat completion (also the last stream chunk's): the same
    input and output checks as /consult. Mirrored in the X-BalancedBio-Checked, -Escalated,
    -Findings (count) and -Finding-Kinds response headers (input findings only, when streaming)."""
    checked: bool = Field(description="false only for a key the operator listed in BALANCEDBIO_CHAT_UNCHECKED_KEY_IDS")
    escalated: bool = Field(description="true: the input checks answered instead of the model")
    findings: list[dict[str, Any]]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    aligned: bool = Field(description="false: the untouched base model, not the BalancedBio-aligned one")
    balancedbio: SafetyReport | None = Field(None, description="BalancedBio extension: the guardrails' verdict")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "balancedbio"
    aligned: bool


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# -- clinical ------------------------------------------------------------------------------------------
class ConsultRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=MAX_QUESTION)
    patient: dict[str, Any] | None = Field(None, description="a FHIR R4 Bundle or a single resource (JSON)")
    max_tokens: int | None = Field(None, ge=1)


class Evidence(BaseModel):
    """A knowledge-base fact the answer was grounded on (serving/consult.py case_evidence)."""

    kind: str = Field(description="interaction | allergy | contraindication | dose | renal | electrolyte | paediatric | allergy_record | code")
    severity: Literal["info", "warning", "critical"]
    statement: str = Field(description="the fact in one line, as given to the model")
    sources: list[str] = Field(default_factory=list, description="source ids: grade and source, FHIR resource, code system")


class ConsultResponse(BaseModel):
    consult_id: str
    answer: str
    model: str
    aligned: bool
    escalated: bool
    findings: list[dict[str, Any]]
    cards: list[dict[str, Any]]
    detected_issues: list[dict[str, Any]]
    patient_summary: str | None
    evidence: list[Evidence] = Field(default_factory=list,
                                     description="the knowledge-base facts for this case that the prompt carried")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    consult_id: str = Field(min_length=1, max_length=64)
    outcome: Literal["accept", "override", "edit"]
    reason: str | None = Field(None, max_length=4_000)
    edited_answer: str | None = Field(None, max_length=MAX_TEXT)
    correct: bool | None = None

    @model_validator(mode="after")
    def _outcome_needs(self) -> "FeedbackRequest":
        if self.outcome == "override" and not (self.reason or "").strip():
            raise ValueError("an override needs a reason: say why the answer was not followed")
        if self.outcome == "edit" and not (self.edited_answer or "").strip():
            raise ValueError("an edit needs edited_answer: the answer as the clinician corrected it")
        return self


class FhirPatientRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fhir_server: str = Field(min_length=1, max_length=2048, description="a base URL listed in BALANCEDBIO_FHIR_SERVERS")
    patient_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9\-.]{1,64}$",
                            description="the FHIR logical id of the Patient")
    token: str | None = Field(None, max_length=8192, description="bearer token for the FHIR server (not stored)")


class FeedbackResponse(BaseModel):
    feedback_id: str
    consult_id: str
