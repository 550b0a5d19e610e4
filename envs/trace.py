"""An optional SQLite trace of a run, in the spirit of OASIS's schema.

Tables (as in camel-ai/oasis): ``user``, ``post``, ``follow``, ``like``, ``dislike``, ``repost``
(``kind`` is 'repost' or 'quote'), ``comment``, ``mute`` and ``trace`` (one row per action with a
JSON ``info``), plus ``meta`` holding the schema name and version. ``follow`` always holds the
current graph: initial edges have ``created_step = -1``, unfollows delete rows.

Writes are batched with ``executemany``, one transaction per step, in WAL mode with
``synchronous=NORMAL``: a crash can lose the last step but never corrupts the file.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sandbox_rl.envs.topics import TOPIC_NAMES

if TYPE_CHECKING:
    from sandbox_rl.envs.platform import Platform, StepOutcome

SCHEMA_NAME = "sandbox_rl.trace"
SCHEMA_VERSION = 1
CHUNK_ROWS = 200_000  # rows per executemany while writing the world (bounds peak memory)

# Post counters in the post table, named as OASIS names them; keys are COUNTERS names.
_POST_COUNTERS = {"likes": "num_likes", "dislikes": "num_dislikes", "reposts": "num_reposts",
                  "quotes": "num_quotes", "comments": "num_comments"}

# Names such as "like" and "user" are SQL keywords, hence the quoted identifiers.
_SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE "user" (
    user_id INTEGER PRIMARY KEY, segment TEXT NOT NULL,
    followers INTEGER NOT NULL, following INTEGER NOT NULL, is_brand INTEGER NOT NULL);
CREATE TABLE post (
    post_id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, created_step INTEGER NOT NULL,
    main_topic TEXT NOT NULL, sentiment REAL NOT NULL, tweet_id INTEGER, content TEXT,
    {", ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in _POST_COUNTERS.values())});
-- Keyed by the edge so that unfollows are index lookups; WITHOUT ROWID stores the rows in key
-- order, and the world's edges arrive in that order, so the bulk load appends.
CREATE TABLE follow (
    follower_id INTEGER NOT NULL, followee_id INTEGER NOT NULL, created_step INTEGER NOT NULL,
    PRIMARY KEY (follower_id, followee_id)) WITHOUT ROWID;
CREATE TABLE "like" (like_id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,
    post_id INTEGER NOT NULL, created_step INTEGER NOT NULL);
CREATE TABLE dislike (dislike_id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,
    post_id INTEGER NOT NULL, created_step INTEGER NOT NULL);
CREATE TABLE repost (repost_id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,
    post_id INTEGER NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('repost', 'quote')),
    created_step INTEGER NOT NULL);
CREATE TABLE comment (comment_id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,
    post_id INTEGER NOT NULL, created_step INTEGER NOT NULL);
CREATE TABLE mute (mute_id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,
    muted_id INTEGER NOT NULL, created_step INTEGER NOT NULL);
CREATE TABLE trace (trace_id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,
    created_step INTEGER NOT NULL, action TEXT NOT NULL, info TEXT NOT NULL);
"""

TABLES = ("user", "post", "follow", "like", "dislike", "repost", "comment", "mute", "trace")

# Impression actions: COUNTERS name -> (table, extra column value or None, trace action).
_IMPRESSION_ACTIONS = {
    "likes": ("like", None, "like_post"),
    "dislikes": ("dislike", None, "dislike_post"),
    "reposts": ("repost", "repost", "repost"),
    "quotes": ("repost", "quote", "quote_post"),
    "comments": ("comment", None, "create_comment"),
}


def _schema_of(path: Path) -> tuple[str, str] | None:
    """(name, version) stored in an existing file's meta table, or None if it has none.

    Opened read-only so that a file which is not ours is left byte-identical.
    """
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        rows = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('schema', 'version')"))
    except sqlite3.Error:  # not a database, or a database without our meta table
        return None
    finally:
        db.close()
    if "schema" not in rows or "version" not in rows:
        return None
    return rows["schema"], rows["version"]


def _check_existing(path: Path, overwrite: bool) -> None:
    """Refuse a file that is not a trace of this version, and a trace unless ``overwrite``."""
    if not path.exists():
        return
    if not path.is_file():
        raise ValueError(f"trace path {str(path)!r} exists and is not a file")
    found = _schema_of(path)
    if found != (SCHEMA_NAME, str(SCHEMA_VERSION)):
        what = "not a trace database" if found is None or found[0] != SCHEMA_NAME else (
            f"a trace of schema version {found[1]}, not {SCHEMA_VERSION}")
        raise ValueError(f"refusing to use {str(path)!r}: the existing file is {what}")
    if not overwrite:
        raise ValueError(f"trace {str(path)!r} already exists; pass overwrite=True "
                         "(the CLI's --overwrite) to replace it")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def trace_counts(path: str | os.PathLike) -> dict[str, int]:
    """Rows per table of a finished trace, read without opening it for writing."""
    path = Path(path)
    if _schema_of(path) != (SCHEMA_NAME, str(SCHEMA_VERSION)):
        raise ValueError(f"{str(path)!r} is not a trace database of schema "
                         f"version {SCHEMA_VERSION}")
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return _count_rows(db)
    finally:
        db.close()


def _count_rows(db: sqlite3.Connection) -> dict[str, int]:
    return {t: int(db.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]) for t in TABLES}


def _chunks(rows: Iterable[tuple], size: int = CHUNK_ROWS) -> Iterator[list[tuple]]:
    batch: list[tuple] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class TraceStore:
    """Writes a platform's world and steps to SQLite. Use as a context manager or ``close()``.

    Call ``write_world`` once right after the platform is built, then ``write_step`` with every
    outcome; row counts then match ``Platform.totals`` and the graph (see ``counts``).
    """

    def __init__(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        self.path = Path(path)
        _check_existing(self.path, overwrite)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are opened explicitly, one per step (see _transaction).
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # executescript commits any open transaction itself, so the script carries its own;
        # meta goes in last, so only a complete schema is ever recognised as a trace.
        self._db.executescript(f"BEGIN; {_SCHEMA} INSERT INTO meta VALUES "
                               f"('schema', '{SCHEMA_NAME}'), ('version', '{SCHEMA_VERSION}'); "
                               "COMMIT;")

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> "TraceStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        return _count_rows(self._db)

    # ------------------------------------------------------------------ world
    def write_world(self, platform: Platform) -> None:
        """Users, the current follow graph (``created_step = -1``) and the posts so far (seeds)."""
        with self._transaction():
            self._write_users(platform)
            self._write_posts(platform, np.arange(len(platform.posts)))
        # The graph is by far the largest part (24M edges at 1M users): a transaction per chunk
        # keeps the WAL file small instead of doubling the database on disk.
        adj = platform.graph.adjacency()
        src = np.repeat(np.arange(adj.shape[0], dtype=np.int64), np.diff(adj.indptr))
        for lo in range(0, src.size, CHUNK_ROWS):
            hi = lo + CHUNK_ROWS
            rows = zip(src[lo:hi].tolist(), adj.indices[lo:hi].tolist())
            with self._transaction():
                self._db.executemany("INSERT INTO follow VALUES (?, ?, -1)", rows)

    def _write_users(self, platform: Platform) -> None:
        u, g = platform.users, platform.graph
        names = np.array(TOPIC_NAMES, dtype=object)[u.segment]
        brand = np.arange(u.count) == platform.brand
        rows = zip(range(u.count), names.tolist(), g.followers.tolist(), g.following.tolist(),
                   brand.astype(int).tolist())
        for batch in _chunks(rows):
            self._db.executemany('INSERT INTO "user" VALUES (?, ?, ?, ?, ?)', batch)

    # ------------------------------------------------------------------ steps
    def write_step(self, platform: Platform, outcome: StepOutcome) -> None:
        """Everything ``outcome`` did, in one transaction."""
        step = int(outcome.step)
        with self._transaction():
            self._write_posts(platform, outcome.new_posts)
            self._trace_posts(platform, outcome.new_posts, step)
            for name, hit in outcome.actions.items():
                self._write_impressions(name, outcome.viewer[hit], outcome.shown[hit], step)
            self._write_edges(platform.config.num_users, outcome, step)
            self._refresh_counts(platform, outcome)

    def _write_posts(self, platform: Platform, ids: np.ndarray) -> None:
        posts = platform.posts
        ids = np.asarray(ids, dtype=np.int64)
        tweet = posts.column("tweet")[ids].tolist()
        content = [self._content(platform, p, t) for p, t in zip(ids.tolist(), tweet)]
        topic = np.array(TOPIC_NAMES, dtype=object)[posts.column("main_topic")[ids]]
        counters = [posts.column(name)[ids].tolist() for name in _POST_COUNTERS]
        rows = zip(ids.tolist(), posts.column("author")[ids].tolist(),
                   posts.column("created")[ids].tolist(), topic.tolist(),
                   posts.column("sentiment")[ids].tolist(),
                   [t if t >= 0 else None for t in tweet], content, *counters)
        marks = ", ".join("?" * (7 + len(_POST_COUNTERS)))
        for batch in _chunks(rows):
            self._db.executemany(f"INSERT INTO post VALUES ({marks})", batch)

    @staticmethod
    def _content(platform: Platform, post_id: int, tweet: int) -> str | None:
        """The LLM's text if any, else the corpus tweet the post was given, else NULL."""
        text = platform.posts.texts.get(post_id)
        if text is None and tweet >= 0 and platform.corpus is not None:
            text = str(platform.corpus.text[tweet])
        return text

    def _trace_posts(self, platform: Platform, ids: np.ndarray, step: int) -> None:
        authors = platform.posts.column("author")[ids].tolist()
        self._trace(authors, step, "create_post", "post_id", ids.tolist())

    def _write_impressions(self, name: str, users: np.ndarray, posts: np.ndarray,
                           step: int) -> None:
        table, kind, action = _IMPRESSION_ACTIONS[name]
        u, p = users.tolist(), posts.tolist()
        if kind is None:
            self._db.executemany(f'INSERT INTO "{table}" (user_id, post_id, created_step) '
                                 f"VALUES (?, ?, {step})", zip(u, p))
        else:
            self._db.executemany("INSERT INTO repost (user_id, post_id, kind, created_step) "
                                 f"VALUES (?, ?, '{kind}', {step})", zip(u, p))
        self._trace(u, step, action, "post_id", p)

    def _write_edges(self, n: int, outcome: StepOutcome, step: int) -> None:
        # Same order as Platform._apply: follows, then unfollows, then mutes.
        for keys, sql, action, key in (
                (outcome.follows, f"INSERT INTO follow VALUES (?, ?, {step})",
                 "follow", "followee_id"),
                (outcome.unfollows, "DELETE FROM follow WHERE follower_id = ? AND followee_id = ?",
                 "unfollow", "followee_id"),
                (outcome.mutes, f"INSERT INTO mute (user_id, muted_id, created_step) "
                                f"VALUES (?, ?, {step})", "mute", "muted_id")):
            src, dst = (keys // n).tolist(), (keys % n).tolist()
            self._db.executemany(sql, zip(src, dst))
            self._trace(src, step, action, key, dst)

    def _trace(self, users: list[int], step: int, action: str, key: str,
               values: list[int]) -> None:
        # The info payload is a single integer field, so formatting it directly is safe and far
        # cheaper than json.dumps per row (a step at 1M users has ~10^5 actions).
        rows = ((user, f'{{"{key}": {v}}}') for user, v in zip(users, values))
        self._db.executemany(f"INSERT INTO trace (user_id, created_step, action, info) "
                             f"VALUES (?, {step}, '{action}', ?)", rows)

    def _refresh_counts(self, platform: Platform, outcome: StepOutcome) -> None:
        """Keep the user and post counters current for the rows this step touched."""
        n, g = platform.config.num_users, platform.graph
        keys = np.concatenate((outcome.follows, outcome.unfollows))
        users = np.unique(np.concatenate((keys // n, keys % n)))
        self._db.executemany('UPDATE "user" SET followers = ?, following = ? WHERE user_id = ?',
                             zip(g.followers[users].tolist(), g.following[users].tolist(),
                                 users.tolist()))
        acted = np.logical_or.reduce(list(outcome.actions.values()))
        posts = np.unique(outcome.shown[acted])
        cols = [platform.posts.column(name)[posts].tolist() for name in _POST_COUNTERS]
        sets = ", ".join(f"{c} = ?" for c in _POST_COUNTERS.values())
        self._db.executemany(f"UPDATE post SET {sets} WHERE post_id = ?",
                             zip(*cols, posts.tolist()))
