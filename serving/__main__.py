"""The main job's serving half: pick the model, export it if needed, serve it, print the URLs.

    python -m serving [--port 3000] [--host 127.0.0.1] [--int8] [--train-if-missing] [--smoke]

Model choice, first match wins:
  1. BALANCEDBIO_MODEL (an export folder);
  2. the newest trained run `runs/NAME/final/`: its export `runs/NAME/onnx/` is reused when newer
     than the weights, else made now (training.run makes it as its last stage);
  3. with --train-if-missing and no run: `python -m training.run` (the default training), then 2;
  4. the embedded base model, exported once into the cache and flagged `aligned: false`.

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
from serving.config import Settings, ensure_base_export

REPO = Path(__file__).resolve().parents[1]


def _export_of(run: Path, int8: bool) -> Path:
    from training.export import export_model

    out = run / "onnx"
    card = out / "model_card.json"
    weights = run / "final" / "config.json"
    if card.is_file() and card.stat().st_mtime >= weights.stat().st_mtime:
        print(f"reusing the export of {run}: {out}")
        return out
    print(f"exporting {run} to {out} (parity check included) ...")
    export_model(run, out, int8=int8)
    return out


def choose_model(int8: bool, train_if_missing: bool, runs_dir: Path = Path("runs")) -> Path:
    from training.export import newest_run

    if os.environ.get("BALANCEDBIO_MODEL"):
        return Path(os.environ["BALANCEDBIO_MODEL"])
    run = newest_run(runs_dir)
    if run is None and train_if_missing:
        print("no trained run under runs/: running the default training (python -m training.run) ...")
        subprocess.run([sys.executable, "-m", "training.run"], cwd=REPO, check=True)
        run = newest_run(runs_dir)
    if run is not None:
        return _export_of(run, int8)
    print("no trained run under runs/: serving the embedded base model, flagged aligned=false")
    return ensure_base_export()


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
    parser.add_argument("--int8", action="store_true", help="export int8 too (served only within tolerance)")
    parser.add_argument("--train-if-missing", action="store_true", help="run the default training when no run exists")
    parser.add_argument("--smoke", action="store_true", help="start, check, print the URLs, stop")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    settings = Settings.from_env()
    model = choose_model(args.int8, args.train_if_missing)
    os.environ["BALANCEDBIO_MODEL"] = str(model.resolve())
    key = ensure_key(settings.data_dir)
    url = f"http://{args.host}:{args.port}"
    proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "--host", args.host, "--port", str(args.port)],
                            cwd=REPO, start_new_session=True)
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
    except KeyboardInterrupt:
        return 0
    finally:
        stop_server(proc)


if __name__ == "__main__":
    sys.exit(main())
