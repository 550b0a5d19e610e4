"""``multi_model``: upper-confidence-bound routing over each task's pool, population-based
replacement of the worst member by a perturbed copy of the best."""

from __future__ import annotations

import math
from typing import Sequence

import torch

from sandbox_rl.core.pool import Member, member_generator, perturb
from sandbox_rl.core.strategies.base import Strategy
from sandbox_rl.core.strategies.events import Event, Replace
from sandbox_rl.core.strategies.host import StrategyHost
from sandbox_rl.enums import EvolutionStrategy

UCB_C = 0.25  # exploration weight; rewards lie in [0, 1] and differ by a few hundredths
MIN_PULLS = 2  # a member is judged only after this many steps
PERTURB_SCALE = 0.02
TEMPERATURE_FACTORS = (0.8, 1.25)


def ucb_choice(members: Sequence[Member]) -> Member:
    """UCB1 on the recent mean reward; a member never tried goes first."""
    untried = [m for m in members if m.pulls == 0]
    if untried:
        return untried[0]
    total = sum(m.pulls for m in members)
    return max(members, key=lambda m: (m.mean + UCB_C * math.sqrt(2 * math.log(total) / m.pulls),
                                       -m.index))


class MultiModel(Strategy):
    kind = EvolutionStrategy.MULTI_MODEL

    def __init__(self, llm: StrategyHost) -> None:
        super().__init__(llm)
        self.replacements = 0

    def route(self, members: Sequence[Member]) -> Member:
        return ucb_choice(members)

    def evolve(self) -> list[Event]:
        events: list[Event] = []
        for task, members in self.llm.members.items():
            judged = [m for m in members if m.pulls >= MIN_PULLS]
            if len(members) < 2 or len(judged) < len(members):
                continue
            best = max(members, key=lambda m: (m.mean, -m.index))
            worst = min(members, key=lambda m: (m.mean, -m.index))
            if best is worst or best.mean <= worst.mean:
                continue
            events.append(self._replace(worst, best))
        return events

    def _replace(self, worst: Member, best: Member) -> Replace:
        group = self.llm.group_of[worst.task]
        replaced_mean, best_mean = round(worst.mean, 4), round(best.mean, 4)  # before the reset
        worst.generation += 1
        generator = member_generator(self.config.seed, worst, salt=1)
        factor = TEMPERATURE_FACTORS[int(torch.randint(2, (1,), generator=generator))]
        worst.temperature = min(max(best.temperature * factor, 0.1), 3.0)
        if group.adapters is not None:
            if group.adapters.settings(worst.adapter) != group.adapters.settings(best.adapter):
                group.adapters.resize(worst.adapter, group.adapters.settings(best.adapter).rank)
            group.adapters.load_state(worst.adapter, group.adapters.state(best.adapter))
            perturb(group.adapters, worst.adapter, PERTURB_SCALE, generator)
            self.adapter_changed(group, worst.adapter)
        worst.reset_stats()
        self.replacements += 1
        return Replace(worst.task.value, worst.adapter, best.adapter, replaced_mean, best_mean,
                       round(worst.temperature, 4))

    def stats(self) -> dict:
        return {**super().stats(), "replacements": self.replacements}

    def state_dict(self):
        meta, tensors = super().state_dict()
        return {**meta, "replacements": self.replacements}, tensors

    def load_state_dict(self, meta, tensors) -> None:
        super().load_state_dict(meta, tensors)
        self.replacements = int(meta["replacements"])
