"""Shipped aligned models: a LoRA adapter in the top-level `models/` folder, served without training.

The convention (models/README.md):

    models/NAME/adapter_model.safetensors   PEFT LoRA weights, at most 25 MB
    models/NAME/adapter_config.json         PEFT's adapter config
    models/NAME/model_card.json             base_model (an embedded model name or a folder), how it was made
                                            (command, data seed, commit) and its evaluation table
    models/NAME/README.md                   the card for people

On first use the adapter is merged into its base model once (PEFT's merge_and_unload) and the merged
model exported once (training.export.export_model, parity-checked), both cached under
BALANCEDBIO_CACHE/adapters/<hash>/, where <hash> covers the adapter's weights, config and card: a
changed adapter gets a new folder, an unchanged one is never merged or exported again. The export's
model card says `aligned: true` and carries the adapter's card.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ADAPTER_WEIGHTS, ADAPTER_CONFIG, CARD, README = ("adapter_model.safetensors", "adapter_config.json",
                                                 "model_card.json", "README.md")
MAX_ADAPTER_BYTES = 25 * 1024 * 1024  # a clone stays light; a LoRA of a 135M-0.5B model fits easily
DONE_MARK = "shipped_adapter"  # key in the export's card, written last: a half-made export lacks it


class ShippedModelError(ValueError):
    """A folder under models/ breaks the convention; the message says which file and how to fix it."""


@dataclass(frozen=True)
class ShippedAdapter:
    directory: Path
    card: dict

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def base_model(self) -> str:
        return self.card["base_model"]

    def digest(self) -> str:
        """sha256 over the weights, the adapter config and the card: the cache key."""
        h = hashlib.sha256()
        for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG, CARD):
            h.update(name.encode() + b"\0")
            with open(self.directory / name, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        return h.hexdigest()


def models_dir() -> Path:
    """BALANCEDBIO_MODELS_DIR, else the repository's top-level `models/`."""
    return Path(os.environ.get("BALANCEDBIO_MODELS_DIR") or REPO / "models")


def load_adapter(directory: Path) -> ShippedAdapter:
    """Check one adapter folder against the convention."""
    missing = [n for n in (ADAPTER_WEIGHTS, ADAPTER_CONFIG, CARD) if not (directory / n).is_file()]
    if missing:
        raise ShippedModelError(f"{directory} lacks {', '.join(missing)}; a shipped model is a PEFT adapter "
                                f"(save_pretrained) plus {CARD} (see models/README.md)")
    size = (directory / ADAPTER_WEIGHTS).stat().st_size
    if size > MAX_ADAPTER_BYTES:
        raise ShippedModelError(f"{directory / ADAPTER_WEIGHTS} is {size / 2**20:.1f} MB, over the "
                                f"{MAX_ADAPTER_BYTES // 2**20} MB limit; lower the LoRA rank or target fewer modules")
    try:
        card = json.loads((directory / CARD).read_text())
    except json.JSONDecodeError as e:
        raise ShippedModelError(f"{directory / CARD} is not JSON ({e})") from None
    if not isinstance(card, dict) or not card.get("base_model"):
        raise ShippedModelError(f"{directory / CARD} must name its base_model (an embedded model such as "
                                "'smollm2-135m', or a model folder)")
    return ShippedAdapter(directory, card)


def find_shipped_adapter(root: Path | None = None) -> ShippedAdapter | None:
    """The adapter shipped in `root` (default `models_dir()`), or None when it holds none.

    More than one is an error unless BALANCEDBIO_ADAPTER names one: which model a clinic is served
    must be a decision, not a sort order."""
    root = root or models_dir()
    chosen = os.environ.get("BALANCEDBIO_ADAPTER")
    if chosen:
        path = Path(chosen) if Path(chosen).is_dir() else root / chosen
        return load_adapter(path)
    found = sorted(p.parent for p in root.glob(f"*/{ADAPTER_CONFIG}")) if root.is_dir() else []
    if len(found) > 1:
        raise ShippedModelError(f"{root} ships {len(found)} adapters ({', '.join(p.name for p in found)}); "
                                "set BALANCEDBIO_ADAPTER=NAME to choose one")
    return load_adapter(found[0]) if found else None


def adapter_cache(adapter: ShippedAdapter) -> Path:
    from training.models import cache_dir

    return cache_dir() / "adapters" / adapter.digest()[:16]


def merge_adapter(adapter: ShippedAdapter, out: Path) -> Path:
    """The base model with the adapter merged in, saved as an ordinary model folder (atomically)."""
    from peft import PeftModel

    from training.models import load_model

    model, tokenizer = load_model(adapter.base_model)
    merged = PeftModel.from_pretrained(model, str(adapter.directory)).merge_and_unload()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "SOURCE.txt").write_text(f"{adapter.base_model} with the LoRA adapter {adapter.name} "
                                    f"(sha256 {adapter.digest()}) merged in.\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def ensure_adapter_export(adapter: ShippedAdapter, int8: bool = False) -> Path:
    """Merge and export `adapter` once (cached by its hash); returns the export folder to serve."""
    from filelock import FileLock

    from training.export import CARD_JSON, export_model, write_card

    root = adapter_cache(adapter)
    onnx = root / ("onnx-int8" if int8 else "onnx")
    if _done(onnx):
        return onnx
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):  # the main job and a server may ask at once
        if _done(onnx):
            return onnx
        merged = root / "merged"
        if not (merged / "config.json").is_file():
            print(f"merging the shipped adapter {adapter.name} into {adapter.base_model} (once) ...", flush=True)
            merge_adapter(adapter, merged)
        print(f"exporting the merged model to {onnx} (once, parity check included) ...", flush=True)
        result = export_model(merged, onnx, int8=int8, n_prompts=4, max_new_tokens=16, capability_records=None)
        card = json.loads((onnx / CARD_JSON).read_text())
        card.update(model_version=f"{adapter.name}-{result.serve_variant}", aligned=True,
                    **{DONE_MARK: {"name": adapter.name, "sha256": adapter.digest(),
                                   "source": str(adapter.directory), "card": adapter.card}})
        write_card(onnx, card)
    return onnx


def _done(onnx: Path) -> bool:
    from training.export import is_current

    try:  # absent, cut short by a kill, or in an older export format: made again
        return DONE_MARK in json.loads((onnx / "model_card.json").read_text()) and is_current(onnx)
    except (OSError, json.JSONDecodeError):
        return False
