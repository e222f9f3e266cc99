"""Start the real service with `bentoml serve` for end-to-end tests, and stop it by its PID.

Used by tests/monitoring/test_prometheus_scrape.py and tests/ui/test_browser.py. BentoML keeps
retrying when the service's __init__ fails, so readiness is polled with a deadline and the
server's log is shown when it never comes up.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
SERVICE_FILE = REPO / "serving" / "service.py"
# What `bentoml serve` runs: "." is the repository through bentofile.yaml. Another target (a
# built bento tag, or a module:Class) can be given to run the same tests against it.
TARGET = os.environ.get("BALANCEDBIO_TEST_SERVE_TARGET", ".")
READY_DEADLINE_S = float(os.environ.get("BALANCEDBIO_TEST_READY_DEADLINE", "600"))
POLL_INTERVAL_S = 1.0


@dataclass(frozen=True)
class RunningService:
    url: str
    api_key: str
    db_url: str
    db_path: Path
    pid: int
    log_path: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def missing_reason() -> str | None:
    """Why the service cannot be started from this tree, or None."""
    if TARGET == "." and not SERVICE_FILE.exists():
        return "serving/service.py (issue 5) is not in this tree, so there is no service to start"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bentoml() -> list[str]:
    exe = Path(sys.executable).with_name("bentoml")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "bentoml"]


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's own process group (it was started in a new session), then SIGKILL."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextmanager
def running_service(workdir: Path, api_key: str, extra_env: dict[str, str] | None = None) -> Iterator[RunningService]:
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / "db.sqlite"
    port = free_port()
    env = {
        **os.environ,
        "BALANCEDBIO_API_KEYS": api_key,
        "BALANCEDBIO_DB_URL": f"sqlite:///{db_path}",
        "BALANCEDBIO_DATA_DIR": str(workdir / "data"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "BENTOML_HOME": str(workdir / "bentoml_home"),  # its own prometheus multiproc dir and logs
        "BENTOML_DO_NOT_TRACK": "true",
        **(extra_env or {}),
    }
    log_path = workdir / "bentoml_serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*_bentoml(), "serve", TARGET, "--host", "127.0.0.1", "--port", str(port)],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    service = RunningService(f"http://127.0.0.1:{port}", api_key, env["BALANCEDBIO_DB_URL"], db_path, proc.pid, log_path)
    try:
        deadline = time.monotonic() + READY_DEADLINE_S
        attempts = int(READY_DEADLINE_S / POLL_INTERVAL_S) + 1
        for _ in range(attempts):
            if proc.poll() is not None:
                raise RuntimeError(f"bentoml serve exited with {proc.returncode}:\n{service.log_tail()}")
            try:
                if httpx.get(service.url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"no 200 from /readyz within {READY_DEADLINE_S:.0f} s:\n{service.log_tail()}")
            time.sleep(POLL_INTERVAL_S)
        else:
            raise RuntimeError(f"no 200 from /readyz after {attempts} polls:\n{service.log_tail()}")
        yield service
    finally:
        _stop(proc)
