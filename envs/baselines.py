"""Baseline policies and the episode evaluation shared by tests, benchmarks and the CLI."""

from __future__ import annotations

from typing import Callable

from sandbox_rl.envs.heuristics import HeuristicPolicy

Policy = Callable[[dict], dict]


class RandomPolicy:
    """Uniformly random actions from each agent's action space, seeded per agent."""

    def __init__(self, env, seed: int = 0) -> None:
        self.env = env
        for i, agent in enumerate(env.possible_agents):
            env.action_space(agent).seed(1000 * seed + i)

    def __call__(self, observations: dict) -> dict:
        return {a: self.env.action_space(a).sample() for a in observations}


def make_policy(kind: str, env, seed: int = 0) -> Policy:
    """``"heuristic"`` or ``"random"``; a ValueError names any other kind."""
    match kind:
        case "heuristic":
            return HeuristicPolicy(env)
        case "random":
            return RandomPolicy(env, seed)
    raise ValueError(f"unknown policy kind {kind!r}; expected 'heuristic' or 'random'")


def mean_episode_rewards(env, policy: Policy | str, seed: int) -> dict[str, float]:
    """Run one episode from ``reset(seed)``; each agent's mean reward per step."""
    observations, _ = env.reset(seed=seed)
    if isinstance(policy, str):
        policy = make_policy(policy, env, seed)
    totals = dict.fromkeys(env.possible_agents, 0.0)
    steps = 0
    while env.agents:
        observations, rewards, *_ = env.step(policy(observations))
        steps += 1
        for agent, r in rewards.items():
            totals[agent] += r
    return {a: v / max(steps, 1) for a, v in totals.items()}
