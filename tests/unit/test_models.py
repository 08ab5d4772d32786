"""One reading of a model's size from its name, shared by the cost estimate, the disk estimate and the report."""

import pytest

from openrs_cli.cost.estimate import params_from_model_id
from openrs_cli.models import size_from_name
from openrs_cli.report.inputs import size_b


@pytest.mark.parametrize(("name", "want"), [
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", 1.5), ("Qwen/Qwen3-1.7B", 1.7), ("runs/qwen-1.5b/final", 1.5),
    ("org-7b/model-1.5B", 1.5), ("HuggingFaceTB/SmolLM2-135M-Instruct", None), ("runs/tiny/final", None),
    ("Qwen2.5-Math-7B-Instruct", 7.0),
])
def test_size_from_name(name, want):
    assert size_from_name(name) == want
    assert params_from_model_id(name) == want  # the cost estimate reads sizes the same way
    if want is not None:
        assert size_b(name) == want  # and so does the report (before its hub table or safetensors)
