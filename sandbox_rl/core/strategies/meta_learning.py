"""``meta_learning``: a Reptile meta-initialisation of the task adapters.

The meta-initialisation (one set of LoRA weights per base model) starts as PEFT's fresh adapter.
Every evolution step, for each task on that base, a scratch adapter starts from it and takes
``INNER_STEPS`` reward-weighted steps on the task's recent (prompt, completion, reward) tuples;
the meta-initialisation then moves toward the mean of the adapted weights (Reptile:
``meta += META_STEP * mean_t(adapted_t - meta)``). The worst member of each task is restarted
from it, so new adapters begin where adaptation to any of the tasks is quick.
"""

from __future__ import annotations

import torch

from sandbox_rl.core.pool import ModelGroup, slug
from sandbox_rl.core.strategies.base import Strategy
from sandbox_rl.enums import EvolutionStrategy

SCRATCH = "meta__scratch"
INNER_STEPS = 2
META_STEP = 0.5
MIN_TUPLES = 2


class MetaLearning(Strategy):
    kind = EvolutionStrategy.META_LEARNING

    def __init__(self, llm) -> None:
        super().__init__(llm)
        self.meta: dict[str, dict[str, torch.Tensor]] = {}  # group -> weights without adapter name
        self.meta_updates = 0
        for group in llm.groups.values():
            if group.adapters is not None:
                reference = llm.members[group.tasks[0]][0].adapter
                self.meta[group.name] = group.adapters.state(reference)

    def evolve(self) -> list[dict]:
        events = []
        for name, meta in self.meta.items():
            group = self.llm.groups[name]
            adapted = {}
            for task in group.tasks:
                found = self.llm.recent_experiences(task, limit=4 * self.config.evolution_interval)
                if len(found) >= MIN_TUPLES:
                    adapted[task] = self.inner_loop(group, meta, found)
            if not adapted:
                continue
            with torch.no_grad():
                for key in meta:
                    delta = torch.stack([w[key] - meta[key] for w in adapted.values()]).mean(0)
                    meta[key] = meta[key] + META_STEP * delta
            self.meta_updates += 1
            events.append({"type": "reptile", "model": name, "tasks": [t.value for t in adapted],
                           "meta_norm": round(float(sum(v.float().norm() ** 2 for v in meta.values())
                                                    ** 0.5), 5)})
            events += self._restart_worst(group, meta)
        return events

    def inner_loop(self, group: ModelGroup, start: dict[str, torch.Tensor], tuples) -> dict:
        """Adapted weights after ``INNER_STEPS`` reward-weighted steps from ``start``."""
        adapters = group.adapters
        if SCRATCH not in adapters.names:
            adapters.add(SCRATCH, adapters.settings(self.llm.members[group.tasks[0]][0].adapter))
        adapters.load_state(SCRATCH, start)
        learner = self.learner(group)
        learner.reset_optimizer(SCRATCH)
        for _ in range(INNER_STEPS):
            learner.reward_weighted_update(SCRATCH, [e.prompt for e in tuples],
                                           [e.completion for e in tuples],
                                           [e.reward for e in tuples],
                                           self.config.adaptation_learning_rate)
        return adapters.state(SCRATCH)

    def _restart_worst(self, group: ModelGroup, meta: dict[str, torch.Tensor]) -> list[dict]:
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
            events.append({"type": "restart_from_meta", "task": task.value,
                           "adapter": worst.adapter})
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
