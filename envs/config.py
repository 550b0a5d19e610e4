"""Configuration of the simulated platform (the world), validated at construction.

Every option has a typed range (:class:`Int`, :class:`Real`, :class:`Flag`, :class:`OneOf`, from
``sandbox_rl.validation``); the world's fields carry theirs in the dataclass metadata, and the
env's own arguments use the same checkers, so a bad value of any option is one ``ValueError``
(``InvalidValue``) naming it. A world too large for
this machine is refused before it is built (:func:`check_fits_in_memory`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from sandbox_rl.envs.topics import NUM_TOPICS

# The typed ranges and ``require`` are sandbox_rl.validation's, the one module every layer
# validates with; the env's own arguments (oasis_v0) take them from here.
from sandbox_rl.validation import (MAX_QUOTED, Flag, Int, OneOf, Real, check_fields,
                                   field_checks, require, shorten)

__all__ = ["MAX_INDEX", "MAX_QUOTED", "RECOMMENDERS", "Flag", "Int", "OneOf", "PlatformConfig",
           "Real", "TopicWeights", "available_memory", "check_fits_in_memory", "memory_estimate",
           "option", "require", "shorten"]

RECOMMENDERS = ("twitter", "reddit", "random")

# Largest user or post index the arrays hold (int32 columns; edges are int64 src * n + dst).
MAX_INDEX = 2**31 - 1


@dataclass(frozen=True)
class TopicWeights:
    """None, or one finite weight > 0 per topic; normalised to a tuple summing to 1."""

    expected = "None or one finite weight > 0 per topic"

    def check(self, name: str, value: Any) -> tuple[float, ...] | None:
        return None if value is None else _topic_mix(value)


def option(default: Any, check: Int | Real | Flag | OneOf | TopicWeights) -> Any:
    """A dataclass field with its typed range."""
    return dataclasses.field(default=default, metadata={"check": check})


# ---------------------------------------------------------------------- the world
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

    num_users: int = option(1000, Int(10, MAX_INDEX))
    recsys: str = option("twitter", OneOf(RECOMMENDERS))
    feed_size: int = option(10, Int(1, 200))
    candidate_pool: int = option(512, Int(1, MAX_INDEX))
    mean_follows: float = option(20.0, Real(0, None, open_low=True))
    homophily: float = option(4.0, Real(0, None))
    pa_batches: int = option(16, Int(1, 1000))
    activation: float = option(1.0, Real(0, None, open_low=True))
    mean_activity: float = option(0.028, Real(0, 0.5, open_low=True))
    session_continue: float = option(0.3, Real(0, 1, open_high=True))
    mean_post_rate: float = option(0.08, Real(0, 1))
    event_rate: float = option(0.08, Real(0, 1))
    event_strength: float = option(1.5, Real(0, None))
    event_decay: float = option(0.8, Real(0, 1, open_high=True))
    recency_hours: float = option(6.0, Real(0, None, open_low=True))
    attach_tweets: bool = option(False, Flag())
    start_hour: int = option(8, Int(0, 23))
    topic_mix: tuple[float, ...] | None = option(None, TopicWeights())

    def __post_init__(self) -> None:
        check_fields(self, field_checks(type(self)))
        require(self.candidate_pool >= self.feed_size, "candidate_pool", self.candidate_pool,
                f"an integer >= feed_size ({self.feed_size})")
        if self.mean_follows >= self.num_users - 1:
            # Name the option the caller changed: usually num_users, set below what the default
            # graph needs.
            if self.mean_follows == _DEFAULTS["mean_follows"]:
                require(False, "num_users", self.num_users,
                        f"an integer >= {math.floor(self.mean_follows) + 2} (users follow "
                        f"mean_follows={self.mean_follows:g} others on average)")
            require(False, "mean_follows", self.mean_follows,
                    f"a number in (0, num_users - 1 = {self.num_users - 1})")

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))


_DEFAULTS = {f.name: f.default for f in fields(PlatformConfig)}


def _topic_mix(value: object) -> tuple[float, ...]:
    expected = f"{NUM_TOPICS} finite weights > 0 (one per topic)"
    try:
        weights = np.asarray(value, dtype=float)
    except (TypeError, ValueError, OverflowError):
        weights = np.zeros(0)
    with np.errstate(over="ignore", invalid="ignore"):
        total = weights.sum()
    ok = weights.shape == (NUM_TOPICS,) and bool(np.all(np.isfinite(weights))) and bool(
        np.all(weights > 0)) and bool(np.isfinite(total))
    require(ok, "topic_mix", value, expected)
    return tuple(float(w) for w in weights / weights.sum())


# ---------------------------------------------------------------------- memory
# Bytes, measured with tracemalloc (2k-100k users, 512-200k candidate posts, activation 1-20):
# building the users and the follower graph peaks at ~230 B per user plus ~35 B per user and mean
# follow, and leaves ~100 + 20 per follow; the post store holds 4 x candidate_pool rows of ~78 B;
# each step scores every active user against the pool (~16 B per pair).
_BUILD_USER, _BUILD_FOLLOW, _USER, _FOLLOW, _POST_ROW, _PAIR = 230, 35, 100, 20, 78, 16
# The busiest step: the busiest hour's organic activity was 1.26-1.27x the steady state over two
# days of 20k-user worlds, and a campaign at full intensity lifts up to CAMPAIGN_BOOST[-1] of its
# segment. The largest segment of 30 drawn worlds held 14-47% of the users (median 27%); 35% is
# used, so a campaign on the largest segments of the rarest worlds can exceed the estimate by ~1.2x.
_PEAK_HOUR, _LARGE_SEGMENT = 1.3, 0.35


def memory_estimate(config: PlatformConfig) -> dict[str, float]:
    """Bytes a world needs at its peak (building it, or its busiest step: the busiest hour with
    a full-intensity campaign on a large segment), by the option that drives each part:
    ``num_users`` (users and graph) and ``candidate_pool`` (posts), with the feeds (active users
    x candidate posts) on whichever is further above its default."""
    from sandbox_rl.envs.platform import CAMPAIGN_BOOST  # here: platform imports this module

    n, follows = float(config.num_users), config.mean_follows
    posts = 4.0 * config.candidate_pool * _POST_ROW
    build = {"num_users": n * (_BUILD_USER + _BUILD_FOLLOW * follows), "candidate_pool": posts}
    # Steady state of "active now": p for users offline last step, max(p, floor) for the rest.
    p = min(0.95, config.mean_activity * config.activation)
    steady = p / (1 - max(p, config.session_continue) + p)
    active = min(0.95, _PEAK_HOUR * steady + float(CAMPAIGN_BOOST[-1]) * _LARGE_SEGMENT)
    run = {"num_users": n * (_USER + _FOLLOW * follows), "candidate_pool": posts}
    feeds_by = ("candidate_pool" if config.candidate_pool / _DEFAULTS["candidate_pool"]
                >= config.num_users / _DEFAULTS["num_users"] else "num_users")
    run[feeds_by] += active * n * config.candidate_pool * _PAIR
    return max(build, run, key=lambda parts: sum(parts.values()))


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (psutil, else /proc/meminfo), or None."""
    try:
        import psutil  # optional (not a dependency): /proc/meminfo is the fallback
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_fits_in_memory(config: PlatformConfig) -> None:
    """ValueError naming the option that drives the world's size, if the world's estimated
    peak memory exceeds what this machine has available (no check where that is unknown)."""
    available = available_memory()
    if available is None:
        return
    parts = memory_estimate(config)
    needed = sum(parts.values())
    if needed > available:
        name = max(parts, key=parts.get)
        require(False, name, getattr(config, name),
                f"a world that fits in memory: num_users={config.num_users}, "
                f"candidate_pool={config.candidate_pool} and mean_follows="
                f"{config.mean_follows:g} need about {_size(needed)}, and {_size(available)} "
                "is available")


def _size(n: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n / 2**20:.2f} MiB"
