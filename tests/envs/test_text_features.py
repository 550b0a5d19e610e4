"""Post text -> topic distribution (embedded MiniLM encoder) and sentiment (VADER)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from sandbox_rl.envs.text_features import PostTextAnalyzer, get_analyzer
from sandbox_rl.envs.topics import NUM_TOPICS, topic_index


@pytest.fixture(scope="module")
def analyzer() -> PostTextAnalyzer:
    return get_analyzer()


@pytest.mark.parametrize(
    ("text", "topic"),
    [
        ("What a match! Our team scored in the last minute and the players went wild.", "sports"),
        ("The new phone ships with a faster chip and an AI assistant built into the software.", "technology"),
        ("The senate votes on the new election law tomorrow.", "politics"),
    ],
)
def test_topic_argmax(analyzer: PostTextAnalyzer, text: str, topic: str) -> None:
    dist = analyzer.analyze([text]).topic_dist
    assert int(dist[0].argmax()) == topic_index(topic), dist


def test_distribution_rows_sum_to_one(analyzer: PostTextAnalyzer) -> None:
    texts = ["short", "A longer post about coffee, travel and my weekend plans in Lisbon."] * 3
    feats = analyzer.analyze(texts)
    assert feats.topic_dist.shape == (6, NUM_TOPICS) and feats.topic_dist.dtype == np.float32
    np.testing.assert_allclose(feats.topic_dist.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(feats.topic_dist >= 0)
    # Batched with different padding, the same text must get the same features.
    np.testing.assert_allclose(feats.topic_dist[0], feats.topic_dist[2], atol=1e-5)
    np.testing.assert_allclose(analyzer.analyze(texts[:1]).topic_dist[0], feats.topic_dist[0], atol=1e-5)


def test_sentiment(analyzer: PostTextAnalyzer) -> None:
    feats = analyzer.analyze(["I love this, amazing!", "This is terrible and I hate it", "The bus leaves at 9."])
    assert feats.sentiment.dtype == np.float32
    assert feats.sentiment[0] > 0.5 and feats.sentiment[1] < -0.5 and abs(feats.sentiment[2]) < 0.05


def test_temperature_sharpens(analyzer: PostTextAnalyzer) -> None:
    text = ["Our team won the basketball game last night."]
    sharp = PostTextAnalyzer(temperature=0.01).analyze(text).topic_dist
    soft = analyzer.analyze(text).topic_dist
    assert sharp.max() > soft.max()
    with pytest.raises(ValueError):
        PostTextAnalyzer(temperature=0.0)


def test_empty_input(analyzer: PostTextAnalyzer) -> None:
    feats = analyzer.analyze([])
    assert feats.topic_dist.shape == (0, NUM_TOPICS) and feats.sentiment.shape == (0,)


def test_import_has_no_side_effects() -> None:
    code = (
        "import sys, sandbox_rl.envs.text_features, sandbox_rl.envs.corpus;"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'models imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
