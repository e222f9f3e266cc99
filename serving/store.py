"""The audit trail: consults and clinician feedback, in any SQLAlchemy database.

By default a SQLite file in the data directory, in WAL mode with `synchronous=FULL`: a write is
acknowledged to the client only after its commit is on disk, so it survives `kill -9` of the
server (tests/serving/test_durability.py kills one and reads the row back).

What is stored: time, model version, whether it was aligned, a SHA-256 of the input (question +
patient JSON), guardrail findings, token counts and latency. The question, patient context and
answer text are kept only with `BALANCEDBIO_STORE_RAW=1`, since they may carry PHI.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, create_engine, event,
                        select)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from clinical.deid import deidentify

SCHEMA_VERSION = 2
SCHEMA_LOCK_ID = 0x62626462  # PostgreSQL advisory lock held while the schema is created ("bbdb")
# Version 1 -> 2 (issue 13): consults.finish_reason, feedback.dedupe_key (unique), the cds_cards table.
_MIGRATIONS_1_TO_2 = (
    "ALTER TABLE consults ADD COLUMN finish_reason VARCHAR(32)",
    "ALTER TABLE feedback ADD COLUMN dedupe_key VARCHAR(200)",
    "CREATE UNIQUE INDEX IF NOT EXISTS ix_feedback_dedupe_key ON feedback (dedupe_key)",
)


def scrub_feedback_text(text: str | None) -> str | None:
    """Feedback reasons and comments are free text a clinician may fill with names and dates: they are
    de-identified before storage, whatever store_raw says. If de-identification cannot run, the text is
    not stored (fail closed), and the row says so."""
    if not text:
        return text
    try:
        return deidentify(text)
    except Exception as exc:  # never store raw text because a scrubber failed
        return f"[withheld: de-identification unavailable ({type(exc).__name__})]"


class Base(DeclarativeBase):
    pass


class SchemaInfo(Base):
    __tablename__ = "schema_info"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class Consult(Base):
    __tablename__ = "consults"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    endpoint: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(256))
    aligned: Mapped[bool] = mapped_column(Boolean)
    api_key_id: Mapped[str] = mapped_column(String(16))  # a prefix of the key's hash, never the key
    input_sha256: Mapped[str] = mapped_column(String(64), index=True)
    answer_sha256: Mapped[str] = mapped_column(String(64))
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    findings: Mapped[list] = mapped_column(JSON, default=list)  # kind, severity, summary of each
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    raw_input: Mapped[str | None] = mapped_column(Text, nullable=True)  # only with store_raw
    raw_answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    # "stop", "length", "escalated", "disconnected" (the client left mid-stream), "error"
    finish_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)


class Feedback(Base):
    __tablename__ = "feedback"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    consult_id: Mapped[str | None] = mapped_column(ForeignKey("consults.id"), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source: Mapped[str] = mapped_column(String(32))  # "api" or "cds-hooks"
    outcome: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    correct: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    edited_answer_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    edited_answer: Mapped[str | None] = mapped_column(Text, nullable=True)  # only with store_raw
    card_uuid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    service_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    details: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # One row per (consult, outcome) or (card, outcome): a repeated POST returns the first row.
    dedupe_key: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)


class CdsCard(Base):
    """A card this service returned to a CDS client: feedback on it is accepted from that client only."""
    __tablename__ = "cds_cards"
    uuid: Mapped[str] = mapped_column(String(64), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(128))
    client: Mapped[str] = mapped_column(String(256))  # the JWT issuer, or "unsigned" in development
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class UnknownCard(LookupError):
    """Feedback names a card this service did not return to the caller."""


class SchemaMismatch(RuntimeError):
    """The database was written by another schema version; migrate it or point BALANCEDBIO_DB_URL elsewhere."""


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def input_hash(question: str, patient: object | None) -> str:
    # Canonical JSON: the same consult hashes the same whatever the key order of the client's JSON.
    return sha256_text(json.dumps({"question": question, "patient": patient}, sort_keys=True, separators=(",", ":")))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cursor.execute("PRAGMA synchronous=FULL")  # fsync the WAL on each commit: acknowledged means on disk
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()


class Store:
    def __init__(self, url: str, store_raw: bool = False):
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            _sqlite_pragmas(self.engine)
        self.store_raw = store_raw
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                # Replicas starting together on a fresh database race on CREATE TABLE and on the version
                # row, and the loser dies of a unique violation: one at a time, for this transaction.
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_ID})")
            Base.metadata.create_all(conn)
            self._check_version(conn)

    def _check_version(self, conn) -> None:
        with Session(bind=conn) as s:
            row = s.get(SchemaInfo, "schema_version")
            if row is None:
                s.add(SchemaInfo(key="schema_version", value=str(SCHEMA_VERSION)))
            elif int(row.value) == 1:
                for statement in _MIGRATIONS_1_TO_2:
                    s.connection().exec_driver_sql(statement)
                row.value = str(SCHEMA_VERSION)
            elif int(row.value) != SCHEMA_VERSION:
                raise SchemaMismatch(f"database schema version {row.value}, this service writes {SCHEMA_VERSION}")
            s.flush()  # into the caller's transaction, which commits it (closing the session would drop it)

    def schema_version(self) -> int:
        with self._session() as s:
            return int(s.get(SchemaInfo, "schema_version").value)

    def add_consult(self, *, endpoint: str, model_version: str, aligned: bool, api_key_id: str, question: str,
                    patient: object | None, answer: str, escalated: bool, findings: list[dict],
                    prompt_tokens: int = 0, completion_tokens: int = 0, latency_seconds: float = 0.0,
                    consult_id: str | None = None, finish_reason: str | None = None) -> str:
        consult_id = consult_id or str(uuid.uuid4())
        row = Consult(
            id=consult_id, created_at=_now(), endpoint=endpoint, model_version=model_version, aligned=aligned,
            api_key_id=api_key_id, input_sha256=input_hash(question, patient), answer_sha256=sha256_text(answer),
            escalated=escalated, findings=findings, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
            latency_seconds=latency_seconds,
            raw_input=json.dumps({"question": question, "patient": patient}) if self.store_raw else None,
            raw_answer=answer if self.store_raw else None, finish_reason=(finish_reason or None) and finish_reason[:32],
        )
        with self._session.begin() as s:  # commits (and, in SQLite, fsyncs) before returning
            s.add(row)
        return consult_id

    def get_consult(self, consult_id: str) -> Consult | None:
        with self._session() as s:
            return s.get(Consult, consult_id)

    def add_feedback(self, *, consult_id: str | None, outcome: str, reason: str | None = None,
                     edited_answer: str | None = None, correct: bool | None = None, source: str = "api",
                     card_uuid: str | None = None, service_id: str | None = None,
                     details: dict | None = None, dedupe_key: str | None = None) -> str:
        """The new row's id; with `dedupe_key`, the existing row's id when that key was stored before."""
        if dedupe_key:
            existing = self.feedback_by_key(dedupe_key)
            if existing is not None:
                return existing.id
        feedback_id = str(uuid.uuid4())
        reason = scrub_feedback_text(reason)
        row = Feedback(
            id=feedback_id, consult_id=consult_id, created_at=_now(), source=source, outcome=outcome, reason=reason,
            correct=correct, edited_answer_sha256=sha256_text(edited_answer) if edited_answer else None,
            edited_answer=edited_answer if self.store_raw else None, card_uuid=card_uuid, service_id=service_id,
            details=details, dedupe_key=dedupe_key,
        )
        try:
            with self._session.begin() as s:
                s.add(row)
        except IntegrityError:
            existing = self.feedback_by_key(dedupe_key) if dedupe_key else None
            if existing is None:
                raise
            return existing.id  # a concurrent identical request won the insert
        return feedback_id

    def feedback_by_key(self, dedupe_key: str) -> Feedback | None:
        with self._session() as s:
            return s.scalars(select(Feedback).where(Feedback.dedupe_key == dedupe_key)).first()

    def record_cds_cards(self, service_id: str, client: str, card_uuids: list[str]) -> None:
        """Remember which client received which cards (feedback is bound to them)."""
        if not card_uuids:
            return
        with self._session.begin() as s:
            for card in card_uuids:
                s.merge(CdsCard(uuid=str(card)[:64], service_id=service_id[:128], client=client[:256], created_at=_now()))

    def cds_card(self, card_uuid: str) -> CdsCard | None:
        with self._session() as s:
            return s.get(CdsCard, str(card_uuid)[:64])

    def feedback_for(self, consult_id: str) -> list[Feedback]:
        with self._session() as s:
            return list(s.scalars(select(Feedback).where(Feedback.consult_id == consult_id)))

    def record_cds_feedback(self, item: dict) -> str:
        """The `record_feedback` callback of the CDS Hooks app: one card's outcome, no consult id.

        Idempotent per card and outcome (the first row's id comes back). With `client` in the item
        (the app sets it: the JWT issuer, or "unsigned"), the card must have been returned to that
        client by this service (`record_cds_cards`), else UnknownCard.

        Takes the app's record (snake_case, override reason as a code plus a comment) and, for
        callers holding the spec's own feedback item, its camelCase shape with the reason as a Coding."""
        override = item.get("overrideReason") or item.get("override_reason")
        comment = item.get("override_comment")
        if isinstance(override, dict):
            comment = override.get("userComment") or comment
            override = (override.get("reason") or {}).get("display") or (override.get("reason") or {}).get("code")
        reason = " ".join(str(x) for x in (override, comment) if x) or None
        details = {"outcome_timestamp": item.get("outcome_timestamp") or item.get("outcomeTimestamp"),
                   "accepted_suggestions": item.get("accepted_suggestions") or
                   [s.get("id") if isinstance(s, dict) else s for s in item.get("acceptedSuggestions") or []]}
        card_uuid = str(item.get("card") or item.get("card_uuid") or "")[:64] or None
        outcome = str(item.get("outcome", "unknown"))[:32]
        if "client" in item:
            card = self.cds_card(card_uuid) if card_uuid else None
            if card is None or card.client != str(item["client"])[:256]:
                raise UnknownCard(f"no card {card_uuid!r} was returned to this client")
        return self.add_feedback(
            consult_id=None, outcome=outcome, reason=reason, source="cds-hooks",
            dedupe_key=f"cds:{card_uuid}:{outcome}" if card_uuid else None,
            card_uuid=card_uuid,
            service_id=str(item.get("service_id") or item.get("serviceId") or "")[:128] or None,
            details={k: v for k, v in details.items() if v},
        )

    def ping(self) -> bool:
        with self.engine.connect() as c:
            c.exec_driver_sql("SELECT 1")
        return True
