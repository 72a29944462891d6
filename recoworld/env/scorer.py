"""A candidate-scoring policy: the features it sees and its network, in numpy.

The trained agent of ``examples/rl`` is a *scorer*: for every candidate of the candidate-set
observation (:class:`recoworld.env.view.AgentView`) a small network maps the candidate's
features, and the user's context, to a score; the slate is the k best candidates not shown yet
in this session (sampled from the scores, Plackett-Luce, while training). The features are
computed here from the observation alone, so the environment that trained the scorer and the
recommender that evaluates it (:class:`recoworld.eval.policy.PolicyRecommender`) feed it the
same numbers. A checkpoint is an ``.npz`` of the network's arrays with the feature names and the
settings it was trained with; no deep-learning library is needed to run it.

Features per candidate (:data:`FEATURES`): the base recommender's score, standardised within the
pool, and its rank; popularity percentile; how well its tags match the user's taste, the tag
asked for (more / less), the tags clicked and the tags skipped this session; whether it was
shown / clicked this session; its embedding's cosine with the items clicked this session; and
the context: the last slate's click share and mean watch, the turn and session, the user's
traits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from recoworld.errors import RecoWorldError

FEATURES = (
    "score_z",
    "score_rank",
    "popularity",
    "taste_match",
    "asked_more",
    "asked_less",
    "clicked_tags",
    "skipped_tags",
    "shown",
    "clicked",
    "clicked_embedding",
    "last_click_share",
    "last_watch",
    "turn",
    "session",
    "activity",
    "conformity",
    "diversity",
    "patience",
)
"""The scorer's features per candidate, in order."""


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def candidate_features(obs: dict[str, Any]) -> np.ndarray:
    """(n, N, len(FEATURES)) float32 features of a batched candidate-set observation."""
    score = np.asarray(obs["cand_score"], np.float32)
    n, m = score.shape
    z = (score - score.mean(1, keepdims=True)) / np.maximum(score.std(1, keepdims=True), 1e-6)
    rank = np.broadcast_to(np.arange(m, dtype=np.float32) / m, (n, m))
    tags = np.asarray(obs["cand_tags"], np.float32)
    t = tags / np.maximum(tags.max(-1, keepdims=True), 1e-9)  # one matching tag counts fully
    shown = np.asarray(obs["cand_shown"], np.float32)
    clicked = np.asarray(obs["cand_clicked"], np.float32)
    skipped = shown * (1.0 - clicked)
    match = lambda w: np.einsum("nmt,nt->nm", t, w)  # noqa: E731
    clicked_tags = _unit_rows(np.einsum("nm,nmt->nt", clicked, tags))
    skipped_tags = _unit_rows(np.einsum("nm,nmt->nt", skipped, tags))
    emb = np.asarray(obs["cand_embedding"], np.float32)
    clicked_emb = _unit_rows(np.einsum("nm,nmd->nd", clicked, emb))
    k = np.asarray(obs["clicked"]).shape[1]
    context = np.concatenate(
        [
            np.asarray(obs["clicked"], np.float32).sum(1, keepdims=True) / k,
            np.asarray(obs["watch"], np.float32).mean(1, keepdims=True),
            np.asarray(obs["turn"], np.float32) / 10.0,
            np.asarray(obs["session"], np.float32) / 10.0,
            np.asarray(obs["user_traits"], np.float32),
        ],
        axis=1,
    )
    per = [
        z,
        rank,
        np.asarray(obs["cand_popularity"], np.float32),
        match(np.asarray(obs["user_taste"], np.float32)),
        match(np.asarray(obs["instruction_more"], np.float32)),
        match(np.asarray(obs["instruction_less"], np.float32)),
        np.einsum("nmt,nt->nm", _unit_rows(tags), clicked_tags),
        np.einsum("nmt,nt->nm", _unit_rows(tags), skipped_tags),
        shown,
        clicked,
        np.einsum("nmd,nd->nm", emb, clicked_emb),
    ]
    out = np.empty((n, m, len(FEATURES)), np.float32)
    for j, f in enumerate(per):
        out[:, :, j] = f
    out[:, :, len(per) :] = context[:, None, :]
    return out


class ScorerError(RecoWorldError):
    """A checkpoint that is not a candidate scorer's."""


class CandidateScorer:
    """``score = prior x score_z + w3 . relu(W2 relu(W1 f + b1) + b2) + b3`` per candidate.

    ``settings`` records what it was trained with (``candidates``, ``base``, ...): a recommender
    built from it must present the same candidate pool.
    """

    ARRAYS = ("w1", "b1", "w2", "b2", "w3", "b3", "prior")

    def __init__(self, arrays: dict[str, np.ndarray], settings: dict[str, Any]) -> None:
        self.a = {k: np.asarray(arrays[k], np.float32) for k in self.ARRAYS}
        self.settings = dict(settings)

    def scores(self, features: np.ndarray) -> np.ndarray:
        """(n, N) scores of (n, N, F) features."""
        a = self.a
        h = np.maximum(features @ a["w1"] + a["b1"], 0.0)
        h = np.maximum(h @ a["w2"] + a["b2"], 0.0)
        return (h @ a["w3"])[..., 0] + a["b3"][0] + a["prior"][0] * features[..., 0]

    def pick(self, obs: dict[str, Any], k: int) -> np.ndarray:
        """(n, k) candidate positions: the best-scored candidates not shown this session
        (shown ones last, should fewer than k remain)."""
        return self.pick_from(self.scores(candidate_features(obs)), obs, k)

    @staticmethod
    def pick_from(scores: np.ndarray, obs: dict[str, Any], k: int) -> np.ndarray:
        """:meth:`pick` from (n, N) ``scores`` (the scorer's, perhaps shifted)."""
        s = np.where(np.asarray(obs["cand_shown"]) > 0, scores - 1e6, scores)
        return np.argsort(-s, axis=1, kind="stable")[:, :k]

    def save(self, path: str | Path) -> None:
        np.savez(
            path,
            **self.a,
            features=np.array(FEATURES),
            settings=np.array(json.dumps(self.settings)),
        )

    @classmethod
    def load(cls, path: str | Path) -> CandidateScorer:
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in cls.ARRAYS}
                features = tuple(str(f) for f in z["features"])
                settings = json.loads(str(z["settings"]))
        except (OSError, KeyError, ValueError) as e:
            raise ScorerError(
                f"Expected a candidate scorer checkpoint (.npz with {', '.join(cls.ARRAYS)}, "
                f"features, settings), got {type(e).__name__}: {e} - at {path}"
            ) from None
        if features != FEATURES:
            raise ScorerError(
                f"Expected a scorer of the features {list(FEATURES)}, got {list(features)} "
                f"- at {path}"
            )
        return cls(arrays, settings)
