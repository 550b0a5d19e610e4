"""Simulated users as arrays: interests, daily rhythm, dispositions and observed behaviour."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np

from sandbox_rl.envs.state import ArraySpec

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

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every array, by field name (aliases, not copies)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray]) -> "Users":
        """Users from a checked :meth:`state_dict` (arrays are copied)."""
        return cls(**{f.name: arrays[f.name].copy() for f in fields(cls)})


def users_state_spec() -> dict[str, ArraySpec]:
    """The arrays of :meth:`Users.state_dict` for ``N`` users and ``T`` topics."""
    f32 = ("float32", ("N",))
    return {
        "interests": ArraySpec("float32", ("N", "T")),
        "interest_unit": ArraySpec("float32", ("N", "T")),
        "activity": ArraySpec("float32", ("N", 24)),
        "post_rate": ArraySpec(*f32), "engagement": ArraySpec(*f32),
        "positivity": ArraySpec(*f32), "fatigue": ArraySpec(*f32),
        "segment": ArraySpec("int16", ("N",), 0, "T"),
        **{name: ArraySpec("int32", ("N",), 0) for name in
           ("active_steps", "positive_steps", "negative_steps", "post_steps")},
    }


def generate_users(n: int, num_topics: int, mean_activity: float, mean_post_rate: float,
                   rng: np.random.Generator, topic_mix: Sequence[float] | None = None) -> Users:
    """Draw ``n`` users: sparse Dirichlet interests and a circadian activity profile each.

    Topics differ in overall popularity (drawn per world), so the volume ranking of topics is
    persistent enough to be predicted, and moved by trend events. ``topic_mix`` fixes that
    popularity instead.
    """
    if topic_mix is None:
        popularity = rng.dirichlet(np.full(num_topics, 2.0))
    else:
        popularity = np.asarray(topic_mix, dtype=float)
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
