"""``StrategyHost``: the narrow view a strategy has of the evolving LLM.

A strategy reads the pool (members, base-model groups), the configuration, performance
histories and gathered tuples, and scores text through the sandbox's ``Scorer``; it changes
members and adapters in place but never replaces these containers. ``SelfEvolvingLLM``
provides all of it. Naming it here keeps the strategies free of ``evolving_llm`` (which builds
its strategy, so importing it back would be a cycle) and says exactly what they depend on.
"""

from __future__ import annotations

from typing import Mapping, Protocol, Sequence

from sandbox_rl.core.config import SelfEvolvingConfig
from sandbox_rl.core.experience import Experience, Scorer
from sandbox_rl.core.pool import Member, ModelGroup
from sandbox_rl.enums import TaskType


class StrategyHost(Protocol):
    """What strategies use of ``SelfEvolvingLLM`` (all read-only: properties here)."""

    @property
    def config(self) -> SelfEvolvingConfig:
        """The sandbox's configuration."""

    @property
    def members(self) -> Mapping[TaskType, Sequence[Member]]:
        """Each task's members, the pool's routable (adapter, decoding) pairs."""

    @property
    def groups(self) -> Mapping[str, ModelGroup]:
        """The loaded base models by name, with their adapters and KV-cache settings."""

    @property
    def group_of(self) -> Mapping[TaskType, ModelGroup]:
        """The base model each task runs on."""

    @property
    def scorer(self) -> Scorer | None:
        """Scores text actions against the simulation (set whenever a sandbox built the LLM,
        which the strategies that score rely on)."""

    @property
    def performance(self) -> Mapping[TaskType, Sequence[float]]:
        """Each task's rewards, one per env step, oldest first."""

    @property
    def evolution_step(self) -> int:
        """How many evolution steps have run (counting the one running now)."""

    def recent_experiences(self, task: TaskType, adapter: str | None = None,
                           limit: int | None = None) -> list[Experience]:
        """The task's gathered tuples (only ``adapter``'s, if given), the ``limit`` most
        recent, oldest first."""
