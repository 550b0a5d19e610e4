"""The follower graph: incremental edits against a brute-force edge set, and the generator."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from sandbox_rl.envs.graph import FollowGraph, generate_follow_graph
from sandbox_rl.envs.users import generate_users

N = 300


def _random_graph(seed: int, n: int = N, edges: int = 3000) -> tuple[FollowGraph, set[tuple[int, int]]]:
    """A graph from random edges (duplicates and self-loops included) and its reference edge set."""
    rng = np.random.default_rng(seed)
    src, dst = rng.integers(0, n, edges), rng.integers(0, n, edges)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    return FollowGraph.from_edges(n, src, dst), set(zip(src.tolist(), dst.tolist()))


def _edit(graph: FollowGraph, reference: set[tuple[int, int]], rng: np.random.Generator) -> None:
    """A few hundred follows and unfollows, some of existing, some of pending, some of new edges."""
    n = graph.n
    existing = np.array(sorted(reference))
    drop = existing[rng.choice(len(existing), 200, replace=False)]
    graph.unfollow(drop[:, 0], drop[:, 1])
    reference.difference_update(map(tuple, drop.tolist()))
    src, dst = rng.integers(0, n, 300), rng.integers(0, n, 300)
    revive = drop[:50]  # removed above, still pending: following them again must revive them
    src, dst = np.concatenate((src, revive[:, 0])), np.concatenate((dst, revive[:, 1]))
    graph.follow(src, dst)
    reference.update((s, d) for s, d in zip(src.tolist(), dst.tolist()) if s != d)
    added = np.array([(s, d) for s, d in zip(src.tolist(), dst.tolist()) if s != d][:40])
    graph.unfollow(added[:, 0], added[:, 1])  # some of these are pending additions
    reference.difference_update(map(tuple, added.tolist()))


def _brute_mask(reference: set[tuple[int, int]], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return np.array([[(r, c) in reference for c in cols.tolist()] for r in rows.tolist()])


def _assert_matches(graph: FollowGraph, reference: set[tuple[int, int]], rng: np.random.Generator) -> None:
    rows = np.unique(rng.integers(0, graph.n, 60))
    cols = rng.integers(0, graph.n, 80)  # unsorted, with repeats
    mask = graph.follows_mask(rows, cols)
    expected = _brute_mask(reference, rows, cols)
    np.testing.assert_array_equal(mask, expected)
    rr, cc = np.repeat(rows, cols.size), np.tile(cols, rows.size)
    np.testing.assert_array_equal(graph.contains(rr, cc), expected.ravel())
    assert graph.num_edges == len(reference)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_follows_mask_agrees_with_contains_and_reference_through_edits(seed: int) -> None:
    graph, reference = _random_graph(seed)
    rng = np.random.default_rng(100 + seed)
    _assert_matches(graph, reference, rng)
    _edit(graph, reference, rng)
    assert graph._add.size and graph._del.size, "edits should still be pending (no auto-compaction)"
    _assert_matches(graph, reference, rng)
    graph.compact()
    assert graph._add.size == 0 and graph._del.size == 0
    _assert_matches(graph, reference, rng)


def test_follows_mask_of_rows_whose_only_edges_are_pending() -> None:
    graph = FollowGraph.from_edges(10, np.array([0]), np.array([1]))
    graph.follow(np.array([3, 3]), np.array([7, 2]))
    mask = graph.follows_mask(np.array([0, 3]), np.array([1, 2, 7, 7]))
    np.testing.assert_array_equal(mask, [[True, False, False, False], [False, True, True, True]])


def test_follow_returns_only_new_edges() -> None:
    graph, reference = _random_graph(3)
    old = np.array(sorted(reference))[:20]
    src = np.concatenate(([5, 5, 7, 9, 9], old[:, 0]))
    dst = np.concatenate(([5, 8, 7, 4, 4], old[:, 1]))  # two self-loops, one repeat, 20 existing
    before = graph.num_edges
    new = graph.follow(src, dst)
    expected = sorted({s * N + d for s, d in zip(src.tolist(), dst.tolist())
                       if s != d and (s, d) not in reference})
    assert new.tolist() == expected
    assert graph.num_edges == before + len(expected)
    assert graph.follow(src, dst).size == 0, "following again adds nothing"


def test_unfollow_returns_only_existing_edges() -> None:
    graph, reference = _random_graph(4)
    old = np.array(sorted(reference))[:20]
    absent = [(s, d) for s, d in [(1, 2), (2, 1), (6, 6), (11, 12)] if (s, d) not in reference]
    src = np.concatenate((old[:, 0], [s for s, _ in absent], old[:3, 0]))
    dst = np.concatenate((old[:, 1], [d for _, d in absent], old[:3, 1]))
    before = graph.num_edges
    gone = graph.unfollow(src, dst)
    assert gone.tolist() == sorted(s * N + d for s, d in old.tolist())
    assert graph.num_edges == before - 20
    assert graph.unfollow(src, dst).size == 0, "unfollowing again removes nothing"
    assert not graph.contains(old[:, 0], old[:, 1]).any()


def _assert_degrees(graph: FollowGraph, reference: set[tuple[int, int]]) -> None:
    edges = np.array(sorted(reference))
    np.testing.assert_array_equal(graph.followers, np.bincount(edges[:, 1], minlength=graph.n))
    np.testing.assert_array_equal(graph.following, np.bincount(edges[:, 0], minlength=graph.n))


def test_degrees_equal_bincounts_of_edges() -> None:
    graph, reference = _random_graph(5)
    _assert_degrees(graph, reference)
    _edit(graph, reference, np.random.default_rng(5))
    _assert_degrees(graph, reference)  # pending edits count
    graph.compact()
    _assert_degrees(graph, reference)
    np.testing.assert_array_equal(graph.followers, np.bincount(graph.keys % N, minlength=N))
    np.testing.assert_array_equal(graph.following, np.bincount(graph.keys // N, minlength=N))
    assert np.all(np.diff(graph.keys) > 0), "compacted keys are sorted and unique"
    np.testing.assert_array_equal(np.diff(graph.indptr), graph.following)


def test_adjacency_is_csr_with_one_entry_per_edge() -> None:
    graph, reference = _random_graph(6)
    _edit(graph, reference, np.random.default_rng(6))
    adj = graph.adjacency()
    assert isinstance(adj, sp.csr_array)
    assert adj.shape == (N, N)
    assert adj.nnz == graph.num_edges == len(reference)
    coo = adj.tocoo()
    assert set(zip(coo.row.tolist(), coo.col.tolist())) == reference
    assert np.all(coo.data == 1)


def test_to_networkx_matches_the_sparse_matrix_and_leaves_the_graph_alone() -> None:
    import networkx as nx

    graph, reference = _random_graph(8)
    _edit(graph, reference, np.random.default_rng(8))
    pending = {k: v.copy() for k, v in graph.state_dict().items()}
    nxg = graph.to_networkx()
    for name, array in graph.state_dict().items():  # pending edits not compacted
        np.testing.assert_array_equal(array, pending[name], err_msg=name)
    assert isinstance(nxg, nx.DiGraph)
    assert sorted(nxg.nodes) == list(range(N))
    adj = graph.adjacency()
    assert nxg.number_of_edges() == adj.nnz == graph.num_edges == len(reference)
    assert set(nxg.edges) == reference
    src, dst = adj.nonzero()
    for u, v in list(zip(src.tolist(), dst.tolist()))[:20]:  # u -> v: u follows v
        assert nxg.has_edge(u, v) and graph.contains(np.array([u]), np.array([v]))[0]
    np.testing.assert_array_equal([nxg.in_degree(u) for u in range(N)], graph.followers)
    np.testing.assert_array_equal([nxg.out_degree(u) for u in range(N)], graph.following)


def test_followers_of_matches_brute_force_scan() -> None:
    graph, reference = _random_graph(7)
    rng = np.random.default_rng(7)
    _edit(graph, reference, rng)
    for stage in ("pending", "compacted"):
        for user in rng.integers(0, N, 15).tolist():
            expected = sorted(s for s, d in reference if d == user)
            assert graph.followers_of(user).tolist() == expected, (stage, user)
        graph.compact()


def test_empty_graph_queries() -> None:
    graph = FollowGraph.from_edges(20, np.empty(0, np.int64), np.empty(0, np.int64))
    assert graph.num_edges == 0
    assert not graph.follows_mask(np.arange(5), np.arange(20)).any()
    assert graph.followers_of(3).size == 0
    assert graph.adjacency().nnz == 0


# ---------------------------------------------------------------------------------- generation
def _interests(n: int, seed: int) -> np.ndarray:
    interests = generate_users(n, 10, 0.04, 0.08, np.random.default_rng(seed)).interests
    return interests / np.linalg.norm(interests, axis=1, keepdims=True)


def _generate(interests: np.ndarray, homophily: float, seed: int, mean_follows: float = 20.0):
    return generate_follow_graph(interests, mean_follows, homophily, 16, np.random.default_rng(seed))


@pytest.mark.parametrize("n", [200, 2000])
def test_generated_graph_has_no_self_loops_and_sane_out_degree(n: int) -> None:
    src, dst = _generate(_interests(n, 0), 4.0, 1)
    assert not np.any(src == dst)
    assert src.min() >= 0 and max(src.max(), dst.max()) < n
    graph = FollowGraph.from_edges(n, src, dst)
    assert np.all(np.diff(graph.keys) > 0), "no duplicate edges once built"
    assert graph.num_edges == np.unique(src.astype(np.int64) * n + dst).size
    mean_out = graph.num_edges / n
    assert 0.7 * 20 <= mean_out <= 1.3 * 20, mean_out


def test_homophily_raises_interest_similarity_along_edges() -> None:
    interests = _interests(1000, 2)

    def mean_similarity(homophily: float) -> float:
        src, dst = _generate(interests, homophily, 3)
        return float(np.einsum("ef,ef->e", interests[src], interests[dst]).mean())

    assert mean_similarity(4.0) > mean_similarity(0.0) + 0.05


def test_in_degree_is_heavy_tailed() -> None:
    n = 2000
    src, dst = _generate(_interests(n, 4), 4.0, 5)
    indeg = FollowGraph.from_edges(n, src, dst).followers
    assert indeg.max() > 10 * np.median(indeg)
    top = np.sort(indeg)[::-1]
    assert top[: n // 100].sum() > 0.1 * indeg.sum(), "the top 1% of users hold >10% of follows"
