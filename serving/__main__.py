"""The main job's serving half: pick the model, export it if needed, serve it, print the URLs.

    python -m serving [--port 3000] [--host 127.0.0.1] [--int8] [--train-if-missing] [--smoke]

The model is resolved once, here, by serving.config.resolve_model (first match wins:
BALANCEDBIO_MODEL; the aligned adapter shipped in models/; the newest trained run; with
--train-if-missing, the default training; the embedded base model), and passed to `bentoml serve`
as BALANCEDBIO_MODEL, which the server takes as it is.

SIGTERM and SIGINT (what systemd, `docker stop` and Ctrl-C send) are forwarded to `bentoml serve`
and every worker under it; the job waits until all of them have exited, then exits 0.

Without BALANCEDBIO_API_KEYS/_FILE a key is generated, its SHA-256 appended to DATA_DIR/api_keys
and the key printed once. --smoke starts the server, checks it answers, prints the URLs and stops.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from serving.auth import digest
from serving.config import ServedModel, Settings, resolve_model

REPO = Path(__file__).resolve().parents[1]


class Stop(Exception):
    """SIGTERM or SIGINT reached the main job: stop the server with the same signal, then exit."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stop(signum: int, _frame) -> None:
    raise Stop(signum)


def default_training() -> None:
    print("no aligned model shipped and no trained run under runs/: running the default training "
          "(python -m training.run) ...", flush=True)
    subprocess.run([sys.executable, "-m", "training.run"], cwd=REPO, check=True)


def choose_model(int8: bool, train_if_missing: bool, runs_dir: Path = Path("runs")) -> ServedModel:
    served = resolve_model(Settings.from_env(), runs_dir, int8=int8,
                           train=default_training if train_if_missing else None)
    print(f"model: {served.directory} ({served.why})", flush=True)
    return served


def ensure_key(data_dir: Path) -> str | None:
    """A fresh key when none is configured: its digest goes to DATA_DIR/api_keys, the key to stdout only."""
    if os.environ.get("BALANCEDBIO_API_KEYS") or os.environ.get("BALANCEDBIO_API_KEYS_FILE"):
        return None
    data_dir.mkdir(parents=True, exist_ok=True)
    keys_file = data_dir / "api_keys"
    key = "bb-" + secrets.token_urlsafe(24)
    with open(keys_file, "a") as f:
        f.write(f"sha256:{digest(key)}\n")
    keys_file.chmod(0o600)
    os.environ["BALANCEDBIO_API_KEYS_FILE"] = str(keys_file)
    return key


def wait_ready(url: str, proc: subprocess.Popen, deadline_s: float = 600) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}; see its log above")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"the server was not ready within {deadline_s:.0f} s")


def stop_server(proc: subprocess.Popen, sig: int = signal.SIGTERM, wait_s: float = 30) -> None:
    """Stop a `bentoml serve` started with start_new_session=True: its arbiter's process group and
    every worker under it, escalating to SIGKILL after `wait_s`.

    BentoML starts each worker in a session of its own, so the group alone misses them: after a
    SIGKILL of the arbiter a worker would live on as an orphan, still answering on the socket."""
    import psutil  # a dependency of BentoML

    if proc.poll() is not None:
        return
    try:
        workers = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        workers = []
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    for worker in workers:
        try:
            worker.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    _, alive = psutil.wait_procs(workers, timeout=wait_s)
    for worker in alive:
        worker.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--int8", action="store_true",
                        help="export int8 too (served only once `python -m training.quantization` accepts it)")
    parser.add_argument("--train-if-missing", action="store_true", help="run the default training when no run exists")
    parser.add_argument("--smoke", action="store_true", help="start, check, print the URLs, stop")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    # From here on a stop request unwinds through `finally`, so no child outlives the job.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _raise_stop)
    try:
        return _serve(args)
    except Stop as stop:
        print(f"{stop}: stopped", flush=True)
        return 0


def _serve(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    model = choose_model(args.int8, args.train_if_missing).directory
    os.environ["BALANCEDBIO_MODEL"] = str(model.resolve())  # the server takes it as it is: chosen once
    key = ensure_key(settings.data_dir)
    url = f"http://{args.host}:{args.port}"
    proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "--host", args.host, "--port", str(args.port)],
                            cwd=REPO, start_new_session=True)
    stop_signal = signal.SIGTERM
    try:
        wait_ready(url, proc)
        headers = {"Authorization": f"Bearer {key}"} if key else None
        if key:
            model_info = httpx.get(url + "/v1/models", headers=headers, timeout=30).json()["data"][0]
            print(f"model: {model_info['id']} (aligned: {model_info['aligned']})")
        print(f"\nBalancedBio is serving {model}\n"
              f"  API (OpenAI-compatible): {url}/v1   docs: {url}/docs\n"
              f"  consult: {url}/consult   feedback: {url}/feedback   CDS Hooks: {url}/cds-services\n"
              f"  UI: {url}/ui/   metrics: {url}/metrics   probes: {url}/livez {url}/readyz")
        if key:
            print(f"  API key (shown once; its hash is in {settings.data_dir / 'api_keys'}): {key}")
        sys.stdout.flush()
        if args.smoke:
            return 0
        return proc.wait()
    except Stop as stop:
        stop_signal = stop.signum
        raise
    finally:
        # Signals that arrive while we stop the server must not cut the wait short.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        print(f"stopping bentoml serve (pid {proc.pid}) and its workers ...", flush=True)
        stop_server(proc, stop_signal)


if __name__ == "__main__":
    sys.exit(main())
