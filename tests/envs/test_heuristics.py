"""The heuristic baselines beat random play on every task: each reward measures its task."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from sandbox_rl.enums import TaskType
from sandbox_rl.envs import oasis_v0
from sandbox_rl.envs.baselines import mean_episode_rewards
from sandbox_rl.envs.heuristics import HeuristicPolicy, heuristic_action

SEEDS = (0, 1)
# Measured on the default twitter world, 1000 users, 100 steps, mean of seeds 0 and 1
# with the action-space seeds below, heuristic vs random: content 0.256 vs 0.043, behaviour 0.919
# vs 0.186, network 0.658 vs 0.579, trend 0.849 vs 0.513, engagement 0.685 vs 0.589. The margins
# asked for are about half of the measured gaps. (The behaviour heuristic predicts "inactive" for
# every panel user on this world, so its margin is the class prior's, not a model's.)
MARGINS = {
    TaskType.CONTENT_GENERATION.value: 0.10,
    TaskType.BEHAVIOR_ANALYSIS.value: 0.40,
    TaskType.NETWORK_OPTIMIZATION.value: 0.035,
    TaskType.TREND_PREDICTION.value: 0.15,
    TaskType.USER_ENGAGEMENT.value: 0.05,
}


@lru_cache(maxsize=None)
def _mean_rewards(policy: str, seed: int) -> dict[str, float]:
    return mean_episode_rewards(oasis_v0.parallel_env(num_users=1000, max_cycles=100), policy, seed)


def _mean_over_seeds(policy: str, agent: str) -> float:
    return float(np.mean([_mean_rewards(policy, s)[agent] for s in SEEDS]))


@pytest.mark.parametrize("agent", list(MARGINS))
def test_heuristic_beats_random(agent: str) -> None:
    heuristic, random = _mean_over_seeds("heuristic", agent), _mean_over_seeds("random", agent)
    assert heuristic > random + MARGINS[agent], (heuristic, random)
    for seed in SEEDS:  # not only on average: on each world
        assert _mean_rewards("heuristic", seed)[agent] > _mean_rewards("random", seed)[agent]


@pytest.mark.parametrize("agent", list(MARGINS))
def test_heuristic_actions_are_valid(agent: str) -> None:
    env = oasis_v0.parallel_env(num_users=200, candidate_pool=128, max_cycles=10)
    env.reset(seed=0)
    for _ in range(5):
        action = heuristic_action(agent, env.vector_observation(agent))
        space = env.action_space(agent)
        assert space.contains(np.asarray(action, dtype=space.dtype))
        env.step(HeuristicPolicy(env)({a: None for a in env.agents}))
