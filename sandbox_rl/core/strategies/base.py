"""What every strategy shares: incumbent routing, online adaptation, learners, state."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any, Sequence

import torch

from sandbox_rl.agents.policy import to_action_text
from sandbox_rl.agents.task_specs import spec
from sandbox_rl.core.experience import Experience
from sandbox_rl.core.pool import Member, ModelGroup, member_spec, slug
from sandbox_rl.core.strategies.events import Event, ExpertIteration, OnlineUpdate
from sandbox_rl.core.strategies.host import StrategyHost
from sandbox_rl.enums import EvolutionStrategy
from sandbox_rl.envs.text_space import MAX_COMPLETION_CHARS
from sandbox_rl.seeding import derived_seed
from sandbox_rl.training.expert_iteration import sampled_answers
from sandbox_rl.training.ppo import PPOLearner, PPOSettings
from sandbox_rl.training.task_episodes import rollout_settings

log = logging.getLogger(__name__)

ONLINE_BATCH = 4  # a task's tuples gathered per online expert-iteration step
# AdamW steps of an online step. Measured (fresh behavior_analysis adapter on the embedded model,
# the heuristic's answers for four states of world 0, greedy answers on twelve states of worlds
# 2-3): 0.01 before, 0.562 after one step at 2e-3, 0.708 after two (the heuristic's 0.708); a
# fresh AdamW's first step only moves each weight by the rate in its gradient's sign. Two steps
# fit the main job's budget since the step backpropagates one prompt at a time.
ONLINE_STEPS = 2
# The online step's learning rate is this times ``adaptation_learning_rate``: 2e-3 at the guide's
# default 1e-4 (one AdamW step moves each weight by about the rate).
ONLINE_LR_FACTOR = 20.0


class Strategy:
    """Base strategy: routes each task to a member not tried yet, else to its incumbent (the
    member with the best recent mean reward) and, with ``enable_online_adaptation``, takes a
    small expert-iteration step each time a task has gathered ``ONLINE_BATCH`` fresh tuples
    (whichever of its members answered them): for each tuple's state the answer given and the
    task heuristic's answer are scored by their expected reward over re-seeded draws of that
    step, and the member that answered last (the one routing chose with everything known so
    far) is fine-tuned (``ONLINE_STEPS`` AdamW steps, completion-only) on the heuristic's answers
    that beat the given ones. Counting a task's tuples rather than an adapter's puts the first
    update after ``ONLINE_BATCH`` steps however many members the task has. An updated member's
    routing statistics restart, so routing tries the new weights next.
    """

    kind: EvolutionStrategy

    @property
    def needs_snapshots(self) -> bool:
        """Whether experiences must keep the env state (for counterfactual scores)."""
        return bool(self.config.enable_online_adaptation and self.config.enable_lora)

    def __init__(self, llm: StrategyHost) -> None:
        self.llm = llm
        self.config = llm.config
        self._learners: dict[str, PPOLearner] = {}
        self._pending: dict[str, list] = defaultdict(list)
        self.online_updates = 0

    # ------------------------------------------------------------------ routing
    def route(self, members: Sequence[Member]) -> Member:
        untried = [m for m in members if m.pulls == 0]
        if untried:
            return untried[0]
        return max(members, key=lambda m: (m.mean, -m.index))

    # ------------------------------------------------------------------ learning
    def learner(self, group: ModelGroup) -> PPOLearner:
        """The group's PPO learner (TRL), created on first use."""
        if group.adapters is None:
            raise ValueError(f"{self.kind.value} trains LoRA adapters: set enable_lora=True")
        if group.name not in self._learners:
            settings = PPOSettings(learning_rate=self.config.adaptation_learning_rate,
                                   seed=self.config.seed)
            self._learners[group.name] = PPOLearner(group.adapters, settings)
        return self._learners[group.name]

    def ppo_update(self, task, member: Member, group: ModelGroup, adapter: str | None = None,
                   limit: int = 16):
        """One TRL PPO update of ``adapter`` (default the member's own) on the task's ``limit``
        most recent prompts, decoding as ``member`` does; each rollout is scored with the env's
        reward function in a counterfactual step of the state its prompt came from, with the
        other agents' actions of that step. Returns ``(PPOStats, prompts used)``, or None
        without prompts."""
        found = [e for e in self.llm.recent_experiences(task, limit=limit)
                 if e.snapshot is not None]
        if not found:
            return None
        scorer, answer = self.llm.scorer, member_spec(member).answer

        def reward_fn(indices, completions):
            return [scorer.score_on(found[i], to_action_text(answer(found[i].observation, text),
                                                             MAX_COMPLETION_CHARS))
                    for i, text in zip(indices, completions)]

        learner = self.learner(group)
        # Rollouts decode within the task's own budget and choices and at the member's
        # temperature; the learner's other settings (learning rate, KL, batch) are shared by
        # the group.
        learner.settings, choices = rollout_settings(
            learner.settings, member_spec(member), [e.observation for e in found],
            group.adapters.tokenizer)
        return learner.update(adapter or member.adapter, [e.prompt for e in found],
                              reward_fn, choices), len(found)

    def after_step(self, experiences: Sequence[Experience]) -> list[Event]:
        if not (self.config.enable_online_adaptation and self.config.enable_lora):
            return []
        events = []
        for exp in experiences:
            pending = self._pending[exp.task.value]
            pending.append(exp)
            if len(pending) >= ONLINE_BATCH:
                event = self.expert_step(exp.task, exp.adapter, list(pending), 0, ONLINE_STEPS)
                self.online_updates += 1
                if event.examples:
                    # Its rewards so far describe the weights before the step: routing judges
                    # the updated member afresh (it is tried next, as a new member would be).
                    for member in self.llm.members[exp.task]:
                        if member.adapter == exp.adapter:
                            member.reset_stats()
                events.append(OnlineUpdate.of(event))
                pending.clear()
        return events

    def expert_step(self, task, adapter: str, tuples: list, samples: int, steps: int
                    ) -> ExpertIteration:
        """Expert iteration on the states of ``tuples``: proposals are the answer each tuple
        gave, the task heuristic's answer and ``samples`` answers sampled from ``adapter``;
        each is scored by its expected reward over re-seeded draws of its step, and the
        adapter takes ``steps`` AdamW steps (completion-only) on the proposals that beat the
        answer given. Returns the event."""
        scorer, s, group = self.llm.scorer, spec(task), self.llm.group_of[task]
        prompts, targets, gains, teacher_wins = [], [], [], 0
        for k, exp in enumerate(t for t in tuples if t.snapshot is not None):
            given, teacher = exp.actions[task.value], scorer.teacher_answer(exp)
            proposals = [given, teacher] + (sampled_answers(
                group.adapters, adapter, s, exp.observation, samples, 1.0,
                derived_seed(self.config.seed, adapter, exp.step, k)) if samples else [])
            scores = [scorer.score_on(exp, text) for text in proposals]
            best = max(range(len(proposals)), key=lambda i: (scores[i], -i))
            if scores[best] > scores[0]:
                prompts.append(exp.prompt)
                targets.append(s.completion(exp.observation, proposals[best]))
                gains.append(scores[best] - scores[0])
                teacher_wins += best == 1
        loss = 0.0
        if prompts:
            loss = self.learner(group).supervised_update(
                adapter, prompts, targets, ONLINE_LR_FACTOR * self.config.adaptation_learning_rate,
                steps)
        return ExpertIteration(task.value, adapter, examples=len(prompts),
                               from_heuristic=teacher_wins, loss=float(loss),
                               mean_gain=float(sum(gains) / len(gains)) if gains else 0.0,
                               mean_reward=sum(e.reward for e in tuples) / len(tuples))

    def evolve(self) -> list[Event]:
        return []

    def pending(self) -> dict[str, list]:
        """Tuples gathered for the next online step, per task."""
        return {a: list(es) for a, es in self._pending.items() if es}

    def set_pending(self, pending: dict[str, list]) -> None:
        self._pending.clear()
        self._pending.update({a: list(es) for a, es in pending.items()})

    def adapter_changed(self, group: ModelGroup, adapter: str) -> None:
        """An adapter was replaced or resized: its optimiser state no longer applies (the
        task's pending tuples stay: their states are as good for the new weights)."""
        learner = self._learners.get(group.name)
        if learner is not None:
            learner.reset_optimizer(adapter)

    # ------------------------------------------------------------------ stats and state
    def stats(self) -> dict[str, Any]:
        return {"online_updates": self.online_updates}

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """JSON metadata and tensors (optimiser states) of the strategy."""
        tensors = {}
        # Members only: a strategy's scratch adapters start afresh each time they are used.
        members = {m.adapter for ms in self.llm.members.values() for m in ms}
        for group_name, learner in self._learners.items():
            for adapter in sorted(members & set(learner.adapters.names)):
                for key, value in learner.optimizer_state(adapter).items():
                    tensors[f"optimizer/{slug(group_name)}/{adapter}/{key}"] = value
        return {"kind": self.kind.value, "online_updates": self.online_updates}, tensors

    def load_state_dict(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        # The pending tuples are the LLM's JSON state (``set_pending``, restored before this):
        # clearing them here lost the next online update after every load.
        self.online_updates = int(meta["online_updates"])
        states: dict[tuple[str, str], dict[str, torch.Tensor]] = defaultdict(dict)
        for key, value in tensors.items():
            if key.startswith("optimizer/"):
                _, group_name, adapter, rest = key.split("/", 3)
                states[(group_name, adapter)][rest] = value
        groups = {slug(name): group for name, group in self.llm.groups.items()}
        for (group_slug, adapter), state in states.items():
            self.learner(groups[group_slug]).load_optimizer_state(adapter, state)
