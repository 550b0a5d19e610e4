"""The directed follower graph: generation and incremental edits.

An edge ``u -> v`` means user ``u`` follows user ``v``. The graph is stored as a CSR structure
(``indptr`` and sorted ``indices``, exported as a ``scipy.sparse.csr_array``) plus two small sorted
sets of pending additions and removals that are merged in bulk. Written by hand because scipy's
sparse formats have no cheap single-edge insert: LIL/DOK are Python-object based and far too slow
at tens of millions of edges, while a step only adds or removes a few hundred.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from sandbox_rl.envs.state import ArraySpec, check_arrays


def generate_follow_graph(
    interests: np.ndarray,
    mean_follows: float,
    homophily: float,
    batches: int,
    rng: np.random.Generator,
    candidates_per_edge: int = 3,
    reciprocity: float = 0.2,
) -> tuple[np.ndarray, np.ndarray]:
    """Edges (src, dst) of a follower graph with preferential attachment and homophily.

    Users arrive in ``batches`` rounds (batched Barabasi-Albert): each newcomer draws
    ``candidates_per_edge`` candidates per edge from the users already present, with probability
    proportional to followers + 1, and follows the one whose interests are most similar
    (softmax with inverse temperature ``homophily``, through the Gumbel-max trick). A fraction
    ``reciprocity`` of edges is followed back, so early users also follow later ones.
    ``interests`` must be unit-norm rows, so their dot product is a cosine similarity.
    """
    n = interests.shape[0]
    order = rng.permutation(n).astype(np.int32)
    out_deg = np.clip(rng.poisson(mean_follows, n), 1, n - 1).astype(np.int64)
    bounds = np.linspace(0, n, batches + 1).astype(np.int64)
    first = max(int(bounds[1]), min(n, int(2 * mean_follows) + 2))
    bounds = np.concatenate(([0, first], bounds[bounds > first]))
    src, dst = _seed_edges(order[:first], out_deg, rng)
    srcs, dsts = [src], [dst]
    for lo, hi in zip(bounds[1:-1], bounds[2:]):
        src, dst = _attach(order[lo:hi], order[:lo], np.concatenate(dsts), out_deg, interests,
                           homophily, candidates_per_edge, rng)
        srcs.append(src)
        dsts.append(dst)
    src, dst = np.concatenate(srcs), np.concatenate(dsts)
    back = rng.random(src.size) < reciprocity
    src, dst = np.concatenate((src, dst[back])), np.concatenate((dst, src[back]))
    keep = src != dst
    return src[keep], dst[keep]


def _seed_edges(seed: np.ndarray, out_deg: np.ndarray, rng: np.random.Generator):
    """The first arrivals follow each other uniformly at random."""
    deg = np.minimum(out_deg[seed], seed.size - 1)
    src = np.repeat(seed, deg)
    dst = seed[rng.integers(0, seed.size, src.size)]
    return src, dst


def _attach(newcomers, present, edge_dst, out_deg, interests, homophily, c, rng):
    """Newcomers' edges; candidates drawn with probability proportional to followers + 1.

    Drawing "followers + 1" in O(1) per draw: with probability present / (edges + present) pick a
    present user uniformly, otherwise the target of a uniformly chosen existing edge (the
    copying-model form of preferential attachment).
    """
    src = np.repeat(newcomers, out_deg[newcomers])
    shape = (src.size, c)
    uniform = rng.random(shape) * (edge_dst.size + present.size) < present.size
    cand = np.where(uniform, present[rng.integers(0, present.size, shape)],
                    edge_dst[rng.integers(0, edge_dst.size, shape)])
    sim = np.einsum("ef,ecf->ec", interests[src], interests[cand])
    pick = np.argmax(homophily * sim + rng.gumbel(size=shape).astype(np.float32), axis=1)
    return src, cand[np.arange(src.size), pick]


@dataclass
class FollowGraph:
    """A mutable directed graph over ``n`` users with vectorised queries and bulk edits."""

    n: int
    keys: np.ndarray  # sorted int64 src * n + dst of the compacted graph
    indptr: np.ndarray  # CSR row pointers of ``keys``
    followers: np.ndarray  # in-degree per user, including pending edits
    following: np.ndarray  # out-degree per user, including pending edits
    _add: np.ndarray
    _del: np.ndarray

    def __post_init__(self) -> None:
        # Scratch lookups of follows_mask, all zero between calls.
        self._run_start = np.zeros(self.n, dtype=np.int64)
        self._run_len = np.zeros(self.n, dtype=np.int64)

    @classmethod
    def from_edges(cls, n: int, src: np.ndarray, dst: np.ndarray) -> "FollowGraph":
        """Build from edge arrays; duplicate edges collapse (scipy sums them into one entry)."""
        # np.unique on tens of millions of keys is an order of magnitude slower than scipy's
        # COO -> CSR conversion, which also sorts each row's indices.
        csr = sp.csr_array((np.ones(src.size, np.int8), (src, dst)), shape=(n, n))
        csr.sum_duplicates()
        indptr = csr.indptr.astype(np.int64)
        keys = np.repeat(np.arange(n, dtype=np.int64) * n, np.diff(indptr)) + csr.indices
        empty = np.empty(0, dtype=np.int64)
        return cls(n, keys, indptr, np.bincount(csr.indices, minlength=n), np.diff(indptr),
                   empty, empty.copy())

    @property
    def num_edges(self) -> int:
        return int(self.keys.size + self._add.size - self._del.size)

    def contains(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Whether each ``src[i]`` follows ``dst[i]``."""
        k = src.astype(np.int64) * self.n + dst
        return (isin_sorted(k, self.keys) & ~isin_sorted(k, self._del)) | isin_sorted(k, self._add)

    def follow(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Add edges; returns the keys ``src * n + dst`` that were new (self-loops, repeats ignored)."""
        k = sorted_unique(src.astype(np.int64) * self.n + dst)
        k = k[(k // self.n != k % self.n) & ~self.contains(k // self.n, k % self.n)]
        revived = isin_sorted(k, self._del)
        self._del = np.setdiff1d(self._del, k[revived], assume_unique=True)
        self._add = np.union1d(self._add, k[~revived])
        np.add.at(self.followers, k % self.n, 1)
        np.add.at(self.following, k // self.n, 1)
        self._maybe_compact()
        return k

    def unfollow(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Remove edges; returns the keys that existed and were removed."""
        k = sorted_unique(src.astype(np.int64) * self.n + dst)
        k = k[self.contains(k // self.n, k % self.n)]
        pending = isin_sorted(k, self._add)
        self._add = np.setdiff1d(self._add, k[pending], assume_unique=True)
        self._del = np.union1d(self._del, k[~pending])
        np.subtract.at(self.followers, k % self.n, 1)
        np.subtract.at(self.following, k // self.n, 1)
        self._maybe_compact()
        return k

    def followers_of(self, user: int) -> np.ndarray:
        """Sorted ids of the users who follow ``user`` (a scan of all edges: call rarely)."""
        src = self.keys[self.keys % self.n == user] // self.n
        added = self._add[self._add % self.n == user] // self.n
        removed = self._del[self._del % self.n == user] // self.n
        return np.union1d(np.setdiff1d(src, removed), added)

    def follows_mask(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Dense bool matrix ``[len(rows), len(cols)]``: does ``rows[i]`` follow ``cols[j]``.

        ``rows`` must be sorted and unique; ``cols`` may repeat (several posts of one author).
        Cost is proportional to the rows' out-degrees, not to ``n``, so it suits the few
        thousand users active in a step.
        """
        out = np.zeros((rows.size, cols.size), dtype=bool)
        if self.num_edges == 0 or rows.size == 0 or cols.size == 0:
            return out
        order = np.argsort(cols, kind="stable")
        sorted_cols = cols[order]
        # Dense per-user lookup of where each column user's run starts in sorted_cols and its
        # length: two gathers per followee instead of two binary searches.
        first = np.flatnonzero(np.concatenate(([True], sorted_cols[1:] != sorted_cols[:-1])))
        authors = sorted_cols[first]
        self._run_start[authors] = first
        self._run_len[authors] = np.diff(np.append(first, sorted_cols.size))
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        counts = ends - starts
        entry = _expand_ranges(starts, counts)
        row_pos = np.repeat(np.arange(rows.size), counts)
        for value, src_pos, dst in ((True, row_pos, self.keys[entry] % self.n),
                                    *self._pending_in(rows)):
            hits = self._run_len[dst]
            lo = self._run_start[dst]
            out[np.repeat(src_pos, hits), order[_expand_ranges(lo, hits)]] = value
        self._run_len[authors] = 0
        return out

    def _pending_in(self, rows: np.ndarray):
        """Pending removals then additions among ``rows``: (value, row positions, dst)."""
        for pending, value in ((self._del, False), (self._add, True)):
            if pending.size:
                s = pending // self.n
                m = isin_sorted(s, rows)
                yield value, np.searchsorted(rows, s[m]), pending[m] % self.n

    def adjacency(self) -> sp.csr_array:
        """The current graph as a ``scipy.sparse.csr_array`` (pending edits merged)."""
        self.compact()
        data = np.ones(self.keys.size, dtype=np.int8)
        return sp.csr_array((data, (self.keys % self.n).astype(np.int32), self.indptr),
                            shape=(self.n, self.n))

    def to_networkx(self):
        """The graph as a ``networkx.DiGraph``: nodes are the user ids ``0 .. n - 1`` and an edge
        ``u -> v`` means ``u`` follows ``v`` (as ``adjacency()[u, v]``). Pending edits are
        included and this graph is left as it is (not compacted); edges carry no attributes."""
        # Imported here: networkx would add about a sixth to the env's import time, for an
        # export that only analyses need.
        import networkx as nx

        keys = np.union1d(self.keys[~isin_sorted(self.keys, self._del)], self._add)
        graph = nx.DiGraph()
        graph.add_nodes_from(range(self.n))
        graph.add_edges_from(zip((keys // self.n).tolist(), (keys % self.n).tolist()))
        return graph

    def compact(self) -> None:
        """Merge pending edits into the CSR arrays."""
        if not (self._add.size or self._del.size):
            return
        keys = np.delete(self.keys, np.searchsorted(self.keys, self._del))
        self.keys = np.insert(keys, np.searchsorted(keys, self._add), self._add)
        self.indptr = _indptr(self.keys, self.n)
        self._add = self._add[:0]
        self._del = self._del[:0]

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, np.ndarray]:
        """The CSR arrays, degrees and pending edits (aliases, not copies); ``n`` is implied."""
        return {"keys": self.keys, "indptr": self.indptr, "followers": self.followers,
                "following": self.following, "add": self._add, "del": self._del}

    @classmethod
    def from_state(cls, n: int, arrays: dict[str, np.ndarray]) -> "FollowGraph":
        """A graph from a :meth:`state_dict` that :func:`check_graph_state` accepted (copied)."""
        a = {k: v.copy() for k, v in arrays.items()}
        return cls(n, a["keys"], a["indptr"], a["followers"], a["following"], a["add"], a["del"])

    def _maybe_compact(self) -> None:
        if self._add.size + self._del.size > max(4096, self.keys.size // 64):
            self.compact()


def check_graph_state(n: int, arrays: dict[str, np.ndarray], where: str) -> None:
    """ValueError unless ``arrays`` is a consistent :meth:`FollowGraph.state_dict` on ``n`` users."""
    nn = n * n
    key = ArraySpec("int64", ("E",), 0, nn)
    check_arrays(arrays, {
        "keys": key, "indptr": ArraySpec("int64", (n + 1,), 0),
        "followers": ArraySpec("int64", (n,), 0), "following": ArraySpec("int64", (n,), 0),
        "add": key._replace(shape=("A",)), "del": key._replace(shape=("D",))}, {}, where)
    keys, add, rm = arrays["keys"], arrays["add"], arrays["del"]
    for name in ("keys", "add", "del"):
        if np.any(np.diff(arrays[name]) <= 0):
            raise ValueError(f"state array {where + name!r} must be sorted and unique")
    if not np.array_equal(arrays["indptr"], _indptr(keys, n)):
        raise ValueError(f"state array {where}indptr does not match {where}keys")
    if isin_sorted(rm, keys).sum() != rm.size or isin_sorted(add, keys).any():
        raise ValueError(f"state arrays {where}add / {where}del disagree with {where}keys")
    degree = np.bincount(keys // n, minlength=n) + np.bincount(add // n, minlength=n) \
        - np.bincount(rm // n, minlength=n)
    indegree = np.bincount(keys % n, minlength=n) + np.bincount(add % n, minlength=n) \
        - np.bincount(rm % n, minlength=n)
    if not (np.array_equal(degree, arrays["following"])
            and np.array_equal(indegree, arrays["followers"])):
        raise ValueError(f"state arrays {where}followers / {where}following disagree with the edges")


def _indptr(keys: np.ndarray, n: int) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(np.bincount(keys // n, minlength=n)))).astype(np.int64)


def _expand_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each start and count, without a Python loop."""
    total = int(counts.sum())
    return np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(total)


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` through a sort: numpy 2's hash-based unique is many times slower here."""
    v = np.sort(values)
    return v[np.concatenate(([True], v[1:] != v[:-1]))] if v.size else v


def isin_sorted(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Vectorised membership in a sorted unique array (faster than np.isin for a large set)."""
    if sorted_set.size == 0:
        return np.zeros(values.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_set, values), sorted_set.size - 1)
    return sorted_set[pos] == values
