"""The friendship graph of a population: undirected, one CSR row per population row.

Two ways to get one (``[social] graph``):

- **data** (:func:`graph_from_friends`): the world's ``friends`` table (Last.fm HetRec's
  ``user_friends.dat``, a generic world's ``friends`` file). Every simulated user must be a
  distinct real user of the world (no resampled or synthetic personas: they have no friends
  of their own), else a ConfigError says how many are not. A link is a friendship in both
  directions (``a b`` and ``b a`` are the same one, merged). Links to users the world does not
  know, self-links, and the same (ordered) link listed twice are *bad links*: with
  ``on_bad_links = "error"`` the first one is a DataError naming the file and line; with
  ``"clean"`` (the default) they are dropped and counted (:class:`GraphStats`, kept in the
  run's ``social.json``). Links to real users outside the population (not targeted) are left
  out and counted too: such a user simply never hears from them.
- **generated** (:func:`generate_graph`): each user draws a number of friend stubs from the
  degree distribution (poisson, a power law or a lognormal, with the configured mean); each
  stub picks a partner among 32 candidates drawn in proportion to their own stubs
  (Chung-Lu), with weight exp(homophily x cosine of the two users' preference vectors): friends
  who like the same things (homophily by taste). Duplicates and self-pairs are dropped.

:func:`community_order` reorders a population so that graph communities (label propagation)
sit together, in breadth-first order inside each: shards cut from that order exchange fewer
messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import polars as pl

from recoworld.config import SocialConfig
from recoworld.errors import ConfigError, DataError
from recoworld.rng import generator


@dataclass(frozen=True, eq=False)
class SocialGraph:
    """An undirected graph over ``n`` population rows, in CSR form: the friends of row ``u``
    are ``friends[indptr[u]:indptr[u + 1]]``, sorted. Memory: ``n + 1`` offsets and two
    entries per friendship."""

    indptr: np.ndarray  # (n + 1,) int64
    friends: np.ndarray  # (2 * edges,) int64, sorted within each row (see ordered_by)

    @property
    def n(self) -> int:
        return int(self.indptr.size - 1)

    @property
    def edges(self) -> int:
        return int(self.friends.size // 2)

    def degree(self) -> np.ndarray:
        return np.diff(self.indptr)

    def of(self, u: int) -> np.ndarray:
        """The friends of row ``u``."""
        return self.friends[self.indptr[u] : self.indptr[u + 1]]

    def permute(self, order: np.ndarray) -> SocialGraph:
        """The same graph with row ``order[i]`` as row ``i``."""
        inv = np.empty_like(order)
        inv[order] = np.arange(order.size)
        src = np.repeat(np.arange(self.n), self.degree())
        return from_pairs(inv[src], inv[self.friends], self.n)

    def ordered_by(self, key: np.ndarray) -> SocialGraph:
        """The same graph with each row's friends in order of ``key`` (per row; the users'
        ids): who a user picks among its friends then does not depend on the row order."""
        src = np.repeat(np.arange(self.n), self.degree())
        order = np.lexsort((key[self.friends], src))
        return SocialGraph(self.indptr, self.friends[order])

    @classmethod
    def empty(cls, n: int) -> SocialGraph:
        return cls(np.zeros(n + 1, np.int64), np.zeros(0, np.int64))


def from_pairs(a: np.ndarray, b: np.ndarray, n: int) -> SocialGraph:
    """The undirected graph of pairs (a[i], b[i]) over rows 0..n-1; self-pairs and repeats
    (in either direction) are dropped."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    keep = a != b
    lo, hi = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
    key = np.unique(lo * n + hi)
    lo, hi = key // n, key % n
    src = np.concatenate([lo, hi])
    dst = np.concatenate([hi, lo])
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    return SocialGraph(indptr, dst)


class GraphStats(msgspec.Struct, frozen=True, kw_only=True):
    """How a graph was built, and what was left out (kept in the run's ``social.json``)."""

    source: str
    """data: the friends table's file; generated: "generated"."""
    users: int
    friendships: int
    """Undirected links between simulated users."""
    mean_degree: float
    max_degree: int
    isolated: int
    """Simulated users without a friend in the population (they never hear anything)."""
    links_read: int = 0
    """data: rows of the friends table."""
    unknown_users: int = 0
    """data: links naming a user the world does not know (dropped)."""
    self_links: int = 0
    """data: links of a user to itself (dropped)."""
    duplicates: int = 0
    """data: the same (ordered) link listed again (dropped)."""
    reciprocal: int = 0
    """data: links listed in both directions (one friendship; merged, not an error)."""
    outside_population: int = 0
    """data: friendships with a real user who is not simulated (left out)."""


def friends_file(world_source: str, dataset: str) -> tuple[str, int]:
    """Where the world's friends table came from, and the line of its first row (for error
    messages): Last.fm's ``user_friends.dat`` has a header line; other worlds name the folder
    and count rows from 1."""
    if dataset == "lastfm" and world_source:
        return str(Path(world_source) / "user_friends.dat"), 2
    return f"{world_source or dataset}: friends table", 1


def graph_from_friends(
    friends: pl.DataFrame,
    known_users: pl.Series,
    source_users: np.ndarray,
    *,
    on_bad: str,
    where: tuple[str, int],
) -> tuple[SocialGraph, GraphStats]:
    """The graph of a population whose row ``i`` is the real user ``source_users[i]``, from
    the world's ``friends`` (user_id, friend_id) and the world's user ids ``known_users``.
    ``where``: (file, line of the first row) for error messages; ``on_bad``: "error" | "clean"
    (module docstring)."""
    path, first_line = where
    n = int(source_users.size)
    src = np.asarray(source_users, dtype=object)
    real = [s for s in src.tolist() if s]
    missing, repeated = n - len(real), len(real) - len(set(real))
    if missing or repeated:
        raise ConfigError(
            f'[social] graph = "data" needs every simulated user to be a distinct real user '
            f"of the world (it takes their friendships from {path}); got {n} users of which "
            f"{missing} are synthetic and {repeated} repeat a real user "
            "(resampled): lower population.size to at most the matching real users (0 = each "
            'once), or set [social] graph = "generated" - at `$.social.graph`'
        )
    u = friends["user_id"].to_numpy().astype(str)
    f = friends["friend_id"].to_numpy().astype(str)
    rows = u.size
    known = np.asarray(known_users.to_numpy().astype(str))
    unknown = ~np.isin(u, known) | ~np.isin(f, known)
    selfs = (u == f) & ~unknown
    pair = np.char.add(np.char.add(u, "\x1f"), f)
    _, first = np.unique(pair, return_index=True)
    dup = np.ones(rows, bool)
    dup[first] = False
    dup &= ~unknown & ~selfs
    if on_bad == "error":
        for mask, what, expected in (
            (unknown, "names a user the world does not know", "user ids of the world's users"),
            (selfs, "links a user to itself", "two different users"),
            (dup, "repeats an earlier link", "each link once"),
        ):
            if mask.any():
                k = int(np.flatnonzero(mask)[0])
                raise DataError(
                    path,
                    f"the link {str(u[k])!r} -> {str(f[k])!r} {what} ([social] on_bad_links "
                    '= "error"; "clean" drops and counts such links)',
                    expected=expected,
                    line=k + first_line,
                )
    good = ~(unknown | selfs | dup)
    gu, gf = u[good], f[good]
    names = src.astype(str)
    order = np.argsort(names, kind="stable")
    a, b = _rows(names, order, gu), _rows(names, order, gf)
    inside = (a >= 0) & (b >= 0)
    fwd = np.char.add(np.char.add(gu, "\x1f"), gf)
    back = np.char.add(np.char.add(gf, "\x1f"), gu)
    reciprocal = int(np.isin(fwd, back).sum() // 2)
    ou, of = gu[~inside], gf[~inside]
    swap = ou > of
    lo, hi = np.where(swap, of, ou), np.where(swap, ou, of)
    outside_pairs = np.unique(np.char.add(np.char.add(lo, "\x1f"), hi))
    graph = from_pairs(a[inside], b[inside], n)
    return graph, _stats(
        graph,
        source=path,
        links_read=rows,
        unknown_users=int(unknown.sum()),
        self_links=int(selfs.sum()),
        duplicates=int(dup.sum()),
        reciprocal=reciprocal,
        outside_population=int(outside_pairs.size),
    )


def _rows(names: np.ndarray, order: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The population row of each of ``ids`` (-1 where it is not simulated); ``order`` sorts
    ``names``."""
    if names.size == 0:
        return np.full(ids.size, -1, np.int64)
    pos = np.clip(np.searchsorted(names[order], ids), 0, names.size - 1)
    hit = names[order][pos] == ids
    return np.where(hit, order[pos], -1).astype(np.int64)


def _stats(graph: SocialGraph, **extra: object) -> GraphStats:
    deg = graph.degree()
    return GraphStats(
        users=graph.n,
        friendships=graph.edges,
        mean_degree=round(float(deg.mean()) if deg.size else 0.0, 4),
        max_degree=int(deg.max()) if deg.size else 0,
        isolated=int((deg == 0).sum()),
        **extra,  # type: ignore[arg-type]
    )


CANDIDATES = 32
"""Partners a generated stub chooses among."""


def degree_draws(cfg: SocialConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """Friend stubs per user (integers in [0, n - 1]) with mean about ``cfg.mean_degree``."""
    m = cfg.mean_degree
    if cfg.degree == "poisson":
        d = rng.poisson(m, n).astype(np.float64)
    elif cfg.degree == "lognormal":
        sigma = 1.0
        d = rng.lognormal(np.log(max(m, 1e-9)) - sigma**2 / 2, sigma, n)
    else:  # Pareto tail with exponent a: mean x_min (a - 1) / (a - 2)
        a = cfg.degree_exponent
        x_min = m * (a - 2) / (a - 1)
        d = x_min * (1.0 - rng.random(n)) ** (-1.0 / (a - 1))
    return np.clip(np.round(d), 0, max(n - 1, 0)).astype(np.int64)


def generate_graph(
    pref: np.ndarray, cfg: SocialConfig, seed: int
) -> tuple[SocialGraph, GraphStats]:
    """A graph over ``pref``'s rows (unit preference vectors) drawn as the module docstring
    says, keyed by ``seed`` (the replicate's)."""
    n = int(pref.shape[0])
    rng = generator(seed, "social-graph")
    deg = degree_draws(cfg, n, rng)
    if n < 2 or deg.sum() == 0:
        graph = SocialGraph.empty(n)
        return graph, _stats(graph, source="generated")
    # Each friendship uses two stubs: a user makes half its stubs' links, the other half come.
    owners = np.repeat(np.arange(n), (deg + 1) // 2)
    weight = deg.astype(np.float64) / deg.sum()
    pref = np.asarray(pref, np.float32)
    pa: list[np.ndarray] = []
    pb: list[np.ndarray] = []
    chunk = 65536
    for s in range(0, owners.size, chunk):
        own = owners[s : s + chunk]
        cand = rng.choice(n, size=(own.size, CANDIDATES), p=weight)
        cos = np.einsum("ed,ecd->ec", pref[own], pref[cand])
        gumbel = -np.log(-np.log(rng.random(cand.shape)))
        score = cfg.homophily * cos + gumbel
        score[cand == own[:, None]] = -np.inf
        pick = cand[np.arange(own.size), np.argmax(score, axis=1)]
        pa.append(own)
        pb.append(pick)
    graph = from_pairs(np.concatenate(pa), np.concatenate(pb), n)
    return graph, _stats(graph, source="generated")


def label_propagation(graph: SocialGraph, rounds: int = 20) -> np.ndarray:
    """Community labels (the smallest row of each community is its label): every row takes
    the label most of its friends hold (ties: the smallest), all rows at once, for ``rounds``
    rounds or until nothing moves. Deterministic; O(rounds x edges)."""
    n = graph.n
    label = np.arange(n, dtype=np.int64)
    if graph.edges == 0:
        return label
    src = np.repeat(np.arange(n), graph.degree())
    for r in range(rounds):
        nb = label[graph.friends]
        key = src * n + nb
        uniq, counts = np.unique(key, return_counts=True)
        node, lab = uniq // n, uniq % n
        # per node: the label with the most friends, the smallest among ties
        order = np.lexsort((lab, -counts, node))
        node, lab = node[order], lab[order]
        first = np.ones(node.size, bool)
        first[1:] = node[1:] != node[:-1]
        new = label.copy()
        new[node[first]] = lab[first]
        if r % 2 == 1:  # damp the two-cycle of synchronous updates: only odd rows move
            new = np.where(np.arange(n) % 2 == 1, new, label)
        else:
            new = np.where(np.arange(n) % 2 == 0, new, label)
        if np.array_equal(new, label) and r > 0:
            break
        label = new
    # the smallest row of each community is its label
    _, inv = np.unique(label, return_inverse=True)
    smallest = np.full(inv.max() + 1, n, np.int64)
    np.minimum.at(smallest, inv, np.arange(n))
    return smallest[inv]


def community_order(graph: SocialGraph) -> np.ndarray:
    """A permutation of the rows that keeps communities together: the largest community
    first (ties: the smaller label), the rows of a community in breadth-first order (reverse
    Cuthill-McKee over the whole graph), so that a cut inside a large community still
    separates few friends. On Last.fm, 2 (4) contiguous parts share 13% (43%) of the
    friendships in this order, 49% (74%) in the population's own order."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    label = label_propagation(graph)
    _, inv, size = np.unique(label, return_inverse=True, return_counts=True)
    adj = csr_matrix(
        (np.ones(graph.friends.size, np.int8), graph.friends, graph.indptr),
        shape=(graph.n, graph.n),
    )
    rank = np.empty(graph.n, np.int64)
    rank[np.asarray(reverse_cuthill_mckee(adj, symmetric_mode=True), np.int64)] = np.arange(graph.n)
    return np.lexsort((rank, label, -size[inv]))


def cross_edges(graph: SocialGraph, shard_of: np.ndarray) -> int:
    """Friendships whose two users are in different shards (``shard_of``: shard per row)."""
    src = np.repeat(np.arange(graph.n), graph.degree())
    return int((shard_of[src] != shard_of[graph.friends]).sum() // 2)
