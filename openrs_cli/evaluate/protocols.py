"""Named evaluation protocols (protocols.yaml): the sampling settings and samples per task of a published
evaluation, so that `openrs eval --protocol sober` runs what that study ran. Explicit flags override a protocol's
values and are recorded beside it in results.json."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from openrs_cli.errors import TaskError

FILE = Path(__file__).with_name("protocols.yaml")
DEFAULT = "paper"
SETTINGS = ("temperature", "top_p", "max_new_tokens")


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    source: str
    temperature: float
    top_p: float
    max_new_tokens: int
    samples: dict[str, int]  # per task, "default" for the rest

    def samples_for(self, task: str) -> int:
        return int(self.samples.get(task, self.samples.get("default", 1)))

    def to_json(self) -> dict:
        return {"name": self.name, "description": self.description, "source": self.source,
                "temperature": self.temperature, "top_p": self.top_p, "max_new_tokens": self.max_new_tokens,
                "samples": dict(self.samples)}


@functools.lru_cache(maxsize=1)
def protocols() -> dict[str, Protocol]:
    import yaml

    raw = yaml.safe_load(FILE.read_text(encoding="utf-8"))
    return {name: Protocol(name=name, description=v["description"], source=v["source"],
                           temperature=float(v["temperature"]), top_p=float(v["top_p"]),
                           max_new_tokens=int(v["max_new_tokens"]), samples={k: int(n) for k, n in v["samples"].items()})
            for name, v in raw.items()}


def get_protocol(name: str) -> Protocol:
    known = protocols()
    if name not in known:
        raise TaskError(f"unknown protocol '{name}'; valid: {', '.join(known)} (see `openrs eval protocols`)")
    return known[name]


@dataclass(frozen=True)
class Resolved:
    protocol: str
    temperature: float
    top_p: float
    max_new_tokens: int
    samples: int  # for a task the protocol does not name
    samples_per_task: dict[str, int]
    overrides: dict  # the flags given explicitly, with their values

    def record(self) -> dict:
        """results.json's `protocol` entry."""
        return {"name": self.protocol, "source": get_protocol(self.protocol).source, "overrides": dict(self.overrides)}


def resolve(name: str | None, tasks: list[str], *, temperature=None, top_p=None, max_new_tokens=None,
            samples=None) -> Resolved:
    """The settings of protocol `name` (default: the paper's) for `tasks`, with every explicit (non-None) flag
    overriding the protocol's value; `samples` given explicitly applies to every task."""
    p = get_protocol(name or DEFAULT)
    given = {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens, "samples": samples}
    overrides = {k: v for k, v in given.items() if v is not None}
    per_task = {t: int(samples) if samples is not None else p.samples_for(t) for t in tasks}
    return Resolved(
        protocol=p.name,
        temperature=float(temperature if temperature is not None else p.temperature),
        top_p=float(top_p if top_p is not None else p.top_p),
        max_new_tokens=int(max_new_tokens if max_new_tokens is not None else p.max_new_tokens),
        samples=int(samples) if samples is not None else p.samples_for("default"),
        samples_per_task=per_task,
        overrides=overrides,
    )
