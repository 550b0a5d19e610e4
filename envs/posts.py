"""The posts of the platform as growable column arrays."""

from __future__ import annotations

import numpy as np

COUNTERS = ("likes", "dislikes", "reposts", "quotes", "comments")


class PostStore:
    """Append-only post table; ids are row numbers and grow with creation time.

    Columns: author, created (step), topic (unit-norm topic vector), main_topic, sentiment,
    tweet (id in the tweet corpus or -1), and the engagement counters of ``COUNTERS``.
    Free text (LLM posts) lives in ``texts`` keyed by post id.
    """

    def __init__(self, num_topics: int, capacity: int = 1024) -> None:
        self.size = 0
        self.num_topics = num_topics
        self.texts: dict[int, str] = {}
        self._cols = {
            "author": np.zeros(capacity, np.int32),
            "created": np.zeros(capacity, np.int32),
            "topic": np.zeros((capacity, num_topics), np.float32),
            "main_topic": np.zeros(capacity, np.int16),
            "sentiment": np.zeros(capacity, np.float32),
            "tweet": np.full(capacity, -1, np.int32),
            **{name: np.zeros(capacity, np.int32) for name in COUNTERS},
        }

    def __len__(self) -> int:
        return self.size

    def column(self, name: str) -> np.ndarray:
        """A view of the first ``size`` rows of a column."""
        return self._cols[name][: self.size]

    def append(self, author: np.ndarray, created: int, topic_dist: np.ndarray,
               sentiment: np.ndarray, tweet: np.ndarray | None = None) -> np.ndarray:
        """Add posts; ``topic_dist`` rows are distributions. Returns the new ids."""
        k = len(author)
        self._reserve(self.size + k)
        ids = np.arange(self.size, self.size + k)
        c = self._cols
        c["author"][ids] = author
        c["created"][ids] = created
        c["topic"][ids] = topic_dist / np.linalg.norm(topic_dist, axis=1, keepdims=True)
        c["main_topic"][ids] = np.argmax(topic_dist, axis=1)
        c["sentiment"][ids] = np.clip(sentiment, -1, 1)
        c["tweet"][ids] = -1 if tweet is None else tweet
        self.size += k
        return ids

    def add_counts(self, name: str, lo: int, counts: np.ndarray) -> None:
        """Add per-post counts to the contiguous id range starting at ``lo``."""
        self._cols[name][lo: lo + counts.size] += counts.astype(np.int32)

    def _reserve(self, needed: int) -> None:
        cap = self._cols["author"].shape[0]
        if needed <= cap:
            return
        new_cap = max(needed, 2 * cap)
        for name, col in self._cols.items():
            grown = np.full((new_cap,) + col.shape[1:], -1 if name == "tweet" else 0, col.dtype)
            grown[:cap] = col
            self._cols[name] = grown
