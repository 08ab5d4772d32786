"""openrs: reproducible GRPO training, evaluation and cost accounting for small reasoning LLMs (Open-RS)."""

__version__ = "0.3.0"
