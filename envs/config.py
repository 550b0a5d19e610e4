"""Configuration of the simulated platform (the world), validated at construction."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

RECOMMENDERS = ("twitter", "reddit", "random")


@dataclass(frozen=True)
class PlatformConfig:
    """Parameters of the world. Every field is checked in ``__post_init__``.

    Attributes:
        num_users: simulated users (the brand account of the content agent is one of them).
        recsys: feed recommender: ``twitter`` (interest x recency x popularity x following),
            ``reddit`` (hot score) or ``random``.
        feed_size: posts shown to each active user per step.
        candidate_pool: most recent posts a recommender ranks for each feed.
        mean_follows: mean out-degree of the generated follower graph.
        homophily: strength of interest similarity when choosing whom to follow (0 = none).
        pa_batches: arrival rounds of the batched preferential-attachment generator.
        activation: scale of every user's 24 hourly activation probabilities.
        mean_activity: mean hourly activation probability before ``activation`` scaling.
        session_continue: probability floor that a user active in a step stays active in the
            next (sessions outlast an hour); with the defaults about 4% of users are active.
        mean_post_rate: mean probability that an active user writes a post in a step.
        event_rate: probability per step that an exogenous event makes a topic trend.
        event_strength: boost an event adds to its topic.
        event_decay: per-step decay of topic boosts.
        recency_hours: time constant of the recency term of the recommenders.
        attach_tweets: give simulated posts a real tweet of their topic as text.
        start_hour: hour of day of step 0.
        topic_mix: overall popularity of each topic (one weight per topic of
            ``envs/topics.py``, in its order; normalised to sum 1), or None to draw it per world
            from the seed. Fixing it shifts what users are interested in, and so what they post
            and what trends: a "new topic mix" scenario.
    """

    num_users: int = 1000
    recsys: str = "twitter"
    feed_size: int = 10
    candidate_pool: int = 512
    mean_follows: float = 20.0
    homophily: float = 4.0
    pa_batches: int = 16
    activation: float = 1.0
    mean_activity: float = 0.028
    session_continue: float = 0.3
    mean_post_rate: float = 0.08
    event_rate: float = 0.08
    event_strength: float = 1.5
    event_decay: float = 0.8
    recency_hours: float = 6.0
    attach_tweets: bool = False
    start_hour: int = 8
    topic_mix: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.topic_mix is not None:
            object.__setattr__(self, "topic_mix", _topic_mix(self.topic_mix))
        require(self.num_users >= 10, "num_users", self.num_users, "an integer >= 10")
        require(self.recsys in RECOMMENDERS, "recsys", self.recsys, f"one of {RECOMMENDERS}")
        require(1 <= self.feed_size <= 200, "feed_size", self.feed_size, "in [1, 200]")
        require(self.candidate_pool >= self.feed_size, "candidate_pool", self.candidate_pool,
               ">= feed_size")
        require(0 < self.mean_follows < self.num_users - 1, "mean_follows", self.mean_follows,
               "in (0, num_users - 1)")
        require(self.homophily >= 0, "homophily", self.homophily, ">= 0")
        require(1 <= self.pa_batches <= 1000, "pa_batches", self.pa_batches, "in [1, 1000]")
        require(self.activation > 0, "activation", self.activation, "> 0")
        require(0 < self.mean_activity <= 0.5, "mean_activity", self.mean_activity, "in (0, 0.5]")
        require(0 <= self.session_continue < 1, "session_continue", self.session_continue,
               "in [0, 1)")
        require(0 <= self.mean_post_rate <= 1, "mean_post_rate", self.mean_post_rate, "in [0, 1]")
        require(0 <= self.event_rate <= 1, "event_rate", self.event_rate, "in [0, 1]")
        require(self.event_strength >= 0, "event_strength", self.event_strength, ">= 0")
        require(0 <= self.event_decay < 1, "event_decay", self.event_decay, "in [0, 1)")
        require(self.recency_hours > 0, "recency_hours", self.recency_hours, "> 0")
        require(0 <= self.start_hour < 24, "start_hour", self.start_hour, "in [0, 24)")

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))


def _topic_mix(value: object) -> tuple[float, ...]:
    from sandbox_rl.envs.topics import NUM_TOPICS

    expected = f"{NUM_TOPICS} finite weights > 0 (one per topic)"
    try:
        weights = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        weights = np.zeros(0)
    ok = weights.shape == (NUM_TOPICS,) and bool(np.all(np.isfinite(weights))) and bool(
        np.all(weights > 0))
    require(ok, "topic_mix", value, expected)
    return tuple(float(w) for w in weights / weights.sum())


def require(ok: bool, name: str, value: object, expected: str) -> None:
    """Raise ValueError naming the option when ``ok`` is false."""
    if not ok:
        raise ValueError(f"invalid {name}={value!r}: expected {expected}")
