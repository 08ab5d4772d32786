"""Failure injection: bad input ends with exit code 2 and one line without a traceback, and nothing the user had is
lost or overwritten. Each case runs the real `openrs` entry point in a subprocess, as a user would."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import run_openrs


@dataclass
class Case:
    id: str
    args: Callable[[Path], list[str]]
    expect: str
    setup: Callable[[Path], None] = lambda d: None
    slow: bool = False
    env: dict = field(default_factory=dict)


def _write(name: str, text: str | bytes) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)

    return setup


def _recipe(body: str) -> Callable[[Path], None]:
    return _write("r.yaml", "base: exp3\n" + body)


VALIDATE = lambda d: ["recipes", "validate", str(d / "r.yaml")]  # noqa: E731

CASES: list[Case] = [
    # recipes
    Case("recipe-unknown-key", VALIDATE, "did you mean 'optim.learning_rate'", _recipe("optim:\n  learnin_rate: 1\n")),
    Case("recipe-wrong-type", VALIDATE, "optim.max_steps", _recipe("optim:\n  max_steps: lots\n")),
    Case("recipe-negative-lr", VALIDATE, "optim.learning_rate", _recipe("optim:\n  learning_rate: -1.0e-6\n")),
    Case("recipe-batch-not-divisible", VALIDATE, "is not divisible by generation.num_generations",
         _recipe("generation:\n  num_generations: 5\n")),
    Case("recipe-weights-mismatch", VALIDATE, "give one weight per function", _recipe("rewards:\n  weights: [1.0]\n")),
    Case("recipe-missing-file", lambda d: ["recipes", "validate", str(d / "nope.yaml")], "does not exist"),
    Case("recipe-yaml-syntax", VALIDATE, "YAML syntax error", _write("r.yaml", "optim: [1, 2\n")),
    Case("recipe-empty-file", VALIDATE, "the recipe is empty", _write("r.yaml", "")),
    Case("recipe-unknown-name", lambda d: ["recipes", "show", "exp4"], "did you mean 'exp3'"),
    # overrides
    Case("override-no-equals", lambda d: ["recipes", "show", "exp3", "optim.learning_rate"], "has no '='"),
    Case("override-unknown-path", lambda d: ["recipes", "show", "exp3", "optim.learningrate=1"],
         "did you mean 'optim.learning_rate'"),
    Case("recipes-cp-existing", lambda d: ["recipes", "cp", "exp3", str(d / "mine.yaml")], "already exists",
         _write("mine.yaml", "# my recipe\n")),
]


def _snapshot(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else [])
                                  for c in CASES])
def test_failure(case: Case, tmp_path: Path) -> None:
    case.setup(tmp_path)
    before = _snapshot(tmp_path)
    r = run_openrs(*case.args(tmp_path), cwd=tmp_path, env=case.env)
    assert r.returncode == 2, (r.returncode, r.stdout[-800:], r.stderr[-800:])
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith(("WARNING", "[20"))]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and case.expect in lines[0], lines[0]
    after = _snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before, "a user file was changed"
