"""The audit store on a real PostgreSQL, the database deploy/k8s configures for several replicas.

A PostgreSQL server (Debian's `postgresql` package; .ci/run installs it) is started for the session
in a temporary folder, on a free loopback port, and stopped at the end. PostgreSQL refuses to run as
root, so under root (CI) its programs run as `nobody`. Each test gets a database of its own.
The tests: the store's round trip; the schema migration from version 1 (alone, and by two processes
opening the same version-1 database at once); two processes opening a fresh database and writing at
once; two `bentoml serve` replicas taking consults and feedback at once, killed with SIGKILL, and
every acknowledged row found afterwards.
"""

from __future__ import annotations

import multiprocessing
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from serving.store import SCHEMA_VERSION, Store
from system_programs import require

START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgreSQL:
    port: int
    user: str = "postgres"

    def url(self, database: str = "postgres") -> str:
        # The scheme the deployment uses (deploy/k8s/secret.example.yaml): SQLAlchemy's psycopg 3 dialect.
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        name = "bb_" + uuid.uuid4().hex[:12]
        engine = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)


@pytest.fixture(scope="session")
def postgresql():
    initdb, pg_ctl = require("initdb"), require("pg_ctl")
    # Not under pytest's tmp folder: that one is private to root (0700), and the server may run as nobody.
    root = Path(tempfile.mkdtemp(prefix="bb-postgresql-"))
    data, sockets, log = root / "data", root / "sockets", root / "server.log"
    sockets.mkdir()
    as_user: dict = {}
    if os.geteuid() == 0:  # "root" execution of the PostgreSQL server is not permitted
        nobody = pwd.getpwnam("nobody")
        for path in (root, sockets):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        as_user = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(root), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    run = lambda *args: subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True,
                                       timeout=START_TIMEOUT_S, cwd=root, **as_user)
    made = run(initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
    assert made.returncode == 0, f"initdb failed:\n{made.stdout}\n{made.stderr}"
    port = free_port()
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c max_connections=60"
    started = run(pg_ctl, "-D", data, "-l", log, "-w", "-t", START_TIMEOUT_S, "-o", options, "start")
    assert started.returncode == 0, f"pg_ctl start failed:\n{started.stderr}\n{log.read_text(errors='replace')}"
    try:
        yield PostgreSQL(port)
    finally:
        run(pg_ctl, "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_the_store_round_trip_on_postgresql(postgresql):
    url = postgresql.new_database()
    store = Store(url)
    consult_id = store.add_consult(endpoint="/consult", model_version="m1", aligned=True, api_key_id="k1",
                                   question="q", patient={"resourceType": "Patient"}, answer="a", escalated=False,
                                   findings=[{"kind": "dose", "severity": "warning", "summary": "s"}])
    feedback_id = store.add_feedback(consult_id=consult_id, outcome="override", reason="outdated", correct=False)
    cds_id = store.record_cds_feedback({"card": "c1", "outcome": "accepted", "service_id": "balancedbio-order-sign"})
    store.engine.dispose()

    reopened = Store(url)  # a second replica, or a restart: same schema, same rows
    assert reopened.engine.dialect.name == "postgresql" and reopened.engine.dialect.driver == "psycopg"
    assert reopened.schema_version() == SCHEMA_VERSION and reopened.ping()
    consult = reopened.get_consult(consult_id)
    assert consult.findings == [{"kind": "dose", "severity": "warning", "summary": "s"}]
    assert consult.created_at.tzinfo is not None  # timezone-aware timestamps survive the round trip
    assert [(f.id, f.outcome, f.reason, f.correct) for f in reopened.feedback_for(consult_id)] == [
        (feedback_id, "override", "outdated", False)]
    with reopened.engine.connect() as c:
        row = c.execute(text("SELECT outcome, source, card_uuid FROM feedback WHERE id = :i"), {"i": cds_id}).one()
    assert tuple(row) == ("accepted", "cds-hooks", "c1")


# A database as schema version 1 (before issue 13) left it on PostgreSQL: the tables SQLAlchemy
# created then, in PostgreSQL's own types, with a consult and its feedback already stored.
V1_SCHEMA = (
    "CREATE TABLE schema_info (key VARCHAR(64) PRIMARY KEY, value VARCHAR(256))",
    "INSERT INTO schema_info VALUES ('schema_version', '1')",
    """CREATE TABLE consults (id VARCHAR(36) PRIMARY KEY, created_at TIMESTAMP WITH TIME ZONE, endpoint VARCHAR(64),
        model_version VARCHAR(256), aligned BOOLEAN, api_key_id VARCHAR(16), input_sha256 VARCHAR(64),
        answer_sha256 VARCHAR(64), escalated BOOLEAN, findings JSON, prompt_tokens INTEGER, completion_tokens INTEGER,
        latency_seconds DOUBLE PRECISION, raw_input TEXT, raw_answer TEXT)""",
    """CREATE TABLE feedback (id VARCHAR(36) PRIMARY KEY, consult_id VARCHAR(36) REFERENCES consults(id),
        created_at TIMESTAMP WITH TIME ZONE, source VARCHAR(32), outcome VARCHAR(32), reason TEXT, correct BOOLEAN,
        edited_answer_sha256 VARCHAR(64), edited_answer TEXT, card_uuid VARCHAR(64), service_id VARCHAR(128),
        details JSON)""",
    """INSERT INTO consults VALUES ('old-consult', now(), '/consult', 'm0', false, 'k0', 'i', 'a', false,
        '[{"kind": "dose", "severity": "warning"}]', 3, 4, 0.5, NULL, NULL)""",
    "INSERT INTO feedback (id, consult_id, created_at, source, outcome) VALUES ('old-feedback', 'old-consult', now(), 'api', 'accept')",
)


def version_1_database(postgresql) -> str:
    url = postgresql.new_database()
    engine = create_engine(url)
    with engine.begin() as c:
        for statement in V1_SCHEMA:
            c.exec_driver_sql(statement)
    engine.dispose()
    return url


def columns(url: str, table: str) -> set[str]:
    engine = create_engine(url)
    with engine.connect() as c:
        names = set(c.execute(text("SELECT column_name FROM information_schema.columns WHERE table_name = :t"),
                              {"t": table}).scalars())
    engine.dispose()
    return names


def test_version_1_database_is_migrated_on_postgresql(postgresql):
    """The v1 -> v2 migration (serving/store.py) as test_store.py runs it on SQLite, on PostgreSQL."""
    url = version_1_database(postgresql)
    assert "finish_reason" not in columns(url, "consults") and "dedupe_key" not in columns(url, "feedback")
    store = Store(url)
    assert store.schema_version() == SCHEMA_VERSION == 2
    store.engine.dispose()
    assert "finish_reason" in columns(url, "consults") and "dedupe_key" in columns(url, "feedback")

    reopened = Store(url)  # the migration was committed, and a second open does not run it again
    assert reopened.schema_version() == 2
    old = reopened.get_consult("old-consult")
    assert old.finish_reason is None and old.findings == [{"kind": "dose", "severity": "warning"}]
    assert [f.id for f in reopened.feedback_for("old-consult")] == ["old-feedback"]
    cid = reopened.add_consult(endpoint="/consult", model_version="m", aligned=False, api_key_id="k", question="q",
                               patient=None, answer="a", escalated=False, findings=[], finish_reason="disconnected")
    assert reopened.get_consult(cid).finish_reason == "disconnected"
    first = reopened.add_feedback(consult_id=cid, outcome="accept", dedupe_key=f"api:{cid}:accept")
    assert reopened.add_feedback(consult_id=cid, outcome="accept", dedupe_key=f"api:{cid}:accept") == first
    reopened.record_cds_cards("bb-order-check", "unsigned", ["card-after-migration"])  # the new v2 table
    assert reopened.cds_card("card-after-migration").client == "unsigned"
    with reopened.engine.connect() as c:
        unique = c.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_feedback_dedupe_key'")).scalar()
        versions = c.execute(text("SELECT value FROM schema_info")).scalars().all()
    reopened.engine.dispose()
    assert unique and unique.startswith("CREATE UNIQUE INDEX") and versions == ["2"]


WRITES_PER_WORKER = 25


def _worker(url: str, name: str, barrier, out) -> None:
    """One service worker: opens the store (creating the schema if needed) and writes consults + feedback."""
    barrier.wait(timeout=60)  # all workers open the fresh database at the same moment
    try:
        store = Store(url)
        ids = []
        for i in range(WRITES_PER_WORKER):
            cid = store.add_consult(endpoint="/consult", model_version=name, aligned=False, api_key_id=name,
                                    question=f"{name} {i}", patient=None, answer="a", escalated=False, findings=[])
            store.add_feedback(consult_id=cid, outcome="accept")
            ids.append(cid)
        out.put((name, ids, None))
    except Exception as error:  # reported to the test, which shows it
        out.put((name, [], f"{type(error).__name__}: {error}"))


def test_two_workers_open_a_fresh_database_and_write_at_once(postgresql):
    url = postgresql.new_database()
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(url, f"w{n}", barrier, out)) for n in range(2)]
    for w in workers:
        w.start()
    results = [out.get(timeout=180) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    assert [error for _, _, error in results] == [None, None]
    acknowledged = {cid for _, ids, _ in results for cid in ids}
    assert len(acknowledged) == 2 * WRITES_PER_WORKER
    engine = create_engine(url)
    with engine.connect() as c:
        stored = set(c.execute(text("SELECT id FROM consults")).scalars())
        feedback = c.execute(text("SELECT count(*) FROM feedback WHERE consult_id IS NOT NULL")).scalar()
        versions = c.execute(text("SELECT count(*) FROM schema_info")).scalar()
    engine.dispose()
    assert stored == acknowledged and feedback == 2 * WRITES_PER_WORKER and versions == 1


def test_two_workers_open_a_version_1_database_at_once(postgresql):
    """Replicas of a new release starting together on an old database: one migrates (under the
    advisory lock), the other then finds version 2; neither dies of "column already exists"."""
    url = version_1_database(postgresql)
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(url, f"w{n}", barrier, out)) for n in range(2)]
    for w in workers:
        w.start()
    results = [out.get(timeout=180) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    assert [error for _, _, error in results] == [None, None]
    engine = create_engine(url)
    with engine.connect() as c:
        versions = c.execute(text("SELECT value FROM schema_info")).scalars().all()
        consults = c.execute(text("SELECT count(*) FROM consults")).scalar()
    engine.dispose()
    assert versions == ["2"] and consults == 1 + 2 * WRITES_PER_WORKER


ROUNDS_PER_CLIENT = 3


def test_two_replicas_write_at_once_and_every_acknowledged_row_survives_kill_9(postgresql, base_export, serve, tmp_path):
    url = postgresql.new_database()
    servers, errors = [None, None], []

    def start(n):  # both replicas start together, as a Deployment's pods do
        try:
            servers[n] = serve(base_export, tmp_path / f"replica{n}", BALANCEDBIO_DB_URL=url)
        except BaseException as error:  # pytest.fail inside a thread: reported below
            errors.append(f"replica {n}: {error}")
    starters = [threading.Thread(target=start, args=(n,)) for n in range(2)]
    for t in starters:
        t.start()
    for t in starters:
        t.join()
    acknowledged: list[tuple[str, str]] = []  # (consult id, feedback id)
    try:
        assert not errors, errors

        def client(server, k):
            with httpx.Client(base_url=server.url, headers=server.headers, timeout=300) as http:
                for i in range(ROUNDS_PER_CLIENT):
                    consult = http.post("/consult", json={"question": f"Dose of metformin? ({k}.{i})", "max_tokens": 2})
                    assert consult.status_code == 200, consult.text
                    cid = consult.json()["consult_id"]
                    ack = http.post("/feedback", json={"consult_id": cid, "outcome": "accept"})
                    assert ack.status_code == 200, ack.text
                    acknowledged.append((cid, ack.json()["feedback_id"]))
        clients = [threading.Thread(target=lambda s=s, k=k: _record(errors, client, s, k))
                   for k, s in enumerate(servers * 2)]  # two clients per replica
        for t in clients:
            t.start()
        for t in clients:
            t.join(timeout=600)
        assert not errors, errors
    finally:
        for server in servers:
            if server is not None:
                server.kill(signal.SIGKILL)  # no shutdown hook, no flush: only what was committed remains
    assert len(acknowledged) == 4 * ROUNDS_PER_CLIENT
    engine = create_engine(url)
    with engine.connect() as c:
        rows = {tuple(row) for row in c.execute(text("SELECT consult_id, id FROM feedback"))}
        consults = set(c.execute(text("SELECT id FROM consults")).scalars())
    engine.dispose()
    assert set(acknowledged) <= rows and {cid for cid, _ in acknowledged} <= consults


def _record(errors: list, fn, *args) -> None:
    try:
        fn(*args)
    except BaseException as error:  # an assertion in a client thread fails the test, with its text
        errors.append(f"{type(error).__name__}: {error}")
