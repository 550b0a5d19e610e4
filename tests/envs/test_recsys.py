"""Feed recommenders and the per-row top-k selection."""

from __future__ import annotations

import numpy as np
import pytest

from sandbox_rl.envs.recsys import RECOMMENDERS, FeedContext, top_k


def _context(similarity: np.ndarray, following: np.ndarray, age_hours: np.ndarray,
             net_votes: np.ndarray, popularity: np.ndarray | None = None) -> FeedContext:
    m = similarity.shape[1]
    return FeedContext(
        similarity=similarity.astype(np.float32),
        following=following.astype(bool),
        recency=np.exp(-age_hours / 6.0).astype(np.float32),
        popularity=np.zeros(m, np.float32) if popularity is None else popularity.astype(np.float32),
        age_hours=age_hours.astype(np.float32),
        net_votes=net_votes.astype(np.int64),
    )


def _random_context(seed: int, rows: int = 40, cols: int = 64) -> FeedContext:
    rng = np.random.default_rng(seed)
    return _context(rng.random((rows, cols)), rng.random((rows, cols)) < 0.2,
                    rng.integers(0, 24, cols).astype(float), rng.integers(-5, 50, cols),
                    rng.random(cols))


def _rows(row: np.ndarray, col: np.ndarray, num_rows: int) -> list[list[int]]:
    return [sorted(col[row == r].tolist()) for r in range(num_rows)]


@pytest.mark.parametrize("k", [1, 5, 10, 64, 100])
def test_top_k_is_exactly_the_k_best_of_each_row(k: int) -> None:
    scores = np.random.default_rng(k).permutation(40 * 64).reshape(40, 64).astype(np.float32)
    row, col = top_k(scores, k)
    assert np.all(np.diff(row) >= 0), "grouped by row"
    expected = np.sort(np.argsort(-scores, axis=1)[:, :k], axis=1)
    assert _rows(row, col, 40) == expected.tolist()


def test_top_k_keeps_only_finite_entries_and_at_most_k() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random((30, 50)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.7] = -np.inf
    scores[3] = -np.inf  # a viewer with nothing to see
    scores[4, :] = 0.5  # all ties
    row, col = top_k(scores, 10)
    assert np.all(np.isfinite(scores[row, col]))
    counts = np.bincount(row, minlength=30)
    assert counts.max() <= 10 and counts[3] == 0 and counts[4] == 10
    finite = np.isfinite(scores).sum(axis=1)
    np.testing.assert_array_equal(counts, np.minimum(finite, 10))
    # where a row has fewer than k finite entries, every one of them is shown
    for r in np.flatnonzero(finite < 10):
        assert sorted(col[row == r].tolist()) == np.flatnonzero(np.isfinite(scores[r])).tolist()


def test_top_k_keeps_strictly_better_entries_when_the_threshold_ties() -> None:
    # the twitter scores of one viewer with interest weight 0: many equally old posts tie,
    # and the one fresh post (last column, as new posts are) scores highest
    scores = np.full((1, 20), 0.85, dtype=np.float32)
    scores[0, -1] = 2.0
    row, col = top_k(scores, 5)
    assert col.size == 5
    assert 19 in col.tolist(), "the best entry of the row must be in its top k"


def test_twitter_ranks_by_similarity_with_interest_weight_only() -> None:
    ctx = _context(np.array([[0.9, 0.1], [0.1, 0.9]]), np.array([[False, True], [True, False]]),
                   np.array([20.0, 0.0]), np.array([0, 100]), popularity=np.array([0.0, 1.0]))
    scores = RECOMMENDERS["twitter"](ctx, np.array([1.0, 0, 0, 0], np.float32),
                                     np.random.default_rng(0))
    assert scores[0, 0] > scores[0, 1] and scores[1, 1] > scores[1, 0]


def test_twitter_ranks_followed_authors_first_with_following_weight_only() -> None:
    ctx = _context(np.array([[0.9, 0.1], [0.1, 0.9]]), np.array([[False, True], [True, False]]),
                   np.array([20.0, 0.0]), np.array([0, 100]), popularity=np.array([0.0, 1.0]))
    scores = RECOMMENDERS["twitter"](ctx, np.array([0, 0, 0, 1.0], np.float32),
                                     np.random.default_rng(0))
    assert scores[0, 1] > scores[0, 0] and scores[1, 0] > scores[1, 1]


def test_twitter_recency_and_popularity_weights() -> None:
    ctx = _context(np.zeros((1, 2)), np.zeros((1, 2)), np.array([0.0, 12.0]), np.zeros(2),
                   popularity=np.array([0.0, 1.0]))
    rng = np.random.default_rng(0)
    recent = RECOMMENDERS["twitter"](ctx, np.array([0, 1.0, 0, 0], np.float32), rng)
    popular = RECOMMENDERS["twitter"](ctx, np.array([0, 0, 1.0, 0], np.float32), rng)
    assert recent[0, 0] > recent[0, 1] and popular[0, 1] > popular[0, 0]


def test_reddit_ignores_similarity_and_ranks_by_votes_and_age() -> None:
    weights = np.array([1.0, 1.0, 1.0, 1.0], np.float32)
    # posts: many votes and old, many votes and new, few votes and new, downvoted and new
    votes, age = np.array([1000, 1000, 10, -50]), np.array([30.0, 1.0, 1.0, 1.0])
    similarity = np.array([[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    following = np.array([[False, False, True, True], [True, True, False, False]])
    scores = RECOMMENDERS["reddit"](_context(similarity, following, age, votes), weights,
                                    np.random.default_rng(0))
    for r in range(2):  # every viewer gets the same order whatever their interests
        assert np.argsort(-scores[r]).tolist() == [1, 2, 0, 3]
    other = RECOMMENDERS["reddit"](_context(similarity[::-1], following[::-1], age, votes),
                                   weights, np.random.default_rng(0))
    np.testing.assert_allclose(other, scores)


def test_random_is_seeded() -> None:
    ctx = _random_context(0)
    w = np.array([1.0, 0.5, 0.3, 0.5], np.float32)
    a = RECOMMENDERS["random"](ctx, w, np.random.default_rng(1))
    b = RECOMMENDERS["random"](ctx, w, np.random.default_rng(1))
    c = RECOMMENDERS["random"](ctx, w, np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # and it ignores the context: interest similarity does not predict the score
    assert abs(np.corrcoef(a.ravel(), ctx.similarity.ravel())[0, 1]) < 0.1


@pytest.mark.parametrize("name", sorted(RECOMMENDERS))
def test_recommenders_return_finite_scores_of_the_context_shape(name: str) -> None:
    ctx = _random_context(3)
    scores = RECOMMENDERS[name](ctx, np.array([1.0, 0.5, 0.3, 0.5], np.float32),
                                np.random.default_rng(0))
    assert scores.shape == ctx.similarity.shape
    assert np.all(np.isfinite(scores))
