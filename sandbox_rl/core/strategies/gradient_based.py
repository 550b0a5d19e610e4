"""``gradient_based``: expert iteration, then TRL PPO, on each task's incumbent adapter.

Every evolution step, each task's incumbent member first takes an expert-iteration step on the
states the live run gathered in the interval (:meth:`Strategy.expert_step`: its own answers, the
heuristic's and ``SAMPLES`` sampled answers scored by expected reward over re-seeded draws; a
few AdamW steps on the winners), then one PPO update (``training/ppo.py``,
``trl.experimental.ppo``) on those prompts (:meth:`Strategy.ppo_update`: the reward "model" is
the env's own reward function in counterfactual steps of the state each prompt came from).
"""

from __future__ import annotations

from sandbox_rl.core.pool import Member, ModelGroup
from sandbox_rl.core.strategies.base import Strategy
from sandbox_rl.core.strategies.events import Event, PPOUpdate
from sandbox_rl.core.strategies.host import StrategyHost
from sandbox_rl.enums import EvolutionStrategy

MAX_PROMPTS = 16  # most recent prompts of a task an update trains on
SAMPLES = 2  # sampled proposals per state in the expert-iteration step
EXPERT_STEPS = 4  # AdamW steps on the winners


class GradientBased(Strategy):
    kind = EvolutionStrategy.GRADIENT_BASED
    needs_snapshots = True  # type: ignore[assignment]  (PPO scores completions on them)

    def __init__(self, llm: StrategyHost) -> None:
        super().__init__(llm)
        self.ppo_updates = 0
        self.last_stats: dict[str, dict] = {}

    def evolve(self) -> list[Event]:
        events: list[Event | None] = []
        for task, members in self.llm.members.items():
            member = self.route(members)
            group = self.llm.group_of[task]
            if group.adapters is None:
                continue
            tuples = [e for e in self.llm.recent_experiences(task, limit=MAX_PROMPTS)
                      if e.snapshot is not None]
            if tuples:
                events.append(self.expert_step(task, member.adapter, tuples, SAMPLES,
                                               EXPERT_STEPS))
            events.append(self.ppo_update_event(task, member, group))
        return [e for e in events if e is not None]

    def ppo_update_event(self, task, member: Member, group: ModelGroup) -> PPOUpdate | None:
        done = self.ppo_update(task, member, group, limit=MAX_PROMPTS)
        if done is None:
            return None
        stats, prompts = done
        self.ppo_updates += 1
        summary = {k: (round(v, 5) if isinstance(v, float) else v)
                   for k, v in vars(stats).items()}
        self.last_stats[task.value] = summary
        return PPOUpdate(task.value, member.adapter, prompts, summary)

    def stats(self) -> dict:
        return {**super().stats(), "ppo_updates": self.ppo_updates, "last_ppo": self.last_stats}

    def state_dict(self):
        meta, tensors = super().state_dict()
        return {**meta, "ppo_updates": self.ppo_updates}, tensors

    def load_state_dict(self, meta, tensors) -> None:
        super().load_state_dict(meta, tensors)
        self.ppo_updates = int(meta["ppo_updates"])
