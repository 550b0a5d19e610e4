"""The SQLite trace agrees with the platform's own statistics and never clobbers a file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from sandbox_rl.envs.config import PlatformConfig
from sandbox_rl.envs.corpus import TweetCorpus
from sandbox_rl.envs.platform import AgentPost, Campaign, Platform, StepPlan
from sandbox_rl.envs.topics import NUM_TOPICS
from sandbox_rl.envs.trace import TraceStore, trace_counts

NUM_USERS = 300
AGENT_TEXT = "Our new phone ships next week"


def _plans() -> list[StepPlan]:
    tech = np.full(NUM_TOPICS, 0.02)
    tech[1] = 1.0
    post = AgentPost(tech / tech.sum(), sentiment=0.6, text=AGENT_TEXT)
    return [StepPlan(), StepPlan(post=post), StepPlan(campaign=Campaign(segment=1, intensity=3)),
            StepPlan(post=post, campaign=Campaign(segment=2, intensity=2))] * 3


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Platform, Path, dict[str, int]]:
    """A 300-user world traced for 12 steps.

    Busy users and random feeds (many disliked posts of strangers) make every kind of action,
    mutes included, occur within a few steps.
    """
    config = PlatformConfig(num_users=NUM_USERS, recsys="random", activation=4.0)
    platform = Platform(config,
                        np.random.default_rng(0))
    path = tmp_path_factory.mktemp("trace") / "sub" / "run.db"
    with TraceStore(path) as store:
        store.write_world(platform)
        for plan in _plans():
            store.write_step(platform, platform.step(plan))
        counts = store.counts()
    return platform, path, counts


def test_counts_agree_with_platform(run) -> None:
    platform, _, counts = run
    totals = platform.totals
    assert counts["user"] == NUM_USERS
    assert counts["post"] == len(platform.posts)
    assert counts["follow"] == platform.graph.num_edges
    assert counts["like"] == totals["likes"]
    assert counts["dislike"] == totals["dislikes"]
    assert counts["comment"] == totals["comments"]
    assert counts["repost"] == totals["reposts"] + totals["quotes"]
    assert counts["mute"] == totals["mutes"]
    step_posts = len(platform.posts) - platform.config.candidate_pool
    assert counts["trace"] == step_posts + sum(totals.values())
    # Every kind of action happened, so none of the agreements above is vacuous.
    assert min(totals.values()) > 0


def test_tables_hold_current_state(run) -> None:
    platform, path, counts = run
    assert trace_counts(path) == counts  # a read-only reader sees the same, after close
    db = sqlite3.connect(path)
    try:
        src, dst = platform.graph.adjacency().nonzero()
        edges = db.execute("SELECT follower_id, followee_id FROM follow").fetchall()
        assert sorted(edges) == sorted(zip(src.tolist(), dst.tolist()))
        followers = np.array(db.execute('SELECT followers FROM "user" ORDER BY user_id').fetchall())
        assert np.array_equal(followers.ravel(), platform.graph.followers)
        likes = np.array(db.execute("SELECT num_likes FROM post ORDER BY post_id").fetchall())
        assert np.array_equal(likes.ravel(), platform.posts.column("likes"))
        texts = db.execute("SELECT content FROM post WHERE user_id = ? AND created_step >= 0",
                           (platform.brand,)).fetchall()
        assert texts and all(t == (AGENT_TEXT,) for t in texts)
        kinds = dict(db.execute("SELECT kind, COUNT(*) FROM repost GROUP BY kind").fetchall())
        assert kinds == {"repost": platform.totals["reposts"], "quote": platform.totals["quotes"]}
        actions = dict(db.execute("SELECT action, COUNT(*) FROM trace GROUP BY action").fetchall())
        assert actions["unfollow"] == platform.totals["unfollows"]
        info = db.execute("SELECT info FROM trace WHERE action = 'follow'").fetchone()[0]
        assert json.loads(info).keys() == {"followee_id"}
    finally:
        db.close()


def test_existing_trace_needs_overwrite(run) -> None:
    _, path, _ = run
    before = path.read_bytes()
    with pytest.raises(ValueError, match="overwrite"):
        TraceStore(path)
    assert path.read_bytes() == before


def test_overwrite_replaces_trace(tmp_path) -> None:
    path = tmp_path / "t.db"
    platform = Platform(PlatformConfig(num_users=50, mean_follows=5), np.random.default_rng(1))
    with TraceStore(path) as store:
        store.write_world(platform)
    with TraceStore(path, overwrite=True) as store:
        assert store.counts()["user"] == 0


def test_tweet_text_is_stored(tmp_path) -> None:
    texts = np.array([f"a tweet about topic {t}" for t in range(NUM_TOPICS)])
    topics = np.arange(NUM_TOPICS, dtype=np.int16)
    corpus = TweetCorpus(texts, np.zeros(NUM_TOPICS, np.float32), topics)
    config = PlatformConfig(num_users=50, mean_follows=5, attach_tweets=True)
    platform = Platform(config, np.random.default_rng(2), corpus=corpus)
    with TraceStore(tmp_path / "t.db") as store:
        store.write_world(platform)
    db = sqlite3.connect(tmp_path / "t.db")
    rows = db.execute("SELECT post_id, tweet_id, content FROM post").fetchall()
    db.close()
    tweet = platform.posts.column("tweet")
    assert rows and all(t == tweet[p] and c == texts[t] for p, t, c in rows)


@pytest.mark.parametrize("content", [b"", b"not a database, just notes\n"])
def test_foreign_file_is_refused_untouched(tmp_path, content: bytes) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="notes.db"):
            TraceStore(path, overwrite=overwrite)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_other_sqlite_database_is_refused(tmp_path) -> None:
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE user (id INTEGER)")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(ValueError, match="not a trace database"):
        TraceStore(path, overwrite=True)
    assert path.read_bytes() == before
