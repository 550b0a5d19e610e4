"""The posts of the platform as growable column arrays."""

from __future__ import annotations

import numpy as np

from sandbox_rl.envs.state import ArraySpec, check_arrays, check_int, check_keys

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

    # ------------------------------------------------------------------ state
    def state_dict(self) -> tuple[dict, dict[str, np.ndarray]]:
        """``({"size", "capacity"}, columns' first ``size`` rows and the texts)``; columns are
        views, not copies. Texts are two arrays: post ids and a unicode array."""
        ids = np.fromiter(self.texts, dtype=np.int64, count=len(self.texts))
        text = np.array([self.texts[int(i)] for i in ids], dtype=str)
        arrays = {name: self.column(name) for name in self._cols}
        return ({"size": self.size, "capacity": int(self._cols["author"].shape[0])},
                {**arrays, "text_ids": ids, "text_values": text.reshape(ids.size)})

    @classmethod
    def check_state(cls, num_topics: int, num_users: int, meta: dict,
                    arrays: dict[str, np.ndarray], where: str) -> None:
        """ValueError unless ``(meta, arrays)`` is a plausible :meth:`state_dict`."""
        check_keys(meta, ("size", "capacity"), where.rstrip("."))
        size = check_int(meta["size"], where + "size", 0)
        check_int(meta["capacity"], where + "capacity", max(size, 1))
        counter = ArraySpec("int32", ("P",), 0)
        check_arrays(arrays, {
            "author": ArraySpec("int32", ("P",), 0, num_users),
            "created": ArraySpec("int32", ("P",)),
            "topic": ArraySpec("float32", ("P", num_topics)),
            "main_topic": ArraySpec("int16", ("P",), 0, num_topics),
            "sentiment": ArraySpec("float32", ("P",)),
            "tweet": ArraySpec("int32", ("P",), -1),
            **{name: counter for name in COUNTERS},
            "text_ids": ArraySpec("int64", ("X",), 0, size),
            "text_values": ArraySpec("U", ("X",))}, {"P": size}, where)
        if np.unique(arrays["text_ids"]).size != arrays["text_ids"].size:
            raise ValueError(f"state array {where}text_ids repeats a post id")

    @classmethod
    def from_state(cls, num_topics: int, meta: dict, arrays: dict[str, np.ndarray]) -> "PostStore":
        """A store from a checked :meth:`state_dict` (arrays are copied)."""
        store = cls(num_topics, capacity=meta["capacity"])
        store.size = meta["size"]
        for name, col in store._cols.items():
            col[: store.size] = arrays[name]
        store.texts = {int(i): str(t) for i, t in zip(arrays["text_ids"], arrays["text_values"])}
        return store

    def _reserve(self, needed: int) -> None:
        cap = self._cols["author"].shape[0]
        if needed <= cap:
            return
        new_cap = max(needed, 2 * cap)
        for name, col in self._cols.items():
            grown = np.full((new_cap,) + col.shape[1:], -1 if name == "tweet" else 0, col.dtype)
            grown[:cap] = col
            self._cols[name] = grown
