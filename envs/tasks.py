"""The five task agents: observation, action, reward and text format of each role.

Each task is an object with fixed spaces, a little state (e.g. the behaviour panel) and four
methods: ``observe`` (vector observation of the platform after the last step), ``decide`` (its
part of the next :class:`StepPlan`), ``reward`` (computed from what the simulated users did in
that step) and, for the text mode, ``render`` / ``parse``. Rewards are defined exactly in the
env docstring (``oasis_v0``) and in each class docstring here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from gymnasium import spaces
from scipy.stats import rankdata

from sandbox_rl.enums import TaskType
from sandbox_rl.envs.heuristics import trend_prediction as trend_heuristic
from sandbox_rl.envs.platform import (BEHAVIOURS, CAMPAIGN_BOOST, AgentPost, Campaign,
                                      Platform, StepOutcome)
from sandbox_rl.envs.recsys import WEIGHT_NAMES
from sandbox_rl.envs.state import ArraySpec, check_arrays, check_float, check_keys
from sandbox_rl.envs.topics import NUM_TOPICS, TOPIC_NAMES

T = NUM_TOPICS
TONES = ("negative", "neutral", "positive")
TONE_SENTIMENT = (-0.6, 0.0, 0.6)
INTENSITIES = ("none", "low", "medium", "high")


@dataclass(frozen=True)
class Parsed:
    """A text action parsed into a structured one; ``action is None`` means the no-op.

    ``reason`` says what was missing: the no-op's cause, or the part of an incomplete answer
    that was filled in (a panel user not predicted, a topic not ranked, ...)."""

    action: Any
    reason: str = ""

    @property
    def complete(self) -> bool:
        """Whether the answer gave everything the task asks for (nothing filled in)."""
        return self.action is not None and not self.reason


def _hour_features(hour: int) -> list[float]:
    angle = 2 * np.pi * hour / 24
    return [float(np.sin(angle)), float(np.cos(angle))]


def _box(size: int) -> spaces.Box:
    return spaces.Box(-1.0, 1.0, shape=(size,), dtype=np.float32)


def _shares(volume: np.ndarray) -> np.ndarray:
    total = volume.sum()
    return volume / total if total > 0 else np.full(volume.shape, 1.0 / volume.size)


def _find_topics(text: str) -> list[int]:
    """Topic indices in order of first mention in ``text``."""
    lowered = text.lower()
    found = [(m.start(), i) for i, name in enumerate(TOPIC_NAMES)
             if (m := re.search(rf"\b{name}\b", lowered))]
    return [i for _, i in sorted(found)]


def _percent_list(values: np.ndarray) -> str:
    order = np.argsort(-values, kind="stable")
    return ", ".join(f"{TOPIC_NAMES[i]} {100 * values[i]:.0f}%" for i in order)


class Task:
    """Base class; subclasses set ``task``, ``observation_space`` and ``action_space``."""

    task: TaskType
    observation_space: spaces.Box
    action_space: spaces.Space

    def reset(self, platform: Platform, rng: np.random.Generator) -> None:
        """Start of an episode."""

    def observe(self, platform: Platform) -> np.ndarray:
        raise NotImplementedError

    def decide(self, action: Any, plan: dict) -> None:
        """Write this task's part of the step plan; ``action is None`` is the no-op."""

    def reward(self, action: Any, outcome: StepOutcome, platform: Platform) -> float:
        raise NotImplementedError

    def render(self, obs: np.ndarray, platform: Platform) -> str:
        raise NotImplementedError

    def parse(self, text: str) -> Parsed:
        raise NotImplementedError

    def format_action(self, action: Any) -> str:
        """A structured action written as a complete text answer that :meth:`parse` reads
        back to it (for a post: a short post on its topic and tone)."""
        raise NotImplementedError

    # State for saving and restoring an env: scalars (JSON) and arrays. Subclasses with state
    # override all three; ``dims`` binds N (users), T (topics), K (panel size), H (history).
    def state_dict(self) -> tuple[dict, dict[str, np.ndarray]]:
        """The task's own state; arrays alias the task's (copy to keep them)."""
        return {}, {}

    def check_state(self, meta: Any, arrays: dict, dims: dict[str, int], where: str) -> None:
        """ValueError naming what in ``(meta, arrays)`` this task could not load."""
        check_keys(meta, (), where.rstrip("."))
        check_arrays(arrays, {}, dims, where)

    def load_state_dict(self, meta: dict, arrays: dict, rng: np.random.Generator) -> None:
        """Set the state :meth:`check_state` accepted (arrays copied); ``rng`` is the env's."""


class ContentGeneration(Task):
    """Writes the brand account's post each step.

    Observation (3T + 4): the brand's followers' mean interest over topics; the topic shares of
    the last step's volume; their change since the step before; sin and cos of the hour;
    log10(followers + 1) / 7; the last reward.
    Action: MultiDiscrete([T, 3]): topic and tone (negative, neutral, positive). In text mode the
    post text itself, mapped to topics by the sentence-embedding model and to sentiment by VADER.
    Reward: among the impressions of the post in the step, (impressions with a like, repost,
    quote or comment - impressions with a dislike) / impressions, clipped to [0, 1]; 0 when the
    post had no impression or no post was made (the no-op).
    """

    task = TaskType.CONTENT_GENERATION

    def __init__(self, analyzer: Callable[[], Any] | None = None) -> None:
        self.observation_space = _box(3 * T + 4)
        self.action_space = spaces.MultiDiscrete([T, len(TONES)])
        self._analyzer = analyzer
        self._last_reward = 0.0
        self._prev_shares = np.full(T, 1.0 / T)
        self._followers = np.empty(0, dtype=np.int64)

    def reset(self, platform, rng):
        self._last_reward = 0.0
        self._prev_shares = np.full(T, 1.0 / T)
        self._followers = platform.graph.followers_of(platform.brand)

    def state_dict(self):
        return ({"last_reward": self._last_reward},
                {"prev_shares": self._prev_shares, "followers": self._followers})

    def check_state(self, meta, arrays, dims, where):
        check_keys(meta, ("last_reward",), where.rstrip("."))
        check_float(meta["last_reward"], where + "last_reward", 0.0, 1.0)
        # The shares are float64 until the first step with volume, float32 after: both occur.
        check_arrays(arrays, {"prev_shares": ArraySpec("float32|float64", ("T",)),
                              "followers": ArraySpec("int64", ("F",), 0, "N")}, dims, where)

    def load_state_dict(self, meta, arrays, rng):
        self._last_reward = float(meta["last_reward"])
        self._prev_shares = arrays["prev_shares"].copy()
        self._followers = arrays["followers"].copy()

    def observe(self, platform):
        o, n, brand = platform.last, platform.config.num_users, platform.brand
        if o is not None:  # keep the brand's follower list current without rescanning the graph
            gained = o.follows[o.follows % n == brand] // n
            lost = o.unfollows[o.unfollows % n == brand] // n
            self._followers = np.union1d(np.setdiff1d(self._followers, lost), gained)
        followers = self._followers
        audience = (platform.users.interests[followers].mean(axis=0) if followers.size
                    else np.full(T, 1.0 / T))
        vol = platform.last.topic_volume if platform.last is not None else np.zeros(T)
        shares = _shares(vol)
        momentum = shares - self._prev_shares
        self._prev_shares = shares
        tail = [*_hour_features(platform.hour), np.log10(followers.size + 1) / 7, self._last_reward]
        return np.concatenate((audience, shares, momentum, tail)).astype(np.float32)

    def decide(self, action, plan):
        if action is None:
            return
        if isinstance(action, AgentPost):
            plan["post"] = action
            return
        topic, tone = int(action[0]), int(action[1])
        dist = np.full(T, 0.15 / T, dtype=np.float32)
        dist[topic] += 0.85
        plan["post"] = AgentPost(dist, TONE_SENTIMENT[tone])

    def reward(self, action, outcome, platform):
        r = 0.0
        if outcome.agent_post >= 0:
            mine = outcome.shown == outcome.agent_post
            if mine.any():
                pos = outcome.positive()[mine].sum()
                neg = outcome.actions["dislikes"][mine].sum()
                r = float(np.clip((pos - neg) / mine.sum(), 0.0, 1.0))
        self._last_reward = r
        return r

    def render(self, obs, platform):
        audience, shares, momentum = obs[:T], obs[T:2 * T], obs[2 * T:3 * T]
        rising = [TOPIC_NAMES[i] for i in np.argsort(-momentum, kind="stable")[:3] if momentum[i] > 0]
        followers = int(round(10 ** (obs[3 * T + 2] * 7))) - 1
        return (
            f"You run a brand account with {followers} followers on a social platform. "
            f"Hour of day: {platform.hour}:00.\n"
            f"Your followers' interests: {_percent_list(audience)}.\n"
            f"What people posted about in the last hour: {_percent_list(shares)}.\n"
            f"Rising topics: {', '.join(rising) or 'none'}.\n"
            "Write one short post (under 280 characters) that your followers will like and share. "
            "Reply with the post text only."
        )

    def parse(self, text):
        post = text.strip().strip('"').strip()[:280]
        if not post:
            return Parsed(None, "empty post")
        if self._analyzer is None:
            return Parsed(None, "no text analyser available for post text")
        features = self._analyzer().analyze([post])
        return Parsed(AgentPost(features.topic_dist[0], float(features.sentiment[0]), post))

    def format_action(self, action):
        topic, tone = TOPIC_NAMES[int(action[0])], TONES[int(action[1])]
        return _POST_TEMPLATES[tone].format(topic=topic, Topic=topic.capitalize())


# The text of a (topic, tone) post: the topic's name, three times, carries the topic through the
# sentence embedding (9 of 10 topics come back as the argmax; business reads as lifestyle) and
# the wording carries the tone through VADER.
_POST_TEMPLATES = {
    "negative": "{topic} news: {Topic} fans, this {topic} story is a real disappointment.",
    "neutral": "{topic} news: {Topic} fans, here is today's {topic} story.",
    "positive": "{topic} news: {Topic} fans, this {topic} story is great, love it!",
}


class BehaviorAnalysis(Task):
    """Predicts what each user of a panel will do in the coming step.

    The panel: ``panel_size`` users drawn each step among the users online in the last step
    (they stay online with probability ``session_continue`` or more); when too few were online,
    the rest is drawn among 1024 random users with probability proportional to their
    activation probability (Gumbel top-k).
    Observation (6 per panel user): activation probability for the coming hour; fraction of
    past steps active; of active steps, the fractions with a positive engagement, a negative one
    (dislike, unfollow, mute) and a post; campaign fatigue.
    Action: MultiDiscrete([5] * panel_size), a class of ``BEHAVIOURS`` per panel user
    (inactive, lurk, positive, negative, post; a post outranks positive, which outranks negative).
    Reward: the fraction of panel users whose class was predicted correctly (the no-op, or a user
    a text answer leaves out, counts as wrong).
    """

    task = TaskType.BEHAVIOR_ANALYSIS
    FEATURES = 6

    def __init__(self, panel_size: int = 8) -> None:
        self.panel_size = panel_size
        self.observation_space = spaces.Box(0.0, 1.0, shape=(panel_size * self.FEATURES,),
                                            dtype=np.float32)
        self.action_space = spaces.MultiDiscrete([len(BEHAVIOURS)] * panel_size)
        self.panel = np.zeros(panel_size, dtype=np.int64)
        self._rng: np.random.Generator | None = None

    def reset(self, platform, rng):
        self._rng = rng

    def state_dict(self):
        return {}, {"panel": self.panel}

    def check_state(self, meta, arrays, dims, where):
        check_keys(meta, (), where.rstrip("."))
        check_arrays(arrays, {"panel": ArraySpec("int64", ("K",), 0, "N")}, dims, where)

    def load_state_dict(self, meta, arrays, rng):
        self.panel = arrays["panel"].copy()
        self._rng = rng

    def observe(self, platform):
        self.panel = self._draw_panel(platform)
        u, users = platform.users, self.panel
        active = np.maximum(u.active_steps[users], 1)
        feats = np.stack([
            platform.activation_probability(users),
            u.active_steps[users] / max(platform.t, 1),
            u.positive_steps[users] / active,
            u.negative_steps[users] / active,
            u.post_steps[users] / active,
            u.fatigue[users],
        ], axis=1)
        return np.clip(feats, 0, 1).astype(np.float32).ravel()

    def _draw_panel(self, platform: Platform) -> np.ndarray:
        n, k, rng = platform.config.num_users, self.panel_size, self._rng
        online = platform.online
        if online.size >= k:
            return rng.choice(online, size=k, replace=False)
        cand = rng.choice(n, size=min(n, 1024), replace=False)
        cand = cand[~np.isin(cand, online)]
        key = np.log(platform.activation_probability(cand) + 1e-9) + rng.gumbel(size=cand.size)
        return np.concatenate((online, cand[np.argsort(-key, kind="stable")[: k - online.size]]))

    def reward(self, action, outcome, platform):
        if action is None:
            return 0.0
        truth = outcome.behaviour[self.panel]
        return float(np.mean(np.asarray(action) == truth))

    def render(self, obs, platform):
        rows = obs.reshape(self.panel_size, self.FEATURES)
        # Users are numbered 1..K in panel order (their platform ids would only be noise to
        # copy); the answer is one class per line in the same order.
        lines = [
            f"{k}. next {100 * r[0]:.0f}%, online {100 * r[1]:.0f}%, positive {100 * r[2]:.0f}%, "
            f"negative {100 * r[3]:.0f}%, posts {100 * r[4]:.0f}%, fatigue {r[5]:.1f}"
            for k, r in enumerate(rows, start=1)
        ]
        return (
            f"Predict what each user will do in the next hour ({platform.hour}:00). Classes: "
            "inactive, lurk (online, no reaction), positive (like, share or comment), "
            "negative (dislike, unfollow or mute), post (writes a post).\n"
            "Per user: chance to be online next hour; share of past hours online; of those, "
            "shares with a positive reaction, a negative one, a post; notification fatigue.\n"
            + "\n".join(lines)
            + f"\nAnswer {self.panel_size} lines, one class per user in the order above."
        )

    def parse(self, text):
        # A line counts only if it is a class alone (optionally numbered): a copied prompt row
        # ("1. next 6%, online 0%, positive 0%, negative 0%, ...") names classes but answers
        # nothing.
        found = [m.group(1) for line in text.lower().splitlines()
                 if (m := _CLASS_LINE.match(line))]
        if not found:
            return Parsed(None, "no line with a class (inactive, lurk, positive, negative, post)")
        pred = np.full(self.panel_size, -1)
        given = [BEHAVIOURS.index(c) for c in found[: self.panel_size]]
        pred[: len(given)] = given
        missing = self.panel_size - len(given)
        return Parsed(pred, f"{missing} panel users not predicted" if missing else "")

    def format_action(self, action):
        return "\n".join(BEHAVIOURS[int(c)] for c in action)


_CLASS_LINE = re.compile(r"\s*(?:(?:user\s*)?#?\d+\s*[.:)=\-]*\s*)?"
                         r"(inactive|lurk|positive|negative|post)\s*[.,;]?\s*$")


class NetworkOptimization(Task):
    """Sets the recommender's weights (interest, recency, popularity, following).

    Observation (13): the current weights; the last step's positive-engagement rate and dislike
    rate per impression; the mean interest similarity, recency and in-network share of what was
    shown; the active fraction of users; impressions per active user / feed size; sin and cos of
    the hour.
    Action: Box(0, 1, (4,)), the weights for the coming step.
    Reward: (1 + net engagement) / 2, where net engagement is (impressions with a like, repost,
    quote or comment - impressions with a dislike) / all impressions of the step (0 without
    impressions); in [0, 1], and unclipped so feeds that annoy more than they please still rank.
    The no-op keeps the current weights.
    """

    task = TaskType.NETWORK_OPTIMIZATION

    def __init__(self) -> None:
        self.observation_space = _box(13)
        self.action_space = spaces.Box(0.0, 1.0, shape=(len(WEIGHT_NAMES),), dtype=np.float32)
        self.weights = np.zeros(len(WEIGHT_NAMES), dtype=np.float32)

    def state_dict(self):
        return {}, {"weights": self.weights}

    def check_state(self, meta, arrays, dims, where):
        check_keys(meta, (), where.rstrip("."))
        check_arrays(arrays, {"weights": ArraySpec("float32", (len(WEIGHT_NAMES),))}, dims, where)

    def load_state_dict(self, meta, arrays, rng):
        self.weights = arrays["weights"].copy()

    def observe(self, platform):
        o = platform.last
        self.weights = platform.weights.copy()
        shown = np.zeros(5)
        if o is not None and o.impressions:
            age = platform.t - 1 - platform.posts.column("created")[o.shown]
            shown = np.array([
                o.positive().mean(), o.actions["dislikes"].mean(), o.match.mean(),
                np.exp(-age / platform.config.recency_hours).mean(), o.in_network.mean()])
        active = o.active.size / platform.config.num_users if o is not None else 0.0
        per_user = o.impressions / max(o.active.size, 1) / platform.config.feed_size if o else 0.0
        return np.concatenate((np.clip(self.weights, 0, 1), shown, [active, per_user],
                               _hour_features(platform.hour))).astype(np.float32)

    def decide(self, action, plan):
        if action is not None:
            plan["recsys_weights"] = np.clip(np.asarray(action, dtype=np.float32), 0, 1)

    def reward(self, action, outcome, platform):
        if not outcome.impressions:
            return 0.0
        net = outcome.positive().mean() - outcome.actions["dislikes"].mean()
        return float((1.0 + net) / 2.0)

    def render(self, obs, platform):
        w = ", ".join(f"{n}={v:.2f}" for n, v in zip(WEIGHT_NAMES, obs[:4]))
        return (
            f"You tune the feed recommender ({platform.config.recsys}) of a social platform. "
            f"Current weights: {w}.\n"
            f"Last hour: {100 * obs[4]:.1f}% of shown posts got a like/share/comment, "
            f"{100 * obs[5]:.1f}% a dislike; shown posts matched readers' interests "
            f"{obs[6]:.2f} on average, freshness {obs[7]:.2f}, {100 * obs[8]:.0f}% from followed "
            f"accounts; {100 * obs[9]:.1f}% of users were online.\n"
            "Choose the four weights, each between 0 and 1, that maximise engagement next hour."
        )

    def parse(self, text):
        found = dict(re.findall(r"(interest|recency|popularity|following)\s*[=:]\s*([0-9]*\.?[0-9]+)",
                                text.lower()))
        if not found:
            return Parsed(None, "no 'name=value' weight found")
        w = np.array([float(found.get(n, self.weights[i])) for i, n in enumerate(WEIGHT_NAMES)])
        missing = [n for n in WEIGHT_NAMES if n not in found]
        return Parsed(np.clip(w, 0, 1).astype(np.float32),
                      f"weights not given (kept): {', '.join(missing)}" if missing else "")

    def format_action(self, action):
        w = np.clip(np.asarray(action, dtype=np.float64), 0, 1)
        return " ".join(f"{n}={v:.2f}" for n, v in zip(WEIGHT_NAMES, w))


class TrendPrediction(Task):
    """Predicts the topic volumes of the coming step.

    Observation (T * history + 2): topic shares of the volume (posts created plus posts given a
    like, repost, quote or comment) of each of the last ``history`` steps, newest first; sin and
    cos of the hour.
    Action: Box(0, 1, (T,)), a score per topic (only the ranking matters).
    Reward: (1 + Spearman rank correlation of the scores with the step's real topic volumes) / 2;
    0.5 when either is constant; the no-op scores 0.
    """

    task = TaskType.TREND_PREDICTION

    def __init__(self, history: int = 6) -> None:
        self.history = history
        self.observation_space = _box(T * history + 2)
        self.action_space = spaces.Box(0.0, 1.0, shape=(T,), dtype=np.float32)
        self._shares = np.full((history, T), 1.0 / T)

    def reset(self, platform, rng):
        self._shares = np.full((self.history, T), 1.0 / T)

    def state_dict(self):
        return {}, {"shares": self._shares}

    def check_state(self, meta, arrays, dims, where):
        check_keys(meta, (), where.rstrip("."))
        check_arrays(arrays, {"shares": ArraySpec("float64", ("H", "T"))}, dims, where)

    def load_state_dict(self, meta, arrays, rng):
        self._shares = arrays["shares"].copy()

    def observe(self, platform):
        if platform.last is not None:
            self._shares = np.roll(self._shares, 1, axis=0)
            self._shares[0] = _shares(platform.last.topic_volume)
        return np.concatenate((self._shares.ravel(), _hour_features(platform.hour))).astype(np.float32)

    def reward(self, action, outcome, platform):
        if action is None:
            return 0.0
        return spearman_reward(np.asarray(action, dtype=np.float64), outcome.topic_volume)

    def render(self, obs, platform):
        s = obs[: T * self.history].reshape(self.history, T)
        # Rows sorted by the recent shares' weighted mean (the heuristic's smoothing over every
        # past hour the observation holds): the heuristic's ranking can then be read off the
        # order (a 135M model does not sort or average ten rows of numbers: docs/design.md).
        order = np.argsort(-trend_heuristic(obs), kind="stable")
        lines = [f"{TOPIC_NAMES[i]} had " + ", then ".join(f"{100 * s[h, i]:.0f}%"
                                                            for h in range(min(3, self.history)))
                 for i in order]
        return (
            f"Share of platform activity per topic in the last three hours (newest first), "
            f"topics ordered by their share over the last {self.history} hours, recent hours "
            f"weighing most; next hour is {platform.hour}:00.\n"
            + "\n".join(lines)
            + f"\nRank all {T} topics by how much activity they will get next hour, most first."
        )

    def parse(self, text):
        order = _find_topics(text)
        if not order:
            return Parsed(None, "no topic name found")
        scores = np.zeros(T, dtype=np.float32)
        scores[order] = np.linspace(1.0, 0.1, len(order)) if len(order) > 1 else 1.0
        missing = T - len(order)
        return Parsed(scores, f"{missing} topics not ranked" if missing else "")

    def format_action(self, action):
        order = np.argsort(-np.asarray(action, dtype=np.float64), kind="stable")
        return "ranking: " + " > ".join(TOPIC_NAMES[i] for i in order)


def spearman_reward(pred: np.ndarray, actual: np.ndarray) -> float:
    """(1 + Spearman correlation) / 2, with 0.5 when either side is constant."""
    if np.ptp(pred) == 0 or np.ptp(actual) == 0:
        return 0.5
    rho = np.corrcoef(rankdata(pred), rankdata(actual))[0, 1]
    return float(np.clip((1 + rho) / 2, 0.0, 1.0))


class UserEngagement(Task):
    """Runs a notification campaign at one topic segment (users whose top interest it is).

    Observation (4T + 2): per segment its share of users, mean campaign fatigue, mean activation
    probability for the coming hour (x5, clipped to 1) and its net response the last time it was
    targeted; sin and cos of the hour.
    Action: MultiDiscrete([T, 4]): segment and intensity (none, low, medium, high). A targeted
    user who would not have been active becomes active with probability
    boost[intensity] * (1 - fatigue); some are annoyed (probability growing with intensity and
    fatigue) and are not activated; every targeted user gains fatigue.
    Reward: 0.5 + 0.5 * (activated users who engaged positively or posted - annoyed users) /
    (targeted users * the highest boost), clipped to [0, 1]; 0.5 without a campaign (the no-op).
    """

    task = TaskType.USER_ENGAGEMENT

    def __init__(self) -> None:
        self.observation_space = _box(4 * T + 2)
        self.action_space = spaces.MultiDiscrete([T, len(INTENSITIES)])
        self._response = np.zeros(T)

    def reset(self, platform, rng):
        self._response = np.zeros(T)

    def state_dict(self):
        return {}, {"response": self._response}

    def check_state(self, meta, arrays, dims, where):
        check_keys(meta, (), where.rstrip("."))
        check_arrays(arrays, {"response": ArraySpec("float64", ("T",))}, dims, where)

    def load_state_dict(self, meta, arrays, rng):
        self._response = arrays["response"].copy()

    def observe(self, platform):
        u, n = platform.users, platform.config.num_users
        size = np.bincount(u.segment, minlength=T).astype(np.float64)
        fatigue = np.bincount(u.segment, weights=u.fatigue, minlength=T) / np.maximum(size, 1)
        p = np.bincount(u.segment, weights=platform.activation_probability(), minlength=T)
        p = np.minimum(5 * p / np.maximum(size, 1), 1)
        feats = np.concatenate((size / n, fatigue, p, self._response, _hour_features(platform.hour)))
        return feats.astype(np.float32)

    def decide(self, action, plan):
        if action is not None:
            plan["campaign"] = Campaign(int(action[0]), int(action[1]))

    def reward(self, action, outcome, platform):
        c = outcome.campaign
        if action is None or c.targeted == 0:
            return 0.5
        net = (c.activated_engaged - c.annoyed) / (c.targeted * CAMPAIGN_BOOST[-1])
        self._response[int(action[0])] = np.clip(net * CAMPAIGN_BOOST[-1], -1, 1)
        return float(np.clip(0.5 + 0.5 * net, 0.0, 1.0))

    def render(self, obs, platform):
        size, fatigue, p, resp = (obs[i * T:(i + 1) * T] for i in range(4))
        # Least tired, then largest, first: a table's natural order, in which a good answer
        # can be read off (the model still has to choose; see docs/results.md for why size).
        # Rows are numbered so an answer can name a row (the LLM agents answer a row number;
        # the env's own answer names the segment): 1-9, then 0, one digit each.
        order = np.lexsort((-size, np.round(fatigue, 1)))
        lines = [f"{row % 10}. {TOPIC_NAMES[i]}: {100 * size[i]:.0f}% of users, "
                 f"fatigue {fatigue[i]:.1f}, online {20 * p[i]:.1f}%, "
                 f"last response {100 * resp[i]:+.1f}%"
                 for row, i in enumerate(order, 1)]
        return (
            f"You send notification campaigns to bring users back (next hour {platform.hour}:00). "
            "Segments (users by top interest), least tired first, then largest:\n"
            + "\n".join(lines)
            + "\nPick one segment and an intensity from 0 (none) to 3 (high), or no campaign; "
            "tired users get annoyed."
        )

    def parse(self, text):
        lowered = text.lower()
        topics = _find_topics(lowered.split("segment", 1)[-1])
        level = re.search(r"intensity\s*[=:]?\s*([0-3])", lowered)
        if not topics:
            if re.search(r"\b(none|no campaign)\b", lowered):
                return Parsed(np.array([0, 0]))
            return Parsed(None, "no segment (topic name) or 'none' found")
        return Parsed(np.array([topics[0], int(level.group(1)) if level else 1]),
                      "" if level else "no intensity given (low assumed)")

    def format_action(self, action):
        segment, level = int(action[0]), int(action[1])
        return f"segment={TOPIC_NAMES[segment]} intensity={level}" if level else "segment=none"


def make_tasks(panel_size: int = 8, history: int = 6,
               analyzer: Callable[[], Any] | None = None) -> dict[str, Task]:
    """One task object per agent name, in ``TaskType`` order."""
    tasks = (ContentGeneration(analyzer), BehaviorAnalysis(panel_size), NetworkOptimization(),
             TrendPrediction(history), UserEngagement())
    return {t.task.value: t for t in tasks}
