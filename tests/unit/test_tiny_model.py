"""The tiny offline model loads with Auto classes, applies its chat template and generates; builds are deterministic."""

import hashlib

from openrs_cli.models import resolve_model
from openrs_cli.tiny import TINY_ID, build_tiny_model


def test_loads_chats_and_generates(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "qwen2"
    text = tok.apply_chat_template(
        [{"role": "system", "content": "sys"}, {"role": "user", "content": "What is 2+3?"}],
        tokenize=False, add_generation_prompt=True,
    )
    assert text.startswith("<|im_start|>system\nsys<|im_end|>") and text.endswith("<|im_start|>assistant\n")
    enc = tok([text], return_tensors="pt")
    torch.manual_seed(0)
    out = model.generate(**enc, max_new_tokens=8, do_sample=True)
    assert out.shape[1] > enc["input_ids"].shape[1]
    assert tok.padding_side == "left" and tok.pad_token == "<|endoftext|>" and tok.eos_token == "<|im_end|>"
    assert tok.tokenize("\\boxed{")[0] == "\\boxed{"


def test_resolve_model():
    assert resolve_model("some/hub-id") == "some/hub-id"
    assert resolve_model(TINY_ID).endswith("seed0")


def test_deterministic(tmp_path):
    a = build_tiny_model(tmp_path / "a", seed=3)
    b = build_tiny_model(tmp_path / "b", seed=3)
    for f in ("model.safetensors", "tokenizer.json"):
        assert hashlib.sha256((a / f).read_bytes()).digest() == hashlib.sha256((b / f).read_bytes()).digest()
