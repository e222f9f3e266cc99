"""A real `bentoml serve` on a free loopback port, serving the exported base model; stopped by PID.

The export is made once into the cache (serving.config.ensure_base_export) and reused by every
server the tests start. BentoML retries a failing __init__ forever, so `start_server` polls
/readyz with a deadline and shows the server's log when it runs out.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
API_KEY = "test-key-0123456789"
READY_DEADLINE_S = 240


@dataclass
class Server:
    url: str
    key: str
    data_dir: Path
    proc: subprocess.Popen
    log_path: Path

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.key}"}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def kill(self, sig: int = signal.SIGTERM) -> None:
        """Signal the server by its PID: the arbiter's process group and every BentoML worker under it."""
        from serving.__main__ import stop_server

        stop_server(self.proc, sig)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def base_export() -> Path:
    from serving.config import ensure_base_export

    return ensure_base_export()


@pytest.fixture(scope="session")
def fused_export(tmp_path_factory) -> Path:
    """The embedded model as a fused GroupQueryAttention graph (ONNX Runtime GenAI's builder, ~15 s)."""
    from training.export_fused import build_fused
    from training.models import embedded_model_dir

    return build_fused(embedded_model_dir(), tmp_path_factory.mktemp("fused") / "fused-fp32", "fused-fp32")


def start_server(model_dir: Path, data_dir: Path, **env_overrides: str) -> Server:
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "BALANCEDBIO_MODEL": str(model_dir), "BALANCEDBIO_API_KEYS": API_KEY,
           "BALANCEDBIO_DATA_DIR": str(data_dir), "BALANCEDBIO_MAX_TOKENS": "8",
           "BALANCEDBIO_DEFAULT_MAX_TOKENS": "4", "BALANCEDBIO_RATE_LIMIT": "100000",
           "BALANCEDBIO_ORT_THREADS": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "BENTOML_DO_NOT_TRACK": "true", **env_overrides}
    if "BALANCEDBIO_DB_URL" not in env_overrides:  # the caller's environment never picks the database
        env.pop("BALANCEDBIO_DB_URL", None)
    log_path = data_dir / "server.log"
    proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=REPO, env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own process group, so killpg reaches the worker too
    server = Server(f"http://127.0.0.1:{port}", API_KEY, data_dir, proc, log_path)
    deadline = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"bentoml serve exited with {proc.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.url + "/readyz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(1)
    server.kill()
    pytest.fail(f"server not ready within {READY_DEADLINE_S} s:\n{server.log()}")


@pytest.fixture(scope="session")
def server(base_export, tmp_path_factory):
    # CDS Hooks fails closed without JWT issuers; these tests are about the hooks themselves, so the
    # development switch is set here (tests/security/ runs servers without it).
    srv = start_server(base_export, tmp_path_factory.mktemp("serve_data"), BALANCEDBIO_CDS_ALLOW_UNSIGNED="1")
    yield srv
    srv.kill()


@pytest.fixture
def serve():
    """`serve(model_dir, data_dir, **env)` starts an extra server; any still running is stopped at teardown."""
    started: list[Server] = []

    def _serve(model_dir: Path, data_dir: Path, **env: str) -> Server:
        started.append(start_server(model_dir, data_dir, **env))
        return started[-1]
    yield _serve
    for srv in started:
        srv.kill()


@dataclass
class Shipped:
    models_dir: Path  # a models/ folder holding one tiny adapter
    cache: Path  # the BALANCEDBIO_CACHE its merge and export were written to
    base_dir: Path
    adapter_dir: Path
    export_dir: Path  # what serving.config.resolve_model chose for it


@pytest.fixture(scope="session")
def shipped(tmp_path_factory) -> Shipped:
    """A tiny adapter shipped in a models/ folder, resolved (merged and exported) once into a cache of its own."""
    from serving.config import Settings, resolve_model
    from tiny_adapter import make_adapter, make_base

    root = tmp_path_factory.mktemp("shipped")
    base = make_base(root / "base")
    adapter = make_adapter(root / "models", base)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BALANCEDBIO_CACHE", str(root / "cache"))
        env.delenv("BALANCEDBIO_MODEL", raising=False)
        env.delenv("BALANCEDBIO_ADAPTER", raising=False)
        served = resolve_model(Settings.from_env(), runs_dir=root / "no-runs", models=root / "models")
    return Shipped(root / "models", root / "cache", base, adapter, served.directory)
