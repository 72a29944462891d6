"""A plug-in with a real model: `implicit`'s ALS (or BPR), fitted on the world's histories.

    pip install -e '.[implicit]'

    [recommender]
    kind = "python"
    target = "examples.plugins.implicit_als:ImplicitRecommender"
    options = { model = "als", factors = 32, regularization = 0.05, iterations = 15 }

At ``bind`` the model is fitted on every real user's history in the world
(``audience.personas.history``: the same matrix for every batch, so every batch, shard and
process fits the same model; a production plug-in would load its trained factors from a file
here instead). A persona's vector is that of the real user it was drawn from; a persona drawn
from no user (synthetic populations) gets the catalogue's popularity. Each turn a user gets
its best-scored items it has neither seen nor has in its history. It learns nothing online:
the feedback only marks what was shown.

Instructions re-weight by the catalogue's tags: each "more of T" adds ``instruction_weight``
score spreads to items tagged T, each "less of T" takes as much from them, and the
preference halves at every new session (as the built-in re-ranker does).

Determinism: fitting runs on ``threads`` threads (ALS solves each user on one thread, so any
count gives the same factors; BPR's parallel SGD does not: keep 1) with BLAS on one thread,
so that the same study gives the same events in-process, with forked workers and on Ray.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import scipy.sparse as sp

from recoworld.recommenders.base import Audience
from recoworld.records import SlateFeedback

INSTALL = "pip install -e '.[implicit]' (or pip install implicit)"


class ImplicitRecommender:
    """ALS or BPR from `implicit` as a RecoWorld recommender (options = the keywords below)."""

    def __init__(
        self,
        model: Literal["als", "bpr"] = "als",
        factors: int = 32,
        regularization: float = 0.05,
        iterations: int = 15,
        alpha: float = 1.0,
        learning_rate: float = 0.01,
        instruction_weight: float = 1.5,
        seed: int = 0,
        threads: int = 1,
    ) -> None:
        try:
            import implicit  # noqa: F401
        except ImportError:
            raise ImportError(f"the implicit package is not installed: {INSTALL}") from None
        if model not in ("als", "bpr"):
            raise ValueError(f'model = {model!r}: expected "als" or "bpr"')
        if factors < 1 or iterations < 1 or threads < 1:
            raise ValueError(
                f"factors = {factors}, iterations = {iterations}, threads = {threads}: "
                "expected integers >= 1"
            )
        self.kind, self.factors, self.reg = model, factors, regularization
        self.iterations, self.alpha, self.lr = iterations, alpha, learning_rate
        self.weight, self.seed, self.threads = instruction_weight, seed, threads

    def _model(self):  # noqa: ANN202 - implicit's classes
        if self.kind == "als":
            from implicit.cpu.als import AlternatingLeastSquares

            return AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.reg,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.seed,
                num_threads=self.threads,
            )
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.lr,
            regularization=self.reg,
            iterations=self.iterations,
            random_state=self.seed,
            num_threads=self.threads,
        )

    def bind(self, audience: Audience) -> None:
        from threadpoolctl import threadpool_limits

        cat, p = audience.catalog, audience.personas
        n_items = cat.n_items
        world = p.history if p.history is not None else sp.csr_matrix((0, n_items), dtype=bool)
        if world.shape[1] < n_items:  # the creator's new items: nobody has them yet
            world = sp.hstack([world, sp.csr_matrix((world.shape[0], n_items - world.shape[1]))])
        # a copy: on Ray the audience's arrays are read-only views of the object store
        user_items = sp.csr_matrix(world, dtype=np.float32, copy=True)
        with threadpool_limits(1):  # BLAS on one thread (implicit warns otherwise)
            model = self._model()
            model.fit(user_items, show_progress=False)
        items = np.asarray(model.item_factors, np.float64)
        users = np.asarray(model.user_factors, np.float64)
        has = p.template >= 0
        self.users = np.zeros((len(p), items.shape[1]), np.float64)
        self.users[has] = users[p.template[has]]
        self.has_vector = has & (np.abs(self.users).sum(1) > 0)
        self.items = items
        self.popularity = cat.popularity.astype(np.float64)
        tags = cat.tag_matrix.astype(np.float64)
        self.tags = tags / np.maximum(tags.max(1, keepdims=True), 1e-9)
        self.pref = np.zeros((len(p), self.tags.shape[1]), np.float64)  # instructions, per user
        self.session = np.full(len(p), -1)
        self.seen = p.history_of(n_items).toarray()

    def recommend(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        new = self.session[idx] != session
        self.pref[idx[new]] *= 0.5  # instructions fade session by session
        self.session[idx] = session
        # BLAS rounds (in the last bits) by how many rows a call holds: in float64, rounded to
        # float32, a user's scores are the same whatever batch, shard or process it is in
        scores = self.users[idx] @ self.items.T
        scores[~self.has_vector[idx]] = self.popularity
        spread = scores.std(axis=1, keepdims=True) + 1e-9
        scores = (scores + self.weight * spread * (self.pref[idx] @ self.tags.T)).astype(np.float32)
        scores[self.seen[idx]] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        slates = np.take_along_axis(top, order, axis=1)
        self.seen[idx[:, None], slates] = True
        return slates

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        self.seen[idx[:, None], slates] = True  # a fallback's or an injected item counts too

    def instruct(
        self, idx: np.ndarray, more_of: np.ndarray, less_of: np.ndarray, texts: Sequence[str]
    ) -> None:
        more, less = more_of >= 0, less_of >= 0
        self.pref[idx[more], more_of[more]] += 1.0
        self.pref[idx[less], less_of[less]] -= 1.0
        np.clip(self.pref, -2.0, 2.0, out=self.pref)
