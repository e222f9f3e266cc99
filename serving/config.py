"""Service settings from the environment, and where the served model comes from.

Every knob is an environment variable so that `bentoml serve`, a container and the main job
(`python -m serving`) configure the service the same way. Bad values fail at start-up with a
message naming the variable, never later inside a request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


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
    model_dir: Path | None  # None: find one (see `find_model`)
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


def newest_export(runs_dir: Path = Path("runs")) -> Path | None:
    """The newest exported training run: `runs/*/<export>/model_card.json` (training.run exports there)."""
    cards = [c for c in runs_dir.glob("*/*/model_card.json")]
    return max(cards, key=lambda c: c.stat().st_mtime).parent if cards else None


def base_export_dir() -> Path:
    """Where the embedded base model's export is cached (made on first use)."""
    from training.models import cache_dir

    return cache_dir() / "onnx" / "smollm2-135m"


def find_model(settings: Settings, runs_dir: Path = Path("runs")) -> tuple[Path | None, str]:
    """(export folder or None, why). None means: export the base model into `base_export_dir()`."""
    if settings.model_dir is not None:
        if not settings.model_dir.exists():
            raise SettingsError(f"BALANCEDBIO_MODEL={settings.model_dir} does not exist; export a model with "
                                "`python -m training.export --run RUN_OR_MODEL --out DIR`")
        return settings.model_dir, "BALANCEDBIO_MODEL"
    run = newest_export(runs_dir)
    if run is not None:
        return run, "newest exported run"
    base = base_export_dir()
    if (base / "model_card.json").is_file():
        return base, "exported base model (not aligned)"
    return None, "no export found: exporting the base model"


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
