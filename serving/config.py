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
    threads: int = 0  # 0: all cores

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
            threads=_int("BALANCEDBIO_ORT_THREADS", 0, low=0),
        )


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

    from training.export import export_model

    target = base_export_dir()
    if (target / "model_card.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):  # the tests and a server may ask at once
        if not (target / "model_card.json").is_file():
            export_model("smollm2-135m", target, int8=False, n_prompts=4, max_new_tokens=16, capability_records=None)
    return target
