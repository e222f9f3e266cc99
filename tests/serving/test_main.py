"""The main job (`python -m serving`, what `make run` starts): it resolves the model once and hands it to
the server, serves a shipped adapter without training, and a stop signal leaves nothing behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import psutil
import pytest
from conftest import API_KEY, READY_DEADLINE_S, REPO, free_port

pytestmark = pytest.mark.e2e


def _bentoml_processes(tree: list[psutil.Process]) -> list[psutil.Process]:
    """The live BentoML processes (arbiter, workers) among `tree`; workers' command lines do not name the port,
    and the arbiter, once setproctitle is installed, renames itself "circusd" (the process manager it runs)."""
    found = []
    for p in tree:
        try:
            cmdline = " ".join(p.cmdline())
            if ("bentoml" in cmdline or cmdline.startswith("circusd")) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.NoSuchProcess:
            pass
    return found


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_to_the_main_job_stops_the_server_and_all_its_workers(shipped, tmp_path, sig):
    port = free_port()
    env = {**os.environ, "BALANCEDBIO_MODELS_DIR": str(shipped.models_dir), "BALANCEDBIO_CACHE": str(shipped.cache),
           "BALANCEDBIO_API_KEYS": API_KEY, "BALANCEDBIO_DATA_DIR": str(tmp_path / "data"),
           "BALANCEDBIO_ORT_THREADS": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "BENTOML_DO_NOT_TRACK": "true"}
    for name in ("BALANCEDBIO_MODEL", "BALANCEDBIO_ADAPTER", "BALANCEDBIO_DB_URL"):
        env.pop(name, None)
    log_path = tmp_path / "main.log"
    # --train-if-missing as `make run` passes it: the shipped adapter must be served without training.
    proc = subprocess.Popen([sys.executable, "-m", "serving", "--port", str(port), "--train-if-missing"], cwd=REPO,
                            env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    tree: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + READY_DEADLINE_S
        while True:
            assert proc.poll() is None, f"the main job exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"not ready in {READY_DEADLINE_S} s:\n{log_path.read_text()[-4000:]}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        model = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {API_KEY}"},
                          timeout=30).json()["data"][0]
        assert model["aligned"] is True and model["id"].startswith("tiny-aligned-")
        log = log_path.read_text()
        assert "no trained run" not in log and "default training" not in log
        tree = psutil.Process(proc.pid).children(recursive=True)
        servers = _bentoml_processes(tree)
        assert len(servers) >= 2, f"expected the bentoml arbiter and a worker: {[p.cmdline() for p in tree]}"
        # The model was resolved once, by the main job, and handed to every server process (which then
        # takes it as it is: resolve_model's rule 1).
        # (setproctitle overwrites the renamed arbiter's /proc environ, so the workers, which load the
        # model, are the ones checked.)
        workers = [p for p in servers if "_bentoml_impl.worker" in " ".join(p.cmdline())]
        assert workers and {p.environ().get("BALANCEDBIO_MODEL") for p in workers} == {str(shipped.export_dir.resolve())}

        proc.send_signal(sig)
        assert proc.wait(timeout=90) == 0, log_path.read_text()[-4000:]
        _, alive = psutil.wait_procs(tree, timeout=10)
        assert not alive, f"still running after the main job exited: {[p.pid for p in alive]}"
        assert not _bentoml_processes(tree) and not _port_open(port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for p in tree:  # only this test's processes, by PID
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
