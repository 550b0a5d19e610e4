"""Episodes of one LLM task for training and held-out evaluation, scored by the simulation.

``collect_episode`` plays a text-mode Oasis env in which the other four roles follow their
heuristic policies and the measured task does its no-op, and keeps, for every step, the task's
text observation, a snapshot of the env just before the step and the other roles' actions. A
completion for step ``t`` is then scored by the env's own reward function in a counterfactual
step from that snapshot with those actions (``envs/counterfactual.py``): every adapter, member or
checkpoint is judged on exactly the same situations, and the measured task never changes the
world the others see. Each step also keeps the task's heuristic action and a random one (its
structured action space, seeded by the episode seed), scored the same way as baselines.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from sandbox_rl.agents.generation import SamplingSettings, generate_batch
from sandbox_rl.agents.policy import env_action
from sandbox_rl.agents.task_specs import TaskSpec, spec
from sandbox_rl.enums import TaskType
from sandbox_rl.envs import oasis_v0
from sandbox_rl.envs.counterfactual import Counterfactual
from sandbox_rl.envs.heuristics import heuristic_action
from sandbox_rl.envs.state import EnvSnapshot, snapshot


@dataclass(frozen=True)
class TaskStep:
    observation: str
    snapshot: EnvSnapshot
    others: dict  # the other roles' (heuristic, structured) actions of that step
    baselines: dict  # the task's own structured actions of that step: "heuristic", "random"


@dataclass
class TaskEpisode:
    task: TaskType
    seed: int
    steps: list[TaskStep]
    scorer: Counterfactual

    def score(self, index: int, answer: str) -> float:
        """The reward of the text answer ``answer`` at step ``index`` (an empty answer, which
        the env's ``Text`` space refuses, is the task's no-op like any that does not parse)."""
        return self.score_action(index, env_action(answer))

    def score_action(self, index: int, action) -> float:
        """The reward of ``action`` (text, or an action of the task's structured space; None:
        the no-op)."""
        step = self.steps[index]
        actions = dict(step.others) if action is None else {**step.others,
                                                             self.task.value: action}
        return self.scorer.rewards(step.snapshot, actions, [self.task.value])[self.task.value]

    def expected_scores(self, index: int, answers: Sequence, draws: int, seed: int
                        ) -> list[float]:
        """The expected reward of each answer (text, or a structured action) at step ``index``
        over ``draws`` re-seeded replays of the step (never the step's own draws: for choosing
        among answers, see ``Counterfactual.expected_rewards``)."""
        step = self.steps[index]
        actions = [a if not isinstance(a, str) else
                   env_action(a) for a in answers]
        return self.scorer.expected_rewards(step.snapshot, self.task.value, actions,
                                            step.others, draws, seed)

    def heuristic_answer(self, index: int) -> str:
        """The task heuristic's action of step ``index`` written as a complete text answer
        (``Task.format_action``)."""
        task = self.scorer.scratch.tasks[self.task.value]
        return task.format_action(self.steps[index].baselines["heuristic"])

    def baseline(self, kind: str) -> float:
        """Mean reward of the task's ``"heuristic"`` or ``"random"`` actions over the steps."""
        return float(np.mean([self.score_action(i, s.baselines[kind])
                              for i, s in enumerate(self.steps)]))


def collect_episode(task: TaskType | str, seed: int, steps: int, num_users: int = 1000,
                    **world) -> TaskEpisode:
    task = TaskType.parse(task)
    env = oasis_v0.parallel_env(num_users=num_users, max_cycles=steps, obs_mode="text",
                                text_agents=[task.value], **world)
    env.reset(seed=seed)
    space = copy.deepcopy(env.tasks[task.value].action_space)  # the random baseline's draws
    space.seed(seed)
    collected = []
    while env.agents:
        others = {a: heuristic_action(a, env.vector_observation(a))
                  for a in env.agents if a != task.value}
        baselines = {"heuristic": heuristic_action(task.value,
                                                   env.vector_observation(task.value)),
                     "random": space.sample()}
        collected.append(TaskStep(env.text_observation(task.value), snapshot(env), others,
                                  baselines))
        env.step(others)  # the measured task's no-op
    return TaskEpisode(task, seed, collected, Counterfactual(env))


@dataclass(frozen=True)
class Evaluation:
    mean_reward: float
    parse_rate: float
    rewards: tuple[float, ...]


def evaluate(adapters, adapter: str | None, episodes: Sequence[TaskEpisode],
             task_spec: TaskSpec | None = None, batch: int = 8, seed: int = 0,
             cache_factory=None) -> Evaluation:
    """Mean counterfactual reward and parse rate of ``adapter``'s answers over every step of
    ``episodes`` (decoding as ``task_spec`` says; default the task's spec)."""
    rewards, parsed = [], 0
    for episode in episodes:
        s = task_spec or spec(episode.task)
        task = episode.scorer.scratch.tasks[episode.task.value]
        for lo in range(0, len(episode.steps), batch):
            chunk = list(range(lo, min(lo + batch, len(episode.steps))))
            requests = [s.request(adapters.tokenizer, episode.steps[i].observation, adapter)
                        for i in chunk]
            outs = generate_batch(adapters.model, adapters.tokenizer, requests, cache_factory,
                                  seed=seed + lo, multi_adapter=adapter is not None)
            for i, out in zip(chunk, outs):
                answer = s.answer(episode.steps[i].observation, out.text)
                rewards.append(episode.score(i, answer))
                parsed += _parses(task, episode.steps[i], answer)
    return Evaluation(float(np.mean(rewards)), parsed / len(rewards), tuple(rewards))


def _parses(task, step: TaskStep, answer: str) -> bool:
    """Whether the env's parser reads ``answer`` as a *complete* answer (every panel user,
    topic or weight given; nothing filled in)."""
    return task.parse(answer).complete


def evaluate_sampled(adapters, adapter: str | None, episodes: Sequence[TaskEpisode],
                     task_spec: TaskSpec, samples: int) -> Evaluation:
    """:func:`evaluate` decoding as PPO trains (:func:`as_trained`), ``samples`` answers per
    step (sampling seeds 0, 1, ...: every adapter is judged on the same random numbers)."""
    s = as_trained(task_spec)
    runs = [evaluate(adapters, adapter, episodes, s, seed=7919 * k) for k in range(samples)]
    rewards = tuple(r for run in runs for r in run.rewards)
    return Evaluation(float(np.mean(rewards)), float(np.mean([r.parse_rate for r in runs])),
                      rewards)


def as_trained(task_spec: TaskSpec) -> TaskSpec:
    """The spec decoded as PPO's rollouts are: at its temperature, 0.7 for a greedy task (a
    policy gradient needs samples), no nucleus cut."""
    s = task_spec.sampling
    return replace(task_spec, sampling=SamplingSettings(s.max_new_tokens, s.temperature or 0.7,
                                                        1.0, s.stop))


def with_temperature(task_spec: TaskSpec, temperature: float) -> TaskSpec:
    """The spec sampled at ``temperature`` (0 leaves it as it is); :func:`as_trained` and
    :func:`rollout_settings` then decode at that temperature."""
    if not temperature:
        return task_spec
    return replace(task_spec, sampling=replace(task_spec.sampling, temperature=temperature))


def rollout_settings(settings, task_spec: TaskSpec, observations: Sequence[str], tokenizer):
    """PPO ``settings`` that decode rollouts of ``observations`` as :func:`as_trained` says,
    and each observation's ``Choices`` (None: free text) for ``PPOLearner.update``: rollouts
    decode within the task's closed set as its other decodes do, within the task's token
    budget raised to the longest answer of the choices and its end."""
    sampling = as_trained(task_spec).sampling
    choices = [task_spec.choices(o) for o in observations]
    longest = max((c.max_tokens(tokenizer) + 1 for c in choices if c is not None), default=0)
    return replace(settings, max_new_tokens=max(sampling.max_new_tokens, longest),
                   temperature=sampling.temperature), choices


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` up to its first stop string, as generation cuts a completion."""
    for stop in stops:
        if stop in text:
            text = text[: text.index(stop)]
    return text


def greedy(task_spec: TaskSpec) -> TaskSpec:
    """The spec decoded greedily (evaluation without sampling noise)."""
    s = task_spec.sampling
    return replace(task_spec, sampling=SamplingSettings(s.max_new_tokens, 0.0, 1.0, s.stop))
