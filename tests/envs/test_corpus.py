"""The seed tweet corpus: preparation from the vaderSentiment sdist, loading, and topic/sign sampling."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sandbox_rl.envs.corpus import (
    CORPUS_FILE,
    TweetCorpus,
    load_corpus,
    prepare,
    read_tweets,
    sentiment_sign,
)
from sandbox_rl.envs.topics import NUM_TOPICS
from sandbox_rl.paths import cache_dir

SDIST_NAME = "vaderSentiment-3.3.2.tar.gz"


@pytest.fixture(scope="session")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist `make setup` keeps in the cache, else a fresh download; skip when neither works."""
    kept = cache_dir() / "sdist" / SDIST_NAME
    if kept.is_file():
        return kept
    dest = tmp_path_factory.mktemp("sdist")
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
           "vaderSentiment==3.3.2", "-d", str(dest)]
    if subprocess.run(cmd, capture_output=True).returncode != 0 or not (dest / SDIST_NAME).is_file():
        pytest.skip("vaderSentiment 3.3.2 sdist unavailable (run `make setup` or go online)")
    return dest / SDIST_NAME


def small_corpus() -> TweetCorpus:
    # topic 0: neg, neu, pos; topic 1: positive only; topic 2: none at all.
    return TweetCorpus(
        text=np.array(["a", "b", "c", "d", "e"]),
        sentiment=np.array([-0.8, 0.0, 0.5, 0.9, 0.3], np.float32),
        topic=np.array([0, 0, 0, 1, 1], np.int16),
    )


def test_read_tweets_parses_all_rows(sdist: Path) -> None:
    texts, sentiment = read_tweets(sdist)
    assert len(texts) == len(sentiment) == 4200
    assert all(texts) and not any("\r" in t or "&amp;" in t for t in texts)
    assert sentiment.dtype == np.float32 and -1 <= sentiment.min() < -0.5 and 0.5 < sentiment.max() <= 1


@pytest.mark.slow
def test_prepare_writes_one_pickle_free_file(sdist: Path, tmp_path: Path) -> None:
    out = prepare(sdist, tmp_path)
    assert out == tmp_path / CORPUS_FILE
    assert [p.name for p in tmp_path.iterdir()] == [CORPUS_FILE]  # no temp file left behind
    with np.load(out, allow_pickle=False) as data:
        assert set(data.files) == {"text", "sentiment", "topic"}
        assert data["text"].dtype.kind == "U" and data["topic"].dtype == np.int16
        assert data["sentiment"].dtype == np.float32 and len(data["topic"]) == 4200
    corpus = load_corpus(tmp_path)
    assert set(np.unique(corpus.topic)) == set(range(NUM_TOPICS))


def test_installed_corpus() -> None:
    corpus = load_corpus()
    assert len(corpus) == 4200
    assert corpus.text.dtype.kind == "U" and all(len(t) > 0 for t in corpus.text)
    assert np.all(np.abs(corpus.sentiment) <= 1)
    assert np.bincount(corpus.topic, minlength=NUM_TOPICS).min() > 0  # every topic has tweets
    assert load_corpus() is corpus  # loaded once


def test_pick_matches_topic_and_mostly_sign() -> None:
    corpus = load_corpus()
    rng = np.random.default_rng(0)
    topics = rng.integers(0, NUM_TOPICS, 5000)
    sentiments = rng.uniform(-1, 1, 5000).astype(np.float32)
    ids = corpus.pick(topics, sentiments, rng)
    assert ids.dtype == np.int32 and ids.shape == (5000,) and ids.min() >= 0
    np.testing.assert_array_equal(corpus.topic[ids], topics)
    same_sign = sentiment_sign(corpus.sentiment[ids]) == sentiment_sign(sentiments)
    assert same_sign.mean() > 0.9
    assert len(np.unique(ids)) > 1000  # random, not one tweet per bucket


def test_pick_is_deterministic_per_seed() -> None:
    corpus = load_corpus()
    topics, sentiments = np.arange(200) % NUM_TOPICS, np.linspace(-1, 1, 200)
    first = corpus.pick(topics, sentiments, np.random.default_rng(7))
    np.testing.assert_array_equal(first, corpus.pick(topics, sentiments, np.random.default_rng(7)))
    assert not np.array_equal(first, corpus.pick(topics, sentiments, np.random.default_rng(8)))


def test_pick_falls_back_to_other_signs_and_to_minus_one() -> None:
    corpus = small_corpus()
    rng = np.random.default_rng(0)
    n = 300
    np.testing.assert_array_equal(corpus.pick(np.zeros(n, int), np.full(n, -0.5), rng), 0)
    np.testing.assert_array_equal(corpus.pick(np.zeros(n, int), np.full(n, 0.01), rng), 1)
    assert set(corpus.pick(np.ones(n, int), np.full(n, 0.7), rng)) == {3, 4}
    assert set(corpus.pick(np.ones(n, int), np.full(n, -0.7), rng)) == {3, 4}  # no negative: any sign
    np.testing.assert_array_equal(corpus.pick(np.full(4, 2), np.zeros(4), rng), -1)
    assert corpus.pick(np.array([], int), np.array([]), rng).shape == (0,)
    with pytest.raises(ValueError):
        corpus.pick(np.array([NUM_TOPICS]), np.array([0.0]), rng)


def test_missing_cache_says_run_make_setup(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="make setup"):
        load_corpus(tmp_path)
