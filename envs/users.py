"""Simulated users as arrays: interests, daily rhythm, dispositions and observed behaviour."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Peak hours of the chronotypes (morning, lunch, evening, night owl) and how common each is.
_PEAKS = np.array([9, 13, 20, 23])
_PEAK_WEIGHTS = np.array([0.25, 0.2, 0.4, 0.15])


@dataclass
class Users:
    """Per-user arrays; row ``u`` is user ``u``.

    ``interests`` rows are distributions over topics; ``activity[u, h]`` is the probability that
    ``u`` is active in hour ``h``; the ``*_steps`` counters are the behaviour an observer could
    have logged (steps active, steps with a positive / negative engagement, steps with a post).
    """

    interests: np.ndarray  # [N, T] float32, rows sum to 1
    interest_unit: np.ndarray  # [N, T] float32, the same rows scaled to unit norm
    activity: np.ndarray  # [N, 24] float32
    post_rate: np.ndarray  # [N] float32
    engagement: np.ndarray  # [N] float32, log-odds offset of engaging
    positivity: np.ndarray  # [N] float32 in [-1, 1]
    segment: np.ndarray  # [N] int16, the user's top interest
    fatigue: np.ndarray  # [N] float32 in [0, 1], from engagement campaigns
    active_steps: np.ndarray  # [N] int32
    positive_steps: np.ndarray  # [N] int32
    negative_steps: np.ndarray  # [N] int32
    post_steps: np.ndarray  # [N] int32

    @property
    def count(self) -> int:
        return self.interests.shape[0]


def generate_users(n: int, num_topics: int, mean_activity: float, mean_post_rate: float,
                   rng: np.random.Generator) -> Users:
    """Draw ``n`` users: sparse Dirichlet interests and a circadian activity profile each.

    Topics differ in overall popularity (drawn per world), so the volume ranking of topics is
    persistent enough to be predicted, and moved by trend events.
    """
    popularity = rng.dirichlet(np.full(num_topics, 2.0))
    interests = rng.dirichlet(0.3 * num_topics * popularity, n).astype(np.float32)
    interests = np.maximum(interests, 1e-4)
    interests /= interests.sum(axis=1, keepdims=True)
    peak = rng.choice(_PEAKS, n, p=_PEAK_WEIGHTS) + rng.normal(0, 1.5, n)
    hours = np.arange(24)
    rhythm = np.exp(1.2 * np.cos(2 * np.pi * (hours[None, :] - peak[:, None]) / 24))
    rhythm /= rhythm.mean(axis=1, keepdims=True)
    base = mean_activity * rng.lognormal(-0.125, 0.5, n)
    activity = np.clip(base[:, None] * rhythm, 0.0, 0.9).astype(np.float32)
    rate = mean_post_rate * rng.lognormal(-0.32, 0.8, n)
    zeros = np.zeros(n, dtype=np.int32)
    return Users(
        interests=interests,
        interest_unit=interests / np.linalg.norm(interests, axis=1, keepdims=True),
        activity=activity,
        post_rate=np.clip(rate, 0, 1).astype(np.float32),
        engagement=rng.normal(0, 0.5, n).astype(np.float32),
        positivity=np.clip(rng.normal(0.2, 0.35, n), -1, 1).astype(np.float32),
        segment=interests.argmax(axis=1).astype(np.int16),
        fatigue=np.zeros(n, dtype=np.float32),
        active_steps=zeros,
        positive_steps=zeros.copy(),
        negative_steps=zeros.copy(),
        post_steps=zeros.copy(),
    )
