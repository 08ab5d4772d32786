"""The tiny offline model: a random-weight Qwen2 causal LM with a BPE tokenizer trained on math text.

Built deterministically from a seed, entirely offline, and saved as a normal Hugging Face model directory
(config, safetensors, tokenizer.json, chat template). The `tiny` recipe and every test that needs a model use
it, addressed as the model id `openrs-tiny`. Build one by hand with:

    python -m openrs_cli.tiny OUT_DIR [--seed 0]
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

TINY_ID = "openrs-tiny"
TINY_VERSION = 2  # bump when the architecture, corpus or template changes (the cache key includes it)

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ADDED_TOKENS = ["<think>", "</think>", "<answer>", "</answer>", "\\boxed{"]


def _corpus() -> list[str]:
    """Math text: the bundled training sample's problems and answers plus a few templated lines."""
    from openrs_cli import evalsets

    lines = []
    for row in evalsets.load("train-sample"):
        lines.append(row["problem"])
        lines.append(f"The answer is \\boxed{{{row['answer']}}}.")
    for a in range(40):
        lines.append(f"<think>\n{a} + {a + 3} = {2 * a + 3}\n</think>\n<answer>\\boxed{{{2 * a + 3}}}</answer>")
    return lines


def build_tiny_model(out_dir: str | Path, seed: int = 0, vocab_size: int = 1024) -> Path:
    """Write the tiny model + tokenizer to `out_dir` and return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
    )
    fast.add_tokens(ADDED_TOKENS)
    fast.save_pretrained(out)

    torch.manual_seed(seed)
    cfg = AutoConfig.for_model(
        "qwen2",
        vocab_size=len(fast),
        # head_dim 32 (128 / 4 heads): vLLM's CPU attention supports head sizes of 32 and up, so the same tiny
        # model serves the transformers and the vLLM tests
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        bos_token_id=None,
    )
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.generation_config.eos_token_id = fast.eos_token_id
    model.generation_config.pad_token_id = fast.pad_token_id
    model.save_pretrained(out)
    return out


def cache_root() -> Path:
    return Path(os.environ.get("OPENRS_CACHE", Path.home() / ".cache" / "openrs"))


def tiny_model_dir(seed: int = 0) -> Path:
    """Where the tiny model is cached (it may not be built yet: ensure_tiny_model builds it)."""
    return cache_root() / f"tiny-qwen2-v{TINY_VERSION}-seed{seed}"


def ensure_tiny_model(seed: int = 0) -> Path:
    """The cached tiny model directory, built on first use (atomically: concurrent callers are safe)."""
    target = tiny_model_dir(seed)
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
    try:
        build_tiny_model(tmp, seed=seed)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(build_tiny_model(args.out_dir, seed=args.seed))
