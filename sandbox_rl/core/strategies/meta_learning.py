"""``meta_learning``: a Reptile meta-initialisation of the task adapters.

The meta-initialisation (one set of LoRA weights per base model) starts as PEFT's fresh adapter.
Every evolution step, for each task on that base, a scratch adapter starts from it with a fresh
optimiser and takes ``INNER_STEPS`` TRL PPO updates on the task's recent prompts (the
gradient_based update: rollouts scored by counterfactual env steps); the meta-initialisation
then moves toward the mean of the adapted weights (Reptile, :func:`reptile_step`:
``meta += META_STEP * mean_t(adapted_t - meta)``). The worst member of each task is restarted
from it, so new adapters begin where adaptation to any of the tasks is quick.
"""

from __future__ import annotations

import torch

from sandbox_rl.core.pool import ModelGroup, slug
from sandbox_rl.core.strategies.base import Strategy
from sandbox_rl.core.strategies.events import Event, Reptile, RestartFromMeta
from sandbox_rl.core.strategies.host import StrategyHost
from sandbox_rl.enums import EvolutionStrategy

SCRATCH = "meta__scratch"
INNER_STEPS = 1
META_STEP = 0.5
MIN_PROMPTS = 2
INNER_PROMPTS = 16  # most recent prompts of a task an inner update trains on


def reptile_step(meta: dict[str, torch.Tensor], adapted: list[dict[str, torch.Tensor]],
                 step: float = META_STEP) -> dict[str, torch.Tensor]:
    """Reptile's outer update: ``meta + step * mean(adapted - meta)``, key by key."""
    with torch.no_grad():
        return {key: value + step * torch.stack([w[key] - value for w in adapted]).mean(0)
                for key, value in meta.items()}


class MetaLearning(Strategy):
    kind = EvolutionStrategy.META_LEARNING
    needs_snapshots = True  # type: ignore[assignment]  (PPO scores completions on them)

    def __init__(self, llm: StrategyHost) -> None:
        super().__init__(llm)
        self.meta: dict[str, dict[str, torch.Tensor]] = {}  # group -> weights without adapter name
        self.meta_updates = 0
        for group in llm.groups.values():
            if group.adapters is not None:
                reference = llm.members[group.tasks[0]][0].adapter
                self.meta[group.name] = group.adapters.state(reference)

    def evolve(self) -> list[Event]:
        events: list[Event] = []
        for name, meta in self.meta.items():
            group = self.llm.groups[name]
            adapted = {}
            for task in group.tasks:
                found = [e for e in self.llm.recent_experiences(task, limit=INNER_PROMPTS)
                         if e.snapshot is not None]
                if len(found) >= MIN_PROMPTS:
                    adapted[task] = self.inner_loop(group, task, meta)
            if not adapted:
                continue
            meta.update(reptile_step(meta, list(adapted.values())))
            self.meta_updates += 1
            norm = float(sum(v.float().norm() ** 2 for v in meta.values()) ** 0.5)
            events.append(Reptile(name, [t.value for t in adapted], round(norm, 5)))
            events += self._restart_worst(group, meta)
        return events

    def inner_loop(self, group: ModelGroup, task, start: dict[str, torch.Tensor]) -> dict:
        """Adapted weights after ``INNER_STEPS`` PPO updates on ``task`` from ``start``."""
        adapters = group.adapters
        if SCRATCH not in adapters.names:
            adapters.add(SCRATCH, adapters.settings(self.llm.members[group.tasks[0]][0].adapter))
        adapters.load_state(SCRATCH, start)
        self.learner(group).reset_optimizer(SCRATCH)
        for _ in range(INNER_STEPS):  # decoding as the task's first member does
            self.ppo_update(task, self.llm.members[task][0], group, SCRATCH, INNER_PROMPTS)
        return adapters.state(SCRATCH)

    def _restart_worst(self, group: ModelGroup, meta: dict[str, torch.Tensor]
                       ) -> list[RestartFromMeta]:
        events = []
        for task in group.tasks:
            members = self.llm.members[task]
            if len(members) < 2 or any(m.pulls == 0 for m in members):
                continue
            worst = min(members, key=lambda m: (m.mean, -m.index))
            group.adapters.load_state(worst.adapter, meta)
            self.adapter_changed(group, worst.adapter)
            worst.generation += 1
            worst.reset_stats()
            events.append(RestartFromMeta(task.value, worst.adapter))
        return events

    def stats(self) -> dict:
        return {**super().stats(), "meta_updates": self.meta_updates}

    def state_dict(self):
        meta, tensors = super().state_dict()
        for group_name, weights in self.meta.items():
            for key, value in weights.items():
                tensors[f"meta/{slug(group_name)}/{key}"] = value
        return {**meta, "meta_updates": self.meta_updates}, tensors

    def load_state_dict(self, meta, tensors) -> None:
        super().load_state_dict(meta, tensors)
        self.meta_updates = int(meta["meta_updates"])
        names = {slug(name): name for name in self.meta}
        for key, value in tensors.items():
            if key.startswith("meta/"):
                _, group_slug, name = key.split("/", 2)
                self.meta[names[group_slug]][name] = value.clone()
