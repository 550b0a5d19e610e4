"""``SelfEvolvingLLM``: the task agents' models, their routing, performance and evolution.

It owns the model pool (``core/pool.py``), generates for all tasks in one batched call per base
model, records every (prompt, completion, reward) the env produced, and every
``evolution_interval`` env steps runs one step of the configured strategy
(``core/strategies/``). Scores always come from the simulation: the env's reward for actions
it took, or a counterfactual step of a copy of the env (``Scorer``) for completions it did not
take (``process_task``, PPO rollouts).
"""

from __future__ import annotations

import json
import logging
from collections import deque
from typing import Any, Mapping, Sequence

from sandbox_rl.agents.generation import Completion, GenerationRequest, generate_batch
from sandbox_rl.agents.kv_cache import KVCacheSettings, PrefixCacheStore, cache_factory
from sandbox_rl.agents.lora import LoraSettings
from sandbox_rl.agents.models import ModelSettings
from sandbox_rl.agents.policy import to_action_text
from sandbox_rl.core.config import SelfEvolvingConfig
from sandbox_rl.core.experience import (Experience, Scorer, TaskResponse, experience_from_json,
                                        experience_json)
from sandbox_rl.core.pool import Member, ModelGroup, build_pool, member_spec
from sandbox_rl.core.strategies import make_strategy
from sandbox_rl.enums import TaskType
from sandbox_rl.envs.text_space import MAX_COMPLETION_CHARS

log = logging.getLogger(__name__)


class SelfEvolvingLLM:
    """The evolving task agents. Built by ``create_self_evolving_oasis``."""

    def __init__(self, config: SelfEvolvingConfig, scorer: Scorer | None = None,
                 start_adapters: bool = True) -> None:
        """``start_adapters=False``: skip ``config.adapters_dir`` (a saved state brings its own
        adapter weights)."""
        self.config = config
        self.scorer = scorer
        lora = (LoraSettings(config.lora_rank, config.lora_alpha, config.lora_dropout)
                if config.enable_lora else None)
        kv = KVCacheSettings() if config.enable_kv_cache_compression else None
        self.groups, self.members = build_pool(
            dict(config.task_distribution), config.model_pool_size, lora, kv,
            config.fallback_model, ModelSettings(device=config.device), config.seed,
            config.adapters_dir if start_adapters else None)
        self.group_of = {t: g for g in self.groups.values() for t in g.tasks}
        self.evolution_step = 0
        self.env_steps = 0
        self.generate_calls = 0
        self.experiences: deque[Experience] = deque(maxlen=max(64, 4 * config.evolution_interval))
        self.events: list[dict] = []
        self.performance: dict[TaskType, list[float]] = {t: [] for t in TaskType}
        self.prefix_stores: dict[str, PrefixCacheStore] = {}
        self.strategy = make_strategy(config.evolution_strategy, self)

    # ------------------------------------------------------------------ acting
    def route(self, task: TaskType) -> Member:
        return self.strategy.route(self.members[task])

    def generate(self, prompts: Mapping[TaskType, str], members: Mapping[TaskType, Member]
                 ) -> dict[TaskType, TaskResponse]:
        """One batched generation per base model: each task's observation through its member."""
        out: dict[TaskType, TaskResponse] = {}
        for group in self.groups.values():
            tasks = [t for t in group.tasks if t in prompts]
            if not tasks:
                continue
            requests = [self._request(group, members[t], prompts[t]) for t in tasks]
            completions = generate_batch(
                group.model, group.tokenizer, requests,
                cache_factory(group.model.config, group.kv_cache),
                seed=self.config.seed * 100_003 + self.generate_calls,
                multi_adapter=group.adapters is not None,
                prefix_caches=self.prefix_store(group))
            for task, completion in zip(tasks, completions):
                out[task] = self._response(members[task], prompts[task], completion)
        self.generate_calls += 1
        return out

    def _request(self, group: ModelGroup, member: Member, observation: str) -> GenerationRequest:
        return member_spec(member).request(group.tokenizer, observation, member.adapter)

    def prefix_store(self, group: ModelGroup) -> PrefixCacheStore:
        """The group's prefix caches (each task's system turn, per adapter; in memory, saved
        with the state; an adapter that trains gets its prefix recomputed)."""
        if group.name not in self.prefix_stores:
            self.prefix_stores[group.name] = PrefixCacheStore(group.model, persist=False)
        return self.prefix_stores[group.name]

    def _response(self, member: Member, observation: str, completion: Completion) -> TaskResponse:
        text = to_action_text(member_spec(member).answer(observation, completion.text),
                              MAX_COMPLETION_CHARS)
        return TaskResponse(text, completion.text, completion.completion_tokens,
                            completion.finish_reason)

    def prompt_of(self, task: TaskType, member: Member, observation: str) -> str:
        """The full prompt ``member`` generates from for ``observation``."""
        return self._request(self.group_of[task], member, observation).prompt

    # ------------------------------------------------------------------ the documented API
    def process_task(self, task_type: TaskType | str, prompt: str,
                     context: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Answer ``prompt`` with the task's current model and score the answer against the
        current simulation state, without advancing it.

        The task's model sees ``prompt``, ``context`` and the env's current observation for the
        task; ``performance_score`` is the env reward the parsed answer would earn in a
        counterfactual step of a copy of the simulation (0 for an answer the task cannot parse).
        """
        task = TaskType.parse(task_type)
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"process_task needs a non-empty prompt string, got {prompt!r}")
        if context is not None and not isinstance(context, Mapping):
            raise ValueError(f"context must be a mapping or None, got {type(context).__name__}")
        if self.scorer is None:
            raise RuntimeError("process_task needs a sandbox to score against; use "
                               "create_self_evolving_oasis(...)")
        observation = self.scorer.observation(task)
        request = prompt.strip()
        if context:
            request += "\nContext: " + json.dumps(dict(context), default=str, ensure_ascii=True)
        member = self.route(task)
        response = self.generate({task: f"{request}\n\n{observation}"}, {task: member})[task]
        score = self.scorer.score_now(task, response.text)
        return self.result(task, member, response, score)

    def result(self, task: TaskType, member: Member, response: TaskResponse, score: float,
                parse_error: str = "") -> dict[str, Any]:
        return {"task": task.value, "response": response, "performance_score": float(score),
                "model_name": self.group_of[task].name, "adapter": member.adapter,
                "temperature": member_spec(member).sampling.temperature,
                "parse_error": parse_error}

    # ------------------------------------------------------------------ learning from the env
    def observe_step(self, experiences: Sequence[Experience], members: Mapping[TaskType, Member]
                     ) -> list[dict]:
        """Record one env step's results; run online adaptation and, every
        ``evolution_interval`` steps, the strategy. Returns the evolution events of this step."""
        self.env_steps += 1
        for exp in experiences:
            members[exp.task].record(exp.reward)
            self.performance[exp.task].append(exp.reward)
            self.experiences.append(exp)
        found = list(self.strategy.after_step(experiences))
        if self.env_steps % self.config.evolution_interval == 0:
            self.evolution_step += 1
            found += self.strategy.evolve()
        # Where events leave the strategy: plain dicts from here on (logs, states, results).
        events = [event.to_json() for event in found]
        for event in events:
            event.setdefault("env_step", self.env_steps)
            event.setdefault("evolution_step", self.evolution_step)
        self.events += events
        return events

    def recent_experiences(self, task: TaskType, adapter: str | None = None,
                           limit: int | None = None) -> list[Experience]:
        found = [e for e in self.experiences if e.task == task
                 and (adapter is None or e.adapter == adapter)]
        return found[-limit:] if limit else found

    # ------------------------------------------------------------------ state
    def state_json(self, snapshot_index: Mapping[int, int]) -> dict[str, Any]:
        """Everything but tensors, as JSON (snapshots by their index in ``snapshot_index``)."""
        return {
            "evolution_step": self.evolution_step, "env_steps": self.env_steps,
            "generate_calls": self.generate_calls, "events": self.events,
            "performance": {t.value: v for t, v in self.performance.items()},
            "members": {t.value: [m.to_json() for m in ms] for t, ms in self.members.items()},
            "experiences": [experience_json(e, snapshot_index) for e in self.experiences],
            # Online steps score on the tuples' snapshots (all among the recent experiences).
            "pending": {a: [experience_json(e, snapshot_index) for e in es]
                        for a, es in self.strategy.pending().items()},
        }

    def load_state_json(self, data: Mapping[str, Any], snapshots: Sequence[Any]) -> None:
        """Inverse of ``state_json`` (on a freshly built instance; raises on inconsistency)."""
        self.evolution_step = int(data["evolution_step"])
        self.env_steps = int(data["env_steps"])
        self.generate_calls = int(data["generate_calls"])
        self.events = list(data["events"])
        self.performance = {TaskType(t): [float(r) for r in v] for t, v in data["performance"].items()}
        for task, saved in data["members"].items():
            members = self.members[TaskType(task)]
            if len(saved) != len(members):
                raise ValueError(f"{task}: {len(saved)} saved members, pool has {len(members)}")
            for member, item in zip(members, saved):
                member.load_json(item)
        self.experiences.clear()
        for item in data["experiences"]:
            self.experiences.append(experience_from_json(item, snapshots))
        # Grouped by each tuple's own task: states saved before pending tuples were counted
        # per task keyed them by adapter.
        pending: dict[str, list] = {}
        for items in data["pending"].values():
            for item in items:
                pending.setdefault(item["task"], []).append(experience_from_json(item, snapshots))
        self.strategy.set_pending(pending)

    # ------------------------------------------------------------------ stats
    def get_evolution_stats(self) -> dict[str, Any]:
        performances = {}
        for task, members in self.members.items():
            scores = self.performance[task]
            performances[task.value] = {
                "model_name": self.group_of[task].name,
                "recent_mean": round(sum(scores[-20:]) / len(scores[-20:]), 4) if scores else None,
                "steps": len(scores),
                "members": [m.stats() for m in members],
            }
        adapters = {}
        for group in self.groups.values():
            if group.adapters is None:
                continue
            for name in group.adapters.names:
                settings = group.adapters.settings(name)
                adapters[name] = {"model": group.name, "rank": settings.rank,
                                  "alpha": settings.alpha, "dropout": settings.dropout,
                                  "bytes": group.adapters.adapter_nbytes(name)}
        return {
            "evolution_step": self.evolution_step,
            "evolution_strategy": self.config.evolution_strategy.value,
            "model_pool_size": self.config.model_pool_size,
            "env_steps": self.env_steps,
            "model_performances": performances,
            "lora_adapters": adapters,
            "kv_cache": {g.name: (g.kv_cache.__dict__ if g.kv_cache else None)
                         for g in self.groups.values()},
            "events": len(self.events),
            "strategy": self.strategy.stats(),
        }

