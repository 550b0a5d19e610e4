"""``gradient_based``: TRL PPO updates of each task's incumbent adapter.

Every evolution step, each task's incumbent member is updated by PPO (``training/ppo.py``,
``trl.experimental.ppo``) on the prompts it saw during the interval; the reward "model" scores a
rollout completion with the env's own reward function, in a counterfactual step of the env
state that prompt came from, with the other agents' actions of that step.
"""

from __future__ import annotations

from dataclasses import replace

from sandbox_rl.agents.policy import to_action_text
from sandbox_rl.core.pool import member_spec
from sandbox_rl.core.strategies.base import Strategy
from sandbox_rl.enums import EvolutionStrategy
from sandbox_rl.envs.oasis_v0 import MAX_COMPLETION_CHARS

MAX_PROMPTS = 16  # most recent prompts of a task an update trains on


class GradientBased(Strategy):
    kind = EvolutionStrategy.GRADIENT_BASED
    needs_snapshots = True

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
            events.append(self.ppo_update(task, member, group))
        return [e for e in events if e]

    def ppo_update(self, task, member, group) -> dict | None:
        found = [e for e in self.llm.recent_experiences(task, limit=MAX_PROMPTS)
                 if e.snapshot is not None]
        if not found:
            return None
        scorer = self.llm.scorer
        answer = member_spec(member).answer

        def reward_fn(indices, completions):
            return [scorer.score_on(found[i], to_action_text(answer(found[i].observation, text),
                                                             MAX_COMPLETION_CHARS))
                    for i, text in zip(indices, completions)]

        learner = self.learner(group)
        # Rollouts decode within the task's own budget and at the member's temperature; the
        # learner's other settings (learning rate, KL, batch) are shared by the group.
        sampling = member_spec(member).sampling
        learner.settings = replace(learner.settings, max_new_tokens=sampling.max_new_tokens,
                                   temperature=sampling.temperature or 0.7)
        stats = learner.update(member.adapter, [e.prompt for e in found], reward_fn)
        self.ppo_updates += 1
        summary = {k: (round(v, 5) if isinstance(v, float) else v)
                   for k, v in vars(stats).items()}
        self.last_stats[task.value] = summary
        return {"type": "ppo_update", "task": task.value, "adapter": member.adapter,
                "prompts": len(found), **summary}

    def stats(self) -> dict:
        return {**super().stats(), "ppo_updates": self.ppo_updates, "last_ppo": self.last_stats}

    def state_dict(self):
        meta, tensors = super().state_dict()
        return {**meta, "ppo_updates": self.ppo_updates}, tensors

    def load_state_dict(self, meta, tensors) -> None:
        super().load_state_dict(meta, tensors)
        self.ppo_updates = int(meta["ppo_updates"])
