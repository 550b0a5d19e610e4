"""The simulated social platform: one step is one hour of the world.

Domain model only (no Gymnasium or PettingZoo here). All randomness comes from the generator
passed in, so the same seed and plans give the same trajectory bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from sandbox_rl.envs.config import PlatformConfig
from sandbox_rl.envs.graph import (FollowGraph, check_graph_state, isin_sorted,
                                   generate_follow_graph, sorted_unique)
from sandbox_rl.envs.posts import COUNTERS, PostStore
from sandbox_rl.envs.recsys import DEFAULT_WEIGHTS, RECOMMENDERS, WEIGHT_NAMES, FeedContext, top_k
from sandbox_rl.envs.state import (ArraySpec, check_arrays, check_int, check_keys, prefixed,
                                   split_arrays)
from sandbox_rl.envs.topics import NUM_TOPICS, TOPIC_NAMES
from sandbox_rl.envs.users import Users, generate_users, users_state_spec

# Campaign intensities 0..3: extra activation probability and annoyance probability.
CAMPAIGN_BOOST = np.array([0.0, 0.08, 0.16, 0.24], dtype=np.float32)
CAMPAIGN_ANNOY = np.array([0.0, 0.01, 0.04, 0.10], dtype=np.float32)
FATIGUE_PER_INTENSITY = 0.15
FATIGUE_DECAY = 0.9

# Impression actions that count as positive engagement.
POSITIVE_ACTIONS = ("likes", "reposts", "quotes", "comments")


def positive_mask(actions: dict[str, np.ndarray]) -> np.ndarray:
    """Impressions with a like, repost, quote or comment."""
    return np.logical_or.reduce([actions[name] for name in POSITIVE_ACTIONS])


# Behaviour classes of a user in one step (the behaviour-analysis agent predicts these).
BEHAVIOURS = ("inactive", "lurk", "positive", "negative", "post")


@dataclass(frozen=True)
class AgentPost:
    """A post by the content-generation agent's brand account."""

    topic_dist: np.ndarray  # [T], a distribution
    sentiment: float
    text: str | None = None


@dataclass(frozen=True)
class Campaign:
    """A notification campaign of the user-engagement agent at a topic segment."""

    segment: int
    intensity: int  # 0 (none) .. 3


@dataclass(frozen=True)
class StepPlan:
    """What the agents decided for this step; ``None`` keeps the platform's default."""

    post: AgentPost | None = None
    recsys_weights: np.ndarray | None = None
    campaign: Campaign | None = None


@dataclass(frozen=True)
class CampaignResult:
    targeted: int = 0
    activated: int = 0  # active only because of the campaign (same random draw without it)
    activated_engaged: int = 0  # of those, users with a positive engagement or a post
    annoyed: int = 0


@dataclass(frozen=True)
class StepOutcome:
    """Everything that happened in one step, as arrays (the trace store writes these)."""

    step: int
    hour: int
    active: np.ndarray  # sorted user ids
    viewer: np.ndarray  # [I] impression viewer
    shown: np.ndarray  # [I] impression post id
    actions: dict[str, np.ndarray]  # COUNTERS name -> [I] bool
    match: np.ndarray  # [I] cosine of viewer interests and post topics
    in_network: np.ndarray  # [I] bool, the viewer follows the author
    follows: np.ndarray  # keys src * n + dst of new edges
    unfollows: np.ndarray
    mutes: np.ndarray
    new_posts: np.ndarray  # ids created this step (the agent's post first if any)
    agent_post: int  # id or -1
    topic_volume: np.ndarray  # [T] posts created + positive engagements, by main topic
    campaign: CampaignResult
    behaviour: np.ndarray = field(repr=False)  # [N] int8 class of BEHAVIOURS, or empty

    @property
    def impressions(self) -> int:
        return int(self.viewer.size)

    def positive(self) -> np.ndarray:
        return positive_mask(self.actions)


# The array fields of a StepOutcome, in the state of a platform (``actions`` is nested).
_OUTCOME_ARRAYS = ("active", "viewer", "shown", "match", "in_network", "follows", "unfollows",
                   "mutes", "new_posts", "topic_volume", "behaviour")


def outcome_state(o: StepOutcome) -> tuple[dict, dict[str, np.ndarray]]:
    """Scalars and arrays of a step outcome (arrays alias the outcome's)."""
    meta = {"step": o.step, "hour": o.hour, "agent_post": o.agent_post,
            "campaign": {f.name: getattr(o.campaign, f.name) for f in fields(CampaignResult)}}
    arrays = {name: getattr(o, name) for name in _OUTCOME_ARRAYS}
    return meta, {**arrays, **prefixed("actions.", o.actions)}


def check_outcome_state(meta, arrays, dims: dict[str, int], where: str) -> None:
    check_keys(meta, ("step", "hour", "agent_post", "campaign"), where.rstrip("."))
    check_int(meta["step"], where + "step", 0)
    check_int(meta["hour"], where + "hour", 0, 24)
    check_int(meta["agent_post"], where + "agent_post", -1, dims["P"])
    check_keys(meta["campaign"], [f.name for f in fields(CampaignResult)], where + "campaign")
    for name, value in meta["campaign"].items():
        check_int(value, f"{where}campaign.{name}", 0)
    user, impression = ArraySpec("int64", ("I",), 0, "N"), ArraySpec("bool", ("I",))
    edge = ArraySpec("int64", ("F",), 0, "NN")
    check_arrays(arrays, {
        "active": ArraySpec("int64", ("A",), 0, "N"), "viewer": user,
        "shown": ArraySpec("int64", ("I",), 0, "P"), "match": ArraySpec("float32", ("I",)),
        "in_network": impression, "follows": edge, "unfollows": edge._replace(shape=("U",)),
        "mutes": edge._replace(shape=("M",)), "new_posts": ArraySpec("int64", ("C",), 0, "P"),
        "topic_volume": ArraySpec("float32", ("T",), 0),
        "behaviour": ArraySpec("int8", ("N",), 0, len(BEHAVIOURS)),
        **{f"actions.{name}": impression for name in COUNTERS}}, dims, where)


def outcome_from_state(meta: dict, arrays: dict[str, np.ndarray]) -> StepOutcome:
    """A step outcome from checked state (arrays are copied)."""
    actions = {name: arrays[f"actions.{name}"].copy() for name in COUNTERS}
    return StepOutcome(step=meta["step"], hour=meta["hour"], agent_post=meta["agent_post"],
                       campaign=CampaignResult(**meta["campaign"]), actions=actions,
                       **{name: arrays[name].copy() for name in _OUTCOME_ARRAYS})


@dataclass(frozen=True)
class NetworkStats:
    step: int
    total_users: int
    total_posts: int
    total_edges: int
    total_interactions: int
    network_density: float
    active_users: int
    engagement_rate: float
    trending_topics: tuple[str, ...]
    counters: dict[str, int]

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "counters"}
        d["trending_topics"] = list(self.trending_topics)
        return {**d, **{f"total_{k}": v for k, v in self.counters.items()}}


class Platform:
    """The world. ``Platform(config, rng)`` builds users, graph and seed posts."""

    def __init__(self, config: PlatformConfig, rng: np.random.Generator, corpus=None) -> None:
        self.config = config
        self.rng = rng
        self.corpus = corpus if config.attach_tweets else None
        n = config.num_users
        self.users: Users = generate_users(n, NUM_TOPICS, config.mean_activity,
                                           config.mean_post_rate, rng, config.topic_mix)
        src, dst = generate_follow_graph(self.users.interest_unit, config.mean_follows,
                                         config.homophily, config.pa_batches, rng)
        self.graph = FollowGraph.from_edges(n, src, dst)
        self.muted = FollowGraph.from_edges(n, src[:0], dst[:0])
        # The brand account of the content agent: the most followed user, silent otherwise.
        self.brand = int(np.argmax(self.graph.followers))
        self.users.activity[self.brand] = 0.0
        self.segment_order = np.argsort(self.users.segment, kind="stable").astype(np.int64)
        self.segment_bounds = np.searchsorted(self.users.segment[self.segment_order],
                                              np.arange(NUM_TOPICS + 1))
        self.posts = PostStore(NUM_TOPICS, capacity=max(1024, 4 * config.candidate_pool))
        self.boost = np.zeros(NUM_TOPICS, dtype=np.float32)
        self.weights = DEFAULT_WEIGHTS.copy()
        self.t = 0
        self.totals = dict.fromkeys((*COUNTERS, "follows", "unfollows", "mutes"), 0)
        self.last: StepOutcome | None = None
        self.online = np.empty(0, dtype=np.int64)  # sorted ids active in the last step
        self._seed_posts()

    # ------------------------------------------------------------------ queries
    @property
    def hour(self) -> int:
        return (self.config.start_hour + self.t) % 24

    def activation_probability(self, users: np.ndarray | None = None) -> np.ndarray:
        """Organic probability of being active in the coming step (all users by default).

        The user's hourly rhythm, or the session-continuation floor for users online in the
        last step, whichever is higher; campaign fatigue lowers both.
        """
        u, cfg = self.users, self.config
        idx = slice(None) if users is None else users
        damp = 1 - 0.5 * u.fatigue[idx]
        p = u.activity[idx, self.hour] * cfg.activation * damp
        floor = cfg.session_continue * damp
        if users is None:
            p[self.online] = np.maximum(p[self.online], floor[self.online])
        else:
            on = isin_sorted(users, self.online)
            p[on] = np.maximum(p[on], floor[on])
        return np.minimum(p, 0.95)

    def segment_users(self, segment: int) -> np.ndarray:
        lo, hi = self.segment_bounds[segment], self.segment_bounds[segment + 1]
        return self.segment_order[lo:hi]

    def stats(self) -> NetworkStats:
        n = self.config.num_users
        last = self.last
        engaged = float(last.positive().mean()) if last is not None and last.impressions else 0.0
        vol = last.topic_volume if last is not None else np.zeros(NUM_TOPICS)
        trending = tuple(TOPIC_NAMES[i] for i in np.argsort(-vol, kind="stable")[:3] if vol[i] > 0)
        interactions = sum(self.totals.values())
        return NetworkStats(
            step=self.t, total_users=n, total_posts=len(self.posts),
            total_edges=self.graph.num_edges, total_interactions=int(interactions),
            network_density=self.graph.num_edges / (n * (n - 1)),
            active_users=int(last.active.size) if last is not None else 0,
            engagement_rate=engaged, trending_topics=trending, counters=dict(self.totals))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Scalars and arrays of the world; the arrays alias the platform's (copy to keep them).

        The config, generator and corpus are not included: the env owns and checks them.
        """
        posts_meta, posts_arrays = self.posts.state_dict()
        meta = {"t": self.t, "brand": self.brand, "totals": dict(self.totals),
                "posts": posts_meta, "last": None}
        arrays = {"boost": self.boost, "weights": self.weights, "online": self.online,
                  "segment_order": self.segment_order, "segment_bounds": self.segment_bounds,
                  **prefixed("users.", self.users.state_dict()),
                  **prefixed("graph.", self.graph.state_dict()),
                  **prefixed("muted.", self.muted.state_dict()),
                  **prefixed("posts.", posts_arrays)}
        if self.last is not None:
            meta["last"], last = outcome_state(self.last)
            arrays.update(prefixed("last.", last))
        return meta, arrays

    @staticmethod
    def check_state(config: PlatformConfig, meta, arrays: dict[str, np.ndarray],
                    where: str = "platform.") -> None:
        """ValueError naming the first part of ``(meta, arrays)`` that is not a plausible
        :meth:`state_dict` of a platform with ``config``."""
        n, t = config.num_users, NUM_TOPICS
        check_keys(meta, ("t", "brand", "totals", "posts", "last"), where.rstrip("."))
        check_int(meta["t"], where + "t", 0)
        check_int(meta["brand"], where + "brand", 0, n)
        check_keys(meta["totals"], (*COUNTERS, "follows", "unfollows", "mutes"), where + "totals")
        for name, value in meta["totals"].items():
            check_int(value, f"{where}totals.{name}", 0)
        parts = split_arrays(arrays, ("", "users.", "graph.", "muted.", "posts.", "last."), where)
        dims = {"N": n, "T": t, "NN": n * n}
        check_arrays(parts[""], {
            "boost": ArraySpec("float32", (t,)), "weights": ArraySpec("float32", (len(WEIGHT_NAMES),)),
            "online": ArraySpec("int64", ("O",), 0, n),
            "segment_order": ArraySpec("int64", (n,), 0, n),
            "segment_bounds": ArraySpec("int64", (t + 1,), 0, n + 1)}, dims, where)
        check_arrays(parts["users."], users_state_spec(), dims, where + "users.")
        check_graph_state(n, parts["graph."], where + "graph.")
        check_graph_state(n, parts["muted."], where + "muted.")
        PostStore.check_state(t, n, meta["posts"], parts["posts."], where + "posts.")
        if meta["last"] is None:
            check_arrays(parts["last."], {}, dims, where + "last.")
        else:
            dims["P"] = meta["posts"]["size"]
            check_outcome_state(meta["last"], parts["last."], dims, where + "last.")

    @classmethod
    def from_state(cls, config: PlatformConfig, rng: np.random.Generator, corpus, meta: dict,
                   arrays: dict[str, np.ndarray]) -> "Platform":
        """The platform of a state that :meth:`check_state` accepted, without regenerating the
        world (arrays are copied, so the state may be loaded again)."""
        parts = split_arrays(arrays, ("", "users.", "graph.", "muted.", "posts.", "last."))
        top = {k: v.copy() for k, v in parts[""].items()}
        p = cls.__new__(cls)
        p.config, p.rng = config, rng
        p.corpus = corpus if config.attach_tweets else None
        p.users = Users.from_state(parts["users."])
        p.graph = FollowGraph.from_state(config.num_users, parts["graph."])
        p.muted = FollowGraph.from_state(config.num_users, parts["muted."])
        p.brand = meta["brand"]
        p.segment_order, p.segment_bounds = top["segment_order"], top["segment_bounds"]
        p.posts = PostStore.from_state(NUM_TOPICS, meta["posts"], parts["posts."])
        p.boost, p.weights, p.online = top["boost"], top["weights"], top["online"]
        p.t = meta["t"]
        p.totals = {k: meta["totals"][k] for k in (*COUNTERS, "follows", "unfollows", "mutes")}
        p.last = None if meta["last"] is None else outcome_from_state(meta["last"], parts["last."])
        return p

    # ------------------------------------------------------------------ dynamics
    def step(self, plan: StepPlan = StepPlan()) -> StepOutcome:
        """Advance one hour under the agents' plan."""
        cfg, rng, u = self.config, self.rng, self.users
        if plan.recsys_weights is not None:
            self.weights = np.asarray(plan.recsys_weights, dtype=np.float32).copy()
        if rng.random() < cfg.event_rate:
            self.boost[rng.integers(NUM_TOPICS)] += cfg.event_strength
        agent_post = self._agent_post(plan.post)
        active, activated, annoyed, targeted = self._activate(plan.campaign)
        viewer, shown, actions, edits, match, in_network = self._feeds_and_choices(active)
        new_posts = self._create_posts(active)
        self._apply(viewer, shown, actions, edits)
        positive = positive_mask(actions)
        behaviour = self._behaviour(active, viewer, positive, actions, edits, new_posts)
        engaged = np.isin(behaviour[activated], (BEHAVIOURS.index("positive"), BEHAVIOURS.index("post")))
        campaign = CampaignResult(targeted, int(activated.size), int(engaged.sum()), annoyed)
        if agent_post >= 0:
            new_posts = np.concatenate(([agent_post], new_posts))
        outcome = StepOutcome(
            step=self.t, hour=self.hour, active=active, viewer=viewer, shown=shown,
            actions=actions, match=match, in_network=in_network, follows=edits["follows"], unfollows=edits["unfollows"],
            mutes=edits["mutes"], new_posts=new_posts, agent_post=agent_post,
            topic_volume=self._topic_volume(shown, positive, new_posts), campaign=campaign,
            behaviour=behaviour)
        u.fatigue *= FATIGUE_DECAY
        self.boost *= cfg.event_decay
        self.online = active
        self.t += 1
        self.last = outcome
        return outcome

    def _agent_post(self, post: AgentPost | None) -> int:
        if post is None:
            return -1
        dist = np.asarray(post.topic_dist, dtype=np.float32)[None, :]
        pid = self.posts.append(np.array([self.brand]), self.t, dist, np.array([post.sentiment]))
        if post.text is not None:
            self.posts.texts[int(pid[0])] = post.text
        return int(pid[0])

    def _activate(self, campaign: Campaign | None):
        """Sample who is active; a campaign lifts activation of its segment (and annoys some)."""
        u, rng = self.users, self.rng
        p0 = self.activation_probability()
        draw = rng.random(p0.size, dtype=np.float32)
        active = draw < p0
        activated = np.empty(0, dtype=np.int64)
        annoyed = targeted = 0
        if campaign is not None and campaign.intensity > 0:
            seg = self.segment_users(campaign.segment)
            seg = seg[seg != self.brand]
            k = campaign.intensity
            lift = CAMPAIGN_BOOST[k] * (1 - u.fatigue[seg])
            p1 = p0[seg] + lift * (1 - p0[seg])
            annoy = rng.random(seg.size, dtype=np.float32) < CAMPAIGN_ANNOY[k] * (0.5 + u.fatigue[seg])
            hit = (draw[seg] >= p0[seg]) & (draw[seg] < p1) & ~annoy
            activated = seg[hit]
            active[activated] = True
            u.fatigue[seg] = np.minimum(1.0, u.fatigue[seg] + FATIGUE_PER_INTENSITY * k)
            u.fatigue[seg[annoy]] = 1.0
            annoyed, targeted = int(annoy.sum()), int(seg.size)
        return np.flatnonzero(active), activated, annoyed, targeted

    def _pool(self) -> np.ndarray:
        n = len(self.posts)
        return np.arange(max(0, n - self.config.candidate_pool), n)

    def _feeds_and_choices(self, active: np.ndarray):
        cfg, rng, posts, u = self.config, self.rng, self.posts, self.users
        pool = self._pool()
        author = posts.column("author")[pool]
        # Both factors are non-negative unit vectors, so the cosine already lies in [0, 1].
        sim = u.interest_unit[active] @ posts.column("topic")[pool].T
        following = self.graph.follows_mask(active, author)
        likes = posts.column("likes")[pool]
        positive = likes + posts.column("reposts")[pool] + posts.column("quotes")[pool]
        popularity = np.log1p(positive) / np.log1p(max(1, positive.max(initial=0)))
        age = (self.t - posts.column("created")[pool]).astype(np.float32)
        ctx = FeedContext(sim, following, np.exp(-age / cfg.recency_hours), popularity, age,
                          likes - posts.column("dislikes")[pool])
        scores = RECOMMENDERS[cfg.recsys](ctx, self.weights, rng)
        own = np.flatnonzero(isin_sorted(author, active))
        scores[np.searchsorted(active, author[own]), own] = -np.inf
        scores[self.muted.follows_mask(active, author)] = -np.inf
        row, col = top_k(scores, cfg.feed_size)
        viewer, shown = active[row], pool[col]
        match, fol = sim[row, col], following[row, col]
        sent = posts.column("sentiment")[shown]
        trend = self.boost[posts.column("main_topic")[shown]]
        like = -5.5 + 4.0 * match + 0.8 * sent + 0.6 * popularity[col] + 0.5 * fol + 0.6 * trend
        like += u.engagement[viewer]
        dislike = -4.0 + 2.5 * (1 - match) - 1.5 * sent + 0.3 * popularity[col] - 0.5 * fol
        logits = np.stack([like, dislike, like - 1.8 + 0.3 * trend, like - 2.8 + 0.8 * np.abs(sent),
                           like - 2.3 + 1.2 * np.abs(sent)], axis=1)
        hits = rng.random(logits.shape, dtype=np.float32) < 1 / (1 + np.exp(-logits))
        hits[:, 1] &= ~hits[:, 0]
        actions = {name: hits[:, i] for i, name in enumerate(COUNTERS)}
        edits = self._graph_choices(viewer, shown, match, fol, actions)
        return viewer, shown, actions, edits, match, fol

    def _graph_choices(self, viewer, shown, match, fol, actions):
        rng = self.rng
        author = self.posts.column("author")[shown]
        r = rng.random((viewer.size, 3), dtype=np.float32)
        fo = actions["likes"] & ~fol & (r[:, 0] < 0.02 + 0.06 * match)
        un = actions["dislikes"] & fol & (r[:, 1] < 0.25)
        mu = actions["dislikes"] & ~fol & (r[:, 2] < 0.05)
        return {"follows": (viewer[fo], author[fo]), "unfollows": (viewer[un], author[un]),
                "mutes": (viewer[mu], author[mu])}

    def _create_posts(self, active: np.ndarray) -> np.ndarray:
        u, rng = self.users, self.rng
        writers = active[rng.random(active.size, dtype=np.float32) < u.post_rate[active]]
        if writers.size == 0:
            return writers
        pref = u.interests[writers] * np.exp(self.boost)[None, :]
        cum = np.cumsum(pref / pref.sum(axis=1, keepdims=True), axis=1)
        topic = np.minimum((cum < rng.random((writers.size, 1))).sum(axis=1), NUM_TOPICS - 1)
        dist = 0.3 * u.interests[writers]
        dist[np.arange(writers.size), topic] += 0.7
        sentiment = np.clip(0.5 * u.positivity[writers] + rng.normal(0, 0.4, writers.size), -1, 1)
        tweet = None if self.corpus is None else self.corpus.pick(topic, sentiment, rng)
        return self.posts.append(writers, self.t, dist, sentiment.astype(np.float32), tweet)

    def _apply(self, viewer, shown, actions, edits) -> None:
        lo = int(shown.min(initial=len(self.posts)))
        span = len(self.posts) - lo
        for name, hit in actions.items():
            counts = np.bincount(shown[hit] - lo, minlength=span)
            self.posts.add_counts(name, lo, counts)
            self.totals[name] += int(hit.sum())
        edits["follows"] = self.graph.follow(*edits["follows"])
        edits["unfollows"] = self.graph.unfollow(*edits["unfollows"])
        edits["mutes"] = self.muted.follow(*edits["mutes"])
        for name in ("follows", "unfollows", "mutes"):
            self.totals[name] += int(edits[name].size)

    def _behaviour(self, active, viewer, positive, actions, edits, new_posts) -> np.ndarray:
        """Class of ``BEHAVIOURS`` per user, and the observable behaviour counters."""
        u, n = self.users, self.config.num_users
        cls = np.zeros(n, dtype=np.int8)
        cls[active] = BEHAVIOURS.index("lurk")
        neg = np.concatenate((viewer[actions["dislikes"]], edits["unfollows"] // n,
                              edits["mutes"] // n))
        cls[neg] = BEHAVIOURS.index("negative")
        pos = viewer[positive]
        cls[pos] = BEHAVIOURS.index("positive")
        writers = self.posts.column("author")[new_posts]
        cls[writers] = BEHAVIOURS.index("post")
        u.active_steps[active] += 1
        u.positive_steps[sorted_unique(pos)] += 1
        u.negative_steps[sorted_unique(neg)] += 1
        u.post_steps[sorted_unique(writers)] += 1
        return cls

    def _topic_volume(self, shown, positive, new_posts) -> np.ndarray:
        main = self.posts.column("main_topic")
        vol = np.bincount(main[shown[positive]], minlength=NUM_TOPICS)
        vol += np.bincount(main[new_posts], minlength=NUM_TOPICS)
        return vol.astype(np.float32)

    def _seed_posts(self) -> None:
        """An initial pool of posts spread over the previous day, so first feeds are not empty."""
        cfg, u, rng = self.config, self.users, self.rng
        k = cfg.candidate_pool
        weights = u.post_rate / u.post_rate.sum()
        writers = rng.choice(cfg.num_users, size=k, p=weights)
        writers[writers == self.brand] = (self.brand + 1) % cfg.num_users
        created = np.sort(rng.integers(-24, 0, k))
        dist = u.interests[writers]
        sentiment = np.clip(0.5 * u.positivity[writers] + rng.normal(0, 0.4, k), -1, 1)
        tweet = None
        if self.corpus is not None:
            tweet = self.corpus.pick(dist.argmax(axis=1), sentiment, rng)
        for t in np.unique(created):
            m = created == t
            self.posts.append(writers[m], int(t), dist[m], sentiment[m].astype(np.float32),
                              None if tweet is None else tweet[m])
