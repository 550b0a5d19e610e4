"""The evolution events strategies report: one small dataclass per kind.

Outside the strategies an event is a plain dict (the monitor's JSON logs, ``summary.json``, a
state's ``sandbox.json``, ``simulate_step()["events"]``, all indexed by ``e["type"]``).
``to_json`` writes the keys the strategies' dicts always had, in the same order, ``type``
first; ``SelfEvolvingLLM.observe_step`` converts each event where it leaves the strategy and
adds ``env_step`` and ``evolution_step`` after them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


def _renamed(key: str) -> Any:
    """A field written under ``key`` (a Python keyword such as ``from``)."""
    return field(metadata={"key": key})


@dataclass
class Event:
    """Base of the events; ``type`` names the kind."""

    type: ClassVar[str]

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type,
                **{f.metadata.get("key", f.name): getattr(self, f.name) for f in fields(self)}}


@dataclass
class ExpertIteration(Event):
    """An expert-iteration step of one adapter (:meth:`Strategy.expert_step`)."""

    type: ClassVar[str] = "expert_iteration"
    task: str
    adapter: str
    examples: int  # proposals that beat the answer given, trained on
    from_heuristic: int  # of which the heuristic's answer
    loss: float
    mean_gain: float
    mean_reward: float


@dataclass
class OnlineUpdate(ExpertIteration):
    """The online expert-iteration step after a task gathered its batch of tuples."""

    type: ClassVar[str] = "online_update"

    @classmethod
    def of(cls, step: ExpertIteration) -> "OnlineUpdate":
        return cls(**{f.name: getattr(step, f.name) for f in fields(step)})


@dataclass
class PPOUpdate(Event):
    """A TRL PPO update; ``stats`` (PPOStats' fields, rounded) follow the other keys."""

    type: ClassVar[str] = "ppo_update"
    task: str
    adapter: str
    prompts: int
    stats: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "task": self.task, "adapter": self.adapter,
                "prompts": self.prompts, **self.stats}


@dataclass
class Replace(Event):
    """multi_model replaced its worst member by a perturbed copy of the best."""

    type: ClassVar[str] = "replace"
    task: str
    replaced: str | None
    copied_from: str | None
    replaced_mean: float
    best_mean: float
    temperature: float  # the replaced member's new decoding temperature


@dataclass
class Reptile(Event):
    """meta_learning moved a base model's meta-initialisation."""

    type: ClassVar[str] = "reptile"
    model: str
    tasks: list[str]
    meta_norm: float


@dataclass
class RestartFromMeta(Event):
    """meta_learning restarted a task's worst member from the meta-initialisation."""

    type: ClassVar[str] = "restart_from_meta"
    task: str
    adapter: str | None


@dataclass
class LoraRank(Event):
    """adaptive_compression changed a task's LoRA rank."""

    type: ClassVar[str] = "lora_rank"
    task: str
    from_: int = _renamed("from")
    to: int
    mean_reward: float
    threshold: float


@dataclass
class KVBits(Event):
    """adaptive_compression changed a base model's KV-cache bits."""

    type: ClassVar[str] = "kv_bits"
    model: str
    from_: int = _renamed("from")
    to: int
