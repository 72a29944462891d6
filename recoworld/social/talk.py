"""What users do on the social network, and the round choice that sends them there.

**The round choice** (:func:`round_choice`), each round, for every user who takes part
(``recoworld.study.social_loop``): the recommender, the social network, or nothing, by a
multinomial logit with documented defaults (``[social]``; RecAgent's choice among "enter the
recommender system", "enter the social media", "do nothing"):

- U(recommender) = ``recommender_bias`` + ``aware_weight`` x (the strongest awareness of an
  item it has not consumed); only for users whose session is due or who were pulled back;
- U(social) = ``social_bias`` + ``share_weight`` x (it watched an item within
  ``share_window_days`` that it has not talked about); only for users with friends;
- U(nothing) = 0.

The draw is keyed by (user, round): the same user makes the same choice in any shard.

**On the social network** (:func:`conversations`): a user talks about the (up to two) items it
watched most fully in its last session, while they are fresh: with ``post_probability`` it
posts to all its friends, else it chats with one friend (drawn by user and round). Every
friend who receives the message hears of each item (``recoworld.social.awareness``). The words
are templated for the parametric brain; they are kept as data (the ``social`` table's
``text``), never as instructions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import msgspec
import numpy as np

from recoworld.config import SocialConfig
from recoworld.items.catalog import Catalog
from recoworld.rng import uniforms
from recoworld.social.graph import SocialGraph


class SocialStream(IntEnum):
    """The social layer's random streams (ids apart from ``recoworld.rng.Stream``'s)."""

    ROUND_CHOICE = 101
    PULL = 102
    SEARCH = 103
    QUERY = 104
    POST_OR_CHAT = 105
    CHAT_FRIEND = 106
    SEEDING = 107


CHOICES = ("nothing", "recommender", "social")
NOTHING, RECOMMENDER, SOCIAL = range(3)
KINDS = ("post", "chat")
POST, CHAT = range(2)
MENTIONS = 2
"""Items a message mentions at most."""


def round_choice(
    cfg: SocialConfig,
    seed: int,
    uid: np.ndarray,
    day: int,
    *,
    can_visit: np.ndarray,
    aware: np.ndarray,
    can_talk: np.ndarray,
    has_fresh: np.ndarray,
) -> np.ndarray:
    """Codes into :data:`CHOICES` for users ``uid`` on round ``day`` (module docstring)."""
    u_rec = np.where(can_visit, cfg.recommender_bias + cfg.aware_weight * aware, -np.inf)
    u_soc = np.where(can_talk, cfg.social_bias + cfg.share_weight * has_fresh, -np.inf)
    util = np.stack([np.zeros(uid.size), u_rec, u_soc], axis=1)
    util -= util.max(axis=1, keepdims=True)
    p = np.exp(util)
    cum = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    u = uniforms(seed, SocialStream.ROUND_CHOICE, uid, day)
    return np.minimum((u[:, None] >= cum).sum(axis=1), 2).astype(np.int8)


@dataclass(frozen=True, eq=False, kw_only=True)
class Conversations:
    """What the users ``rows`` (shard rows) said on one round: one message each."""

    rows: np.ndarray
    kind: np.ndarray  # codes into KINDS
    receiver: np.ndarray  # population row of a chat's friend; -1 for a post
    audience: np.ndarray  # friends who receive it
    items: np.ndarray  # (n, MENTIONS) catalog rows, -1 padded
    texts: list[str]


def conversations(
    cfg: SocialConfig,
    seed: int,
    catalog: Catalog,
    graph: SocialGraph,
    *,
    rows: np.ndarray,
    population_rows: np.ndarray,
    uid: np.ndarray,
    day: int,
    items: np.ndarray,
) -> Conversations:
    """Users at shard ``rows`` (population rows ``population_rows``, ids ``uid``) talk on
    round ``day`` about ``items`` (n, MENTIONS), -1 padded."""
    n = rows.size
    u = uniforms(seed, SocialStream.POST_OR_CHAT, uid, day)
    kind = np.where(u < cfg.post_probability, POST, CHAT).astype(np.int8)
    deg = graph.degree()[population_rows]
    pick = uniforms(seed, SocialStream.CHAT_FRIEND, uid, day)
    at = graph.indptr[population_rows] + np.minimum((pick * deg).astype(np.int64), deg - 1)
    receiver = np.where(kind == CHAT, graph.friends[np.maximum(at, 0)], -1)
    audience = np.where(kind == CHAT, 1, deg).astype(np.int32)
    texts = [_words(catalog, items[i], int(kind[i])) for i in range(n)]
    return Conversations(
        rows=rows, kind=kind, receiver=receiver, audience=audience, items=items, texts=texts
    )


def _words(catalog: Catalog, items: np.ndarray, kind: int) -> str:
    names = [str(catalog.titles[i]) for i in items if i >= 0]
    about = " and ".join(names)
    tags = [t for i in items if i >= 0 for t in catalog.item_tags[i][:1]]
    note = f" ({', '.join(dict.fromkeys(tags))})" if tags else ""
    if kind == POST:
        return f"Lately I've been enjoying {about}{note}."
    return f"You should try {about}{note} - I think you'd like it."


class Deliveries(msgspec.Struct, frozen=True, kw_only=True):
    """Mentions on their way to one (replicate, arm): receiver ``receiver[i]`` (a population
    row) hears of catalog item ``item[i]`` from ``sender[i]`` by a message of ``kind[i]``. The
    columns are little-endian int64 bytes (int8 for ``kind``): compact across processes.
    ``text``: the words of the message each delivery carries, where a language brain wrote
    them (empty otherwise: the parametric brain's words are templated and no one reads them)."""

    replicate: int
    arm: int
    receiver: bytes
    sender: bytes
    item: bytes
    kind: bytes
    text: list[str] = []

    @classmethod
    def of(
        cls,
        replicate: int,
        arm: int,
        receiver: np.ndarray,
        sender: np.ndarray,
        item: np.ndarray,
        kind: np.ndarray,
        text: Sequence[str] | None = None,
    ) -> Deliveries:
        i64 = lambda a: np.ascontiguousarray(a, "<i8").tobytes()  # noqa: E731
        return cls(
            replicate=replicate,
            arm=arm,
            receiver=i64(receiver),
            sender=i64(sender),
            item=i64(item),
            kind=np.ascontiguousarray(kind, np.int8).tobytes(),
            text=list(text) if text is not None else [],
        )

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(receiver, sender, item, kind) as arrays."""
        f = lambda b: np.frombuffer(b, "<i8").astype(np.int64)  # noqa: E731
        return f(self.receiver), f(self.sender), f(self.item), np.frombuffer(self.kind, np.int8)

    def __len__(self) -> int:
        return len(self.receiver) // 8


def deliveries(
    graph: SocialGraph, talk: Conversations, senders: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every (receiver, sender, item, kind) a round's ``talk`` makes: a post reaches each
    friend of its sender, a chat its one friend; one delivery per item mentioned. ``senders``:
    the talkers' population rows."""
    return message_deliveries(graph, talk, senders)[:4]


def message_deliveries(
    graph: SocialGraph, talk: Conversations, senders: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`deliveries`, and the message (index into ``talk``) each one carries."""
    deg = graph.degree()[senders]
    n_recv = np.where(talk.kind == CHAT, 1, deg)
    who = np.repeat(np.arange(senders.size), n_recv)
    # a post's receivers are the sender's friends in order; a chat's the one friend
    start = np.repeat(graph.indptr[senders], n_recv)
    offset = np.arange(who.size) - np.repeat(np.cumsum(n_recv) - n_recv, n_recv)
    recv = np.where(
        talk.kind[who] == CHAT, talk.receiver[who], graph.friends[start + offset]
    ).astype(np.int64)
    rec, snd, itm, knd, msg = [], [], [], [], []
    for j in range(talk.items.shape[1]):
        it = talk.items[who, j]
        ok = it >= 0
        rec.append(recv[ok])
        snd.append(senders[who][ok])
        itm.append(it[ok])
        knd.append(talk.kind[who][ok])
        msg.append(who[ok])
    return (
        np.concatenate(rec),
        np.concatenate(snd),
        np.concatenate(itm),
        np.concatenate(knd).astype(np.int8),
        np.concatenate(msg),
    )


def canonical(
    receiver: np.ndarray, sender: np.ndarray, item: np.ndarray, kind: np.ndarray
) -> np.ndarray:
    """The order in which deliveries are applied: by receiver, item, sender, kind (pass the
    senders' ids: the order then does not depend on how the population is laid out)."""
    return np.lexsort((kind, sender, item, receiver))
