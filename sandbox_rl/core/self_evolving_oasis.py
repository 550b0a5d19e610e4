"""The documented API (the user guide): a social simulation whose LLM agents evolve as it runs.

    from sandbox_rl.core.self_evolving_oasis import create_self_evolving_oasis
    sandbox = create_self_evolving_oasis(evolution_strategy="multi_model", model_pool_size=3)
    result = sandbox.simulate_step()

Each ``simulate_step`` advances the Oasis env (``sandbox_rl.envs.oasis_v0`` in text mode) by one
step with all five task agents acting through their current models and adapters, batched per
base model; each task's ``performance_score`` is that agent's reward from the simulation. Every
``evolution_interval`` steps the configured strategy runs (``sandbox_rl.core.strategies``).
"""

from __future__ import annotations

import copy
import logging
import os
import time
from typing import Any

import torch

from sandbox_rl.agents.policy import env_action
from sandbox_rl.core import state as state_io
from sandbox_rl.core.config import SelfEvolvingConfig
from sandbox_rl.core.evolving_llm import SelfEvolvingLLM
from sandbox_rl.core.experience import Experience, TaskResponse
from sandbox_rl.core.monitoring import Monitor
from sandbox_rl.core.world import new_env
from sandbox_rl.enums import EvolutionStrategy, TaskType
from sandbox_rl.envs.counterfactual import Counterfactual
from sandbox_rl.envs.heuristics import heuristic_action
from sandbox_rl.envs.state import snapshot
from sandbox_rl.seeding import derived_seed
from sandbox_rl.training.protocol import HEURISTIC_TEXT, TEXT_READ_TASKS

__all__ = ["EvolutionStrategy", "SelfEvolvingConfig", "SelfEvolvingLLM", "SelfEvolvingOasis",
           "TaskResponse", "TaskType", "create_self_evolving_oasis"]

log = logging.getLogger(__name__)


class SelfEvolvingOasis:
    """A self-evolving Oasis sandbox. Build it with :func:`create_self_evolving_oasis`."""

    def __init__(self, config: SelfEvolvingConfig) -> None:
        self.config = config
        self.env = new_env(config)
        self.env.reset(seed=config.seed)
        self._counterfactual = Counterfactual(self.env)
        self.evolving_llm = SelfEvolvingLLM(config, scorer=self)
        self.monitor = Monitor(config.log_dir) if config.enable_monitoring else None
        self.step_count = 0

    # ------------------------------------------------------------------ simulation
    def simulate_step(self) -> dict[str, Any]:
        """Advance the simulation one step; returns ``step``, ``tasks`` (per task: response,
        performance_score, model_name, adapter, ...), ``network_state``, ``evolution_stats``
        and ``events`` (what the strategy did this step)."""
        start = time.perf_counter()
        if not self.env.agents:
            self.env.reset()
        llm = self.evolving_llm
        tasks = [TaskType(a) for a in self.env.agents]
        observations = {t: self.env.text_observation(t.value) for t in tasks}
        snap = snapshot(self.env)
        baselines = self._baseline_actions(tasks)
        members = {t: llm.route(t) for t in tasks}
        responses = llm.generate(observations, members)
        actions = {t.value: responses[t].text for t in tasks}
        _, rewards, _, _, infos = self.env.step(actions)
        experiences = [Experience(t, members[t].adapter, self.step_count, observations[t],
                                  llm.prompt_of(t, members[t], observations[t]),
                                  responses[t].completion, float(rewards[t.value]), actions,
                                  snap if llm.strategy.needs_snapshots else None)
                       for t in tasks]
        events = llm.observe_step(experiences, members)
        self.step_count += 1
        result = {
            "step": self.step_count,
            "tasks": {t.value: llm.result(t, members[t], responses[t], rewards[t.value],
                                          infos[t.value].get("parse_error", ""))
                      for t in tasks},
            "network_state": self.get_network_stats(),
            "evolution_stats": llm.get_evolution_stats(),
            "events": events,
            "seconds": round(time.perf_counter() - start, 3),
        }
        for agent, scores in self._baseline_scores(snap, actions, baselines).items():
            result["tasks"][agent].update(scores)
        if self.monitor is not None:
            self.monitor.log(result)
        return result

    def _baseline_actions(self, tasks) -> dict[str, dict[str, Any]]:
        """Each task's heuristic action and a uniformly random one (drawn from a generator
        seeded by (seed, task, step), so a loaded state draws the same) for the coming step;
        for a task whose text the env reads through models also the heuristic's action written
        as text (``training.protocol.HEURISTIC_TEXT``)."""
        out = {}
        for task in tasks:
            space = copy.deepcopy(self.env.tasks[task.value].action_space)
            space.seed(derived_seed(self.config.seed, task.value, self.step_count))
            heuristic = heuristic_action(task.value, self.env.vector_observation(task.value))
            out[task.value] = {"heuristic": heuristic, "random": space.sample()}
            if task.value in TEXT_READ_TASKS:
                # The same action written as the agents' text: the env reads text through its
                # models, which reward it differently (the fair reference for a text answer).
                out[task.value][HEURISTIC_TEXT] = self.env.tasks[task.value].format_action(heuristic)
        return out

    def _baseline_scores(self, snap, actions: dict, baselines: dict) -> dict[str, dict]:
        """``heuristic_score`` and ``random_score`` of each task: what its baseline actions
        would have earned in the step just played (its own draws, the agents' actual actions
        for the other tasks), so the agents' score has references on the same step."""
        out = {}
        for agent, kinds in baselines.items():
            out[agent] = {f"{kind}_score": self._counterfactual.rewards(
                snap, {**actions, agent: action}, [agent])[agent] for kind, action in kinds.items()}
        return out

    def get_network_stats(self) -> dict[str, Any]:
        """The platform's statistics: total_users, total_posts, total_edges,
        total_interactions, network_density, active_users, engagement_rate, ..."""
        return self.env.platform.stats().as_dict()

    # ------------------------------------------------------------------ scoring (Scorer)
    def observation(self, task: TaskType) -> str:
        return self.env.text_observation(task.value)

    def score_now(self, task: TaskType, action: str) -> float:
        return self._counterfactual.score_action(task.value, action)

    def score_on(self, experience: Experience, action: str) -> float:
        # Expected over re-seeded draws: PPO must not be rewarded for luck in the step's own
        # draws (a future the agent could not see).
        others = {a: x for a, x in experience.actions.items() if a != experience.task.value}
        # As the env receives text (printable, cut); an empty answer is the no-op.
        candidate = env_action(action)
        return self._counterfactual.expected_rewards(
            experience.snapshot, experience.task.value, [candidate], others, draws=2,
            seed=self.config.seed)[0]

    def teacher_answer(self, experience: Experience) -> str:
        task = experience.task.value
        observation = experience.snapshot.arrays[f"obs.{task}"]
        return self.env.tasks[task].format_action(heuristic_action(task, observation))

    # ------------------------------------------------------------------ state
    def save_state(self, path: str | os.PathLike) -> bool:
        """Write the whole sandbox to the directory ``path`` (replaced atomically). Returns
        False, with the reason logged, when it cannot be written."""
        try:
            state_io.save(self, path)
        except (OSError, ValueError, RuntimeError) as err:
            log.error("save_state(%r) failed: %s", str(path), err)
            return False
        return True

    def load_state(self, path: str | os.PathLike, log_dir: str | os.PathLike | None = None
                   ) -> bool:
        """Replace this sandbox by the one saved at ``path``. Everything is read and checked
        first; on a missing, corrupt or incompatible state it returns False with the reason
        logged, and the sandbox (and the global torch RNG) is left as it was. The sandbox keeps
        its device and writes to its own ``log_dir`` unless ``log_dir`` names another."""
        try:
            keep = {"log_dir": self.config.log_dir if log_dir is None else log_dir,
                    "device": self.config.device}
            loaded = state_io.load(path, scorer=self, keep=keep)
        except Exception as err:  # noqa: BLE001 - a bad state is refused, whatever noticed it
            log.error("load_state(%r) failed, sandbox unchanged: %s", str(path)[:200],
                      err if isinstance(err, ValueError) else f"{type(err).__name__}: {err}")
            return False
        self._swap(loaded)
        return True

    def _swap(self, loaded: state_io.LoadedState) -> None:
        """Put the state built aside in place of this sandbox's (the LLM already scores
        through this sandbox, which from here on steps the new env)."""
        if self.monitor is not None:
            self.monitor.close()
        self.config, self.env, self.evolving_llm = loaded.config, loaded.env, loaded.llm
        self._counterfactual = Counterfactual(self.env)
        self.step_count = loaded.step_count
        self.monitor = Monitor(self.config.log_dir) if self.config.enable_monitoring else None
        torch.set_rng_state(loaded.rng)

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()
        self.env.close()


def create_self_evolving_oasis(evolution_strategy: EvolutionStrategy | str = "multi_model",
                               enable_lora: bool = True, enable_kv_cache_compression: bool = True,
                               **config_fields: Any) -> SelfEvolvingOasis:
    """A sandbox configured by ``SelfEvolvingConfig``'s fields (see its docstring); an unknown
    field or a bad value raises ValueError naming it."""
    unknown = set(config_fields) - SelfEvolvingConfig.field_names()
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}; expected SelfEvolvingConfig "
                         f"fields: {', '.join(sorted(SelfEvolvingConfig.field_names()))}")
    config = SelfEvolvingConfig(evolution_strategy=evolution_strategy, enable_lora=enable_lora,
                                enable_kv_cache_compression=enable_kv_cache_compression,
                                **config_fields)
    return SelfEvolvingOasis(config)
