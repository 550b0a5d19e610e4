"""``gradient_based``: TRL PPO updates of each task's incumbent adapter.

Every evolution step, each task's incumbent member is updated by PPO (``training/ppo.py``,
``trl.experimental.ppo``) on the prompts it saw during the interval
(:meth:`Strategy.ppo_update`: the reward "model" is the env's own reward function in a
counterfactual step of the state each prompt came from).
"""

from __future__ import annotations

from sandbox_rl.core.strategies.base import Strategy
from sandbox_rl.enums import EvolutionStrategy

MAX_PROMPTS = 16  # most recent prompts of a task an update trains on


class GradientBased(Strategy):
    kind = EvolutionStrategy.GRADIENT_BASED
    needs_snapshots = True  # type: ignore[assignment]  (PPO scores completions on them)

    def __init__(self, llm) -> None:
        super().__init__(llm)
        self.ppo_updates = 0
        self.last_stats: dict[str, dict] = {}

    def evolve(self) -> list[dict]:
        events = []
        for task, members in self.llm.members.items():
            member = self.route(members)
            group = self.llm.group_of[task]
            if group.adapters is None:
                continue
            events.append(self.ppo_update_event(task, member, group))
        return [e for e in events if e]

    def ppo_update_event(self, task, member, group) -> dict | None:
        done = self.ppo_update(task, member, group, limit=MAX_PROMPTS)
        if done is None:
            return None
        stats, prompts = done
        self.ppo_updates += 1
        summary = {k: (round(v, 5) if isinstance(v, float) else v)
                   for k, v in vars(stats).items()}
        self.last_stats[task.value] = summary
        return {"type": "ppo_update", "task": task.value, "adapter": member.adapter,
                "prompts": prompts, **summary}

    def stats(self) -> dict:
        return {**super().stats(), "ppo_updates": self.ppo_updates, "last_ppo": self.last_stats}

    def state_dict(self):
        meta, tensors = super().state_dict()
        return {**meta, "ppo_updates": self.ppo_updates}, tensors

    def load_state_dict(self, meta, tensors) -> None:
        super().load_state_dict(meta, tensors)
        self.ppo_updates = int(meta["ppo_updates"])
