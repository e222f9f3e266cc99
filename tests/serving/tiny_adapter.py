"""A tiny aligned model to ship: a 2-layer random Llama (the embedded tokenizer, so the chat template and
eos are the real ones) and a PEFT LoRA adapter on it in the models/ convention. The adapter's B
matrices are random (PEFT's default initialises them to zero, which would make it a no-op), so a test
can tell the merged model from its base."""

from __future__ import annotations

import json
from pathlib import Path

ADAPTER_NAME = "tiny-aligned"


def make_base(out: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from training.models import embedded_model_dir

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir(), local_files_only=True)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def make_adapter(models_dir: Path, base_dir: Path, name: str = ADAPTER_NAME) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model

    from training.models import load_model

    model, _ = load_model(str(base_dir))
    torch.manual_seed(1)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    out = models_dir / name
    peft_model.save_pretrained(out)
    (out / "model_card.json").write_text(json.dumps({
        "name": name, "base_model": str(base_dir), "aligned": True,
        "command": "made by tests/serving/tiny_adapter.py", "data_seed": 0,
        "evaluation": {"note": "a random adapter for tests; no scores"}}, indent=2))
    (out / "README.md").write_text(f"# {name}\n\nA random LoRA adapter made by the tests.\n")
    return out
