"""Heuristic baseline policies, one per task, acting on the vector observations.

They are the default players of the roles a learner does not take, and the bar a learned policy
should clear. Each reads only its agent's observation (no privileged access to the platform).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from sandbox_rl.enums import TaskType
from sandbox_rl.envs.platform import BEHAVIOURS, CAMPAIGN_ANNOY, CAMPAIGN_BOOST
from sandbox_rl.envs.topics import NUM_TOPICS

T = NUM_TOPICS
# Interest-led ranking with some freshness and social signal; found by comparing a few settings.
TUNED_WEIGHTS = np.array([1.0, 0.3, 0.2, 0.3], dtype=np.float32)
# Expected fraction of campaign-activated users who then engage (what the env usually shows).
ENGAGED_IF_ACTIVATED = 0.85


def content_generation(obs: np.ndarray) -> np.ndarray:
    """Post on the topic the audience likes most, favouring rising topics, in a positive tone."""
    audience, momentum = obs[:T], obs[2 * T:3 * T]
    return np.array([int(np.argmax(audience * (1 + 4 * np.maximum(momentum, 0)))), 2])


def behavior_analysis(obs: np.ndarray) -> np.ndarray:
    """The most likely class per panel user from its activation probability and history."""
    rows = obs.reshape(-1, 6)
    p, pos, neg, post = rows[:, 0], rows[:, 2], rows[:, 3], rows[:, 4]
    probs = np.stack([
        1 - p,
        p * (1 - post) * (1 - pos) * (1 - neg),
        p * (1 - post) * pos,
        p * (1 - post) * (1 - pos) * neg,
        p * post,
    ], axis=1)
    assert probs.shape[1] == len(BEHAVIOURS)
    return np.argmax(probs, axis=1)


def network_optimization(obs: np.ndarray) -> np.ndarray:
    return TUNED_WEIGHTS.copy()


def trend_prediction(obs: np.ndarray) -> np.ndarray:
    """Exponentially weighted mean of the past shares (newest weighs most).

    Smoothing beats extrapolating the last change: a step's volumes are noisy and topic
    popularity is persistent, with trend events decaying over several hours.
    """
    history = (obs.size - 2) // T
    shares = obs[: history * T].reshape(history, T)
    weights = 0.6 ** np.arange(history)
    return np.clip(weights @ shares / weights.sum(), 0, 1).astype(np.float32)


def user_engagement(obs: np.ndarray) -> np.ndarray:
    """The (segment, intensity) with the best expected net lift; no campaign if none pays."""
    fatigue, p = obs[T:2 * T], obs[2 * T:3 * T] / 5
    lift = CAMPAIGN_BOOST[None, :] * (1 - fatigue[:, None]) * (1 - p[:, None]) * ENGAGED_IF_ACTIVATED
    net = lift - CAMPAIGN_ANNOY[None, :] * (0.5 + fatigue[:, None]) * (1 + ENGAGED_IF_ACTIVATED)
    seg, level = np.unravel_index(np.argmax(net), net.shape)
    return np.array([seg, level]) if net[seg, level] > 0 else np.array([0, 0])


HEURISTICS: dict[TaskType, Callable[[np.ndarray], np.ndarray]] = {
    TaskType.CONTENT_GENERATION: content_generation,
    TaskType.BEHAVIOR_ANALYSIS: behavior_analysis,
    TaskType.NETWORK_OPTIMIZATION: network_optimization,
    TaskType.TREND_PREDICTION: trend_prediction,
    TaskType.USER_ENGAGEMENT: user_engagement,
}


def heuristic_action(agent: str, obs: np.ndarray) -> np.ndarray:
    """The heuristic action of ``agent`` (a TaskType value) for its vector observation."""
    return HEURISTICS[TaskType.parse(agent)](np.asarray(obs))


class HeuristicPolicy:
    """All five heuristics as one multi-agent policy: ``policy(observations) -> actions``.

    It returns structured (vector-mode) actions. In the text mode it reads each agent's vector
    observation from ``env.vector_observation(agent)``, so its actions suit envs that accept
    structured actions (the vector-mode env, or the other roles of the Gymnasium env).
    """

    def __init__(self, env) -> None:
        self.env = env

    def __call__(self, observations: dict) -> dict:
        return {a: heuristic_action(a, self.env.vector_observation(a)) for a in observations}
