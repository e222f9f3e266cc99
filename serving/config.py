"""Service settings from the environment, and where the served model comes from (`resolve_model`).

Every knob is an environment variable so that `bentoml serve`, a container and the main job
(`python -m serving`) configure the service the same way. Bad values fail at start-up with a
message naming the variable, never later inside a request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _int(name: str, default: int, low: int = 1) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < low:
        raise SettingsError(f"{name}={value} must be at least {low}")
    return value


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    db_url: str
    model_dir: Path | None  # None: resolve one (see `resolve_model`)
    api_keys: tuple[str, ...] = field(repr=False, default=())  # raw or "sha256:<hex>" entries
    max_body_bytes: int = 1_000_000
    max_tokens_limit: int = 512
    default_max_tokens: int = 256
    rate_limit_per_minute: int = 120
    store_raw: bool = False  # keep question, patient and answer text in the audit trail
    max_batch: int = 8
    # continuous: a request joins the rows already decoding at the next step; static: it waits until
    # the running batch has drained (docs/serving.md, "Continuous batching").
    batching: str = "continuous"
    threads: int = 0  # 0: all cores
    ort_arena: bool = False  # ONNX Runtime's CPU memory arena (off: the worker returns what a batch used)
    # -- security settings (docs/security.md) --
    # CDS Hooks without configured JWT issuers refuses every call unless this development switch is on.
    cds_allow_unsigned: bool = False
    # FHIR servers the service may fetch from (the UI's "FHIR server" tab, CDS Hooks' fhirServer):
    # exact origin plus base path, e.g. "https://fhir.example.org/r4".
    fhir_servers: tuple[str, ...] = ()
    # /metrics: "open" (everyone), "key" (an API key or a metrics key), "reduced" (only balancedbio_* series).
    metrics_access: str = "open"
    metrics_keys: tuple[str, ...] = field(repr=False, default=())
    # key ids (the 12-hex prefix of a key's SHA-256, as logged and audited) whose /v1/chat/completions
    # skip the guardrails: an operator's choice for a trusted batch client, never a caller's.
    chat_unchecked_key_ids: tuple[str, ...] = ()
    # The service's own base URL, used by the mounted UI (never the request's Host header).
    api_url: str | None = None
    max_feedback_items: int = 20  # CDS Hooks feedback items per request

    @classmethod
    def from_env(cls) -> "Settings":
        data_dir = Path(os.environ.get("BALANCEDBIO_DATA_DIR") or "data").resolve()
        db_url = os.environ.get("BALANCEDBIO_DB_URL") or f"sqlite:///{data_dir / 'balancedbio.db'}"
        model = os.environ.get("BALANCEDBIO_MODEL")
        max_tokens = _int("BALANCEDBIO_MAX_TOKENS", 512)
        return cls(
            data_dir=data_dir,
            db_url=db_url,
            model_dir=Path(model) if model else None,
            api_keys=tuple(load_keys()),
            max_body_bytes=_int("BALANCEDBIO_MAX_BODY_BYTES", 1_000_000, low=1024),
            max_tokens_limit=max_tokens,
            default_max_tokens=min(_int("BALANCEDBIO_DEFAULT_MAX_TOKENS", 256), max_tokens),
            rate_limit_per_minute=_int("BALANCEDBIO_RATE_LIMIT", 120),
            store_raw=_flag("BALANCEDBIO_STORE_RAW"),
            max_batch=_int("BALANCEDBIO_MAX_BATCH", 8),
            batching=_choice("BALANCEDBIO_BATCHING", ("continuous", "static"), "continuous"),
            threads=_int("BALANCEDBIO_ORT_THREADS", 0, low=0),
            ort_arena=_flag("BALANCEDBIO_ORT_ARENA"),
            cds_allow_unsigned=_flag("BALANCEDBIO_CDS_ALLOW_UNSIGNED"),
            fhir_servers=fhir_servers(),
            metrics_access=_choice("BALANCEDBIO_METRICS_ACCESS", ("open", "key", "reduced"), "open"),
            metrics_keys=tuple(_list("BALANCEDBIO_METRICS_KEYS")),
            chat_unchecked_key_ids=tuple(k.lower() for k in _list("BALANCEDBIO_CHAT_UNCHECKED_KEY_IDS")),
            api_url=(os.environ.get("BALANCEDBIO_API_URL") or "").strip().rstrip("/") or None,
            max_feedback_items=_int("BALANCEDBIO_CDS_MAX_FEEDBACK_ITEMS", 20),
        )


def _list(name: str) -> list[str]:
    return [v.strip() for v in os.environ.get(name, "").split(",") if v.strip()]


def _choice(name: str, allowed: tuple[str, ...], default: str) -> str:
    value = os.environ.get(name, "").strip().lower() or default
    if value not in allowed:
        raise SettingsError(f"{name}={value!r} must be one of {', '.join(allowed)}")
    return value


def fhir_servers() -> list[str]:
    """BALANCEDBIO_FHIR_SERVERS: comma-separated FHIR base URLs (scheme, host, port and base path).
    A URL is allowed only when its origin matches one exactly and its path is that base path or
    below it (see `fhir_server_allowed`)."""
    from urllib.parse import urlsplit

    out = []
    for url in _list("BALANCEDBIO_FHIR_SERVERS"):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
                or parts.username or parts.password:
            raise SettingsError(f"BALANCEDBIO_FHIR_SERVERS entry {url!r} must be http(s)://host[:port]/base-path, "
                                "with no query, fragment or credentials")
        out.append(url.rstrip("/"))
    return out


def fhir_server_allowed(url: str, allowed: list[str] | tuple[str, ...]) -> bool:
    """True when `url` is one of the allowed FHIR bases (or a path below one): same scheme, host and
    port exactly, path equal to the base path or under it, no dot segments, credentials or query."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit((url or "").strip())
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or parts.username or parts.password or parts.query or parts.fragment:
        return False
    segments = parts.path.split("/")
    if any(s in (".", "..") or "%2e" in s.lower() or "%2f" in s.lower() for s in segments):
        return False
    path = parts.path.rstrip("/")
    for base in allowed:
        b = urlsplit(base)
        same_origin = (b.scheme, (b.hostname or "").lower(), b.port) == (parts.scheme, (parts.hostname or "").lower(), port)
        base_path = b.path.rstrip("/")
        if same_origin and (path == base_path or path.startswith(base_path + "/")):
            return True
    return False


def load_keys() -> list[str]:
    """API keys from BALANCEDBIO_API_KEYS (comma-separated) and BALANCEDBIO_API_KEYS_FILE (one a line,
    '#' comments; a line may be 'sha256:<hex>' so the file need not hold the key itself)."""
    keys = [k.strip() for k in os.environ.get("BALANCEDBIO_API_KEYS", "").split(",") if k.strip()]
    path = os.environ.get("BALANCEDBIO_API_KEYS_FILE")
    if path:
        file = Path(path)
        if not file.is_file():
            raise SettingsError(f"BALANCEDBIO_API_KEYS_FILE={path} does not exist")
        keys += [line.strip() for line in file.read_text().splitlines()
                 if line.strip() and not line.lstrip().startswith("#")]
    return keys


@dataclass(frozen=True)
class ServedModel:
    """The model to serve, resolved once (by `resolve_model`) and handed to the server."""

    directory: Path  # an export folder (model_card.json + the served variant)
    why: str  # which rule chose it, for the log and the main job's banner


def resolve_model(settings: Settings | None = None, runs_dir: Path = Path("runs"), models: Path | None = None,
                  int8: bool = False, train: Callable[[], None] | None = None) -> ServedModel:
    """The one rule that picks the served model; first match wins:

      1. BALANCEDBIO_MODEL (`settings.model_dir`): an export folder, served as it is;
      2. the aligned adapter shipped in models/ (serving.shipped): merged and exported once, cached;
      3. the newest trained run `runs/NAME/final/`: its export `runs/NAME/onnx/`, made again only when
         the weights are newer;
      4. `train` (the main job's --train-if-missing runs the default training), then 3;
      5. the embedded base model, exported once into the cache, flagged `aligned: false`.

    The main job calls this and passes the result to `bentoml serve` as BALANCEDBIO_MODEL, so the
    server takes rule 1 and never chooses again; a bare `bentoml serve` reaches the same answer."""
    from serving.shipped import ensure_adapter_export, find_shipped_adapter

    settings = settings or Settings.from_env()
    if settings.model_dir is not None:
        if not settings.model_dir.exists():
            raise SettingsError(f"BALANCEDBIO_MODEL={settings.model_dir} does not exist; export a model with "
                                "`python -m training.export --run RUN_OR_MODEL --out DIR`")
        return ServedModel(settings.model_dir, "BALANCEDBIO_MODEL")
    adapter = find_shipped_adapter(models)
    if adapter is not None:
        return ServedModel(ensure_adapter_export(adapter, int8=int8), f"the aligned adapter shipped in {adapter.directory}")
    from training.export import newest_run

    run = newest_run(runs_dir)
    if run is None and train is not None:
        train()
        run = newest_run(runs_dir)
    if run is not None:
        return ServedModel(run_export(run, int8), f"the newest trained run {run}")
    return ServedModel(ensure_base_export(), "no aligned model (none shipped in models/, no run): the base model, "
                                             "not aligned")


def run_export(run: Path, int8: bool = False) -> Path:
    """A training run's export `run/onnx/`: reused when newer than its weights, else made now."""
    from training.export import export_model

    out = run / "onnx"
    card = out / "model_card.json"
    if card.is_file() and card.stat().st_mtime >= (run / "final" / "config.json").stat().st_mtime:
        return out
    print(f"exporting {run} to {out} (parity check included) ...", flush=True)
    export_model(run, out, int8=int8)
    return out


def find_model(settings: Settings, runs_dir: Path = Path("runs")) -> tuple[Path, str]:
    """(export folder, why) for the server: `resolve_model`, the same rule as the main job's."""
    served = resolve_model(settings, runs_dir)
    return served.directory, served.why


def base_export_dir() -> Path:
    """Where the embedded base model's export is cached (made on first use)."""
    from training.models import cache_dir

    return cache_dir() / "onnx" / "smollm2-135m"


def ensure_base_export() -> Path:
    """Export the embedded base model once into the cache (fp32, parity-checked) and return its folder."""
    from filelock import FileLock

    from training.export import export_model, is_current

    target = base_export_dir()
    if is_current(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):  # the tests and a server may ask at once
        if not is_current(target):  # absent, or made by an older format: made (again) once
            export_model("smollm2-135m", target, int8=False, n_prompts=4, max_new_tokens=16, capability_records=None)
    return target
