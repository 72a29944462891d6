"""The social loop: users on a shared calendar, one round a day (docs/social.md).

Each round, for the users of one shard in one arm (:class:`SocialArm`):

1. **hear**: the mentions friends sent last round arrive, in canonical order (receiver, item,
   sender, kind); awareness of the items rises (``recoworld.social.awareness``);
2. **who takes part**: users whose session is due (the return model brought them back and
   their day has come), users away whom what they heard pulls back (``social.pull``), and
   users with something fresh to tell;
3. **choose**: the recommender, the social network or nothing (``recoworld.social.talk``);
4. **the recommender**: a session, turn by turn: the next page, or a search whose results top
   the page (``recoworld.social.search``); the brain's decide step; the one settlement
   (``recoworld.study.settle.Ledger``); then the return model. Sessions, returns and gaps
   keep their meaning: a user who chose otherwise while due comes back the next round;
5. **the social network**: a post to every friend or a chat with one, about what it watched;
   the mentions go out, to be heard next round (through the coordinator when the friend
   lives in another shard: ``recoworld.study.rounds``).

Every draw is keyed by the user (and round, session, turn), a user's state is its own and the
messages of a round are applied in canonical order, so the events are the same for any split
of the population into shards, in one process, in forked workers or on Ray.

Nothing here runs when ``[social]`` is off: such a study runs ``recoworld.study.simulate``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa

from recoworld.config import StudyConfig, recommenders
from recoworld.errors import ConfigError
from recoworld.recommenders.base import Audience
from recoworld.recommenders.factory import build_recommender
from recoworld.records import WATCH, Observer
from recoworld.rng import uniforms
from recoworld.social.awareness import Awareness
from recoworld.social.diffusion import Diffusion
from recoworld.social.graph import (
    GraphStats,
    SocialGraph,
    community_order,
    friends_file,
    generate_graph,
    graph_from_friends,
)
from recoworld.social.records import searches_batch, social_batch
from recoworld.social.search import TEXT, ItemSearch, queries
from recoworld.social.talk import (
    CHAT,
    CHOICES,
    KINDS,
    MENTIONS,
    RECOMMENDER,
    SOCIAL,
    Conversations,
    SocialStream,
    conversations,
    message_deliveries,
    round_choice,
)
from recoworld.study.prepare import Prepared, prepare_all, replicate_seed
from recoworld.study.settle import Ledger
from recoworld.users.brain import ParametricBrain
from recoworld.users.choice import ChoiceModel
from recoworld.users.llm_social import (
    MessageAsk,
    QueryAsk,
    RoundAsk,
    SocialVoice,
    choice_codes,
)
from recoworld.world.model import World

_F32 = np.float32


@dataclass(frozen=True, eq=False)
class SocialWorld:
    """One replicate with its friendship graph: the population reordered so that communities
    sit together (``[social] partition``), its graph in that order, how it was built."""

    prep: Prepared
    graph: SocialGraph
    stats: GraphStats


def prepare_social(cfg: StudyConfig, world: World) -> tuple[SocialWorld, ...]:
    """The study's replicates (``prepare_all``), each with its graph (``[social] graph``),
    reordered by community, and the seeded arms' treated users (``[social] seeding``)."""
    if any(r.kind == "agentic" for r in recommenders(cfg)):
        raise ConfigError(
            "Expected a recommender that needs no language model with [social] (the agentic "
            "recommender is not built into the rounds), got 'agentic' - at `$.recommender.kind`"
        )
    out = []
    for prep in prepare_all(cfg, world):
        so = cfg.social
        if so.graph == "data":
            graph, stats = graph_from_friends(
                world.friends,
                world.users["user_id"],
                prep.population.source_user,
                on_bad=so.on_bad_links,
                where=friends_file(world.source, world.name),
            )
        else:
            seed = replicate_seed(cfg.seed, prep.replicate)
            graph, stats = generate_graph(prep.population.pref, so, seed)
        if so.partition == "community":
            order = community_order(graph)
            graph = graph.permute(order)
            prep = replace(
                prep,
                population=prep.population.take(order),
                segments=prep.segments[order],
                treated=tuple(t[order] for t in prep.treated),
            )
        graph = graph.ordered_by(prep.population.uid)  # a chat's friend: drawn in id order
        prep = _seeded(prep, graph)
        out.append(SocialWorld(prep=prep, graph=graph, stats=stats))
    return tuple(out)


def _seeded(prep: Prepared, graph: SocialGraph) -> Prepared:
    """``prep`` with each seeded arm's treated users picked by its strategy."""
    cfg = prep.cfg
    if not cfg.social.seeding:
        return prep
    treated = list(prep.treated)
    uid, deg = prep.population.uid, graph.degree()
    names = [a.name for a in cfg.arms]
    for s in cfg.social.seeding:
        a = names.index(s.arm)
        count = max(1, round(s.share * uid.size))
        if s.strategy == "most_connected":
            pick = np.lexsort((uid, -deg))[:count]
        else:
            pick = np.argsort(uniforms(cfg.seed, SocialStream.SEEDING, uid, a), kind="stable")
            pick = pick[:count]
        t = np.zeros(uid.size, bool)
        t[pick] = True
        treated[a] = t
    return replace(prep, treated=tuple(treated))


class AwareChoiceModel(ChoiceModel, frozen=True, kw_only=True):
    """The fitted choice model with the social layer's one addition: an item the user heard
    of gets ``weight`` x its awareness on its click logit (``[social] aware_logit``)."""

    awareness: Any = None
    weight: float = 0.0

    @classmethod
    def wrap(cls, model: ChoiceModel, awareness: Awareness, weight: float) -> AwareChoiceModel:
        return cls(**msgspec.structs.asdict(model), awareness=awareness, weight=weight)

    def static_logit(self, p, rows, items, cat, which="choice", table=None):  # noqa: ANN001, ANN201 - ChoiceModel's
        logit, aff = super().static_logit(p, rows, items, cat, which, table)
        aw: Awareness = self.awareness
        if self.weight and aw is not None:
            logit = logit + _F32(self.weight) * aw.of(rows, items, aw.today)
        return logit, aff


Sink = Callable[[pa.RecordBatch], None]
Inbox = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, "list[str] | None"]
"""(receiver, sender, item, kind, the words each carries or None): deliveries as arrays."""
HEARD = 3
"""Messages a language brain's user keeps of what its friends told it (shown in its prompt)."""


class SocialArm:
    """One arm of one shard's users (population rows ``users``, a contiguous range) in the
    social world (module docstring). ``observe`` hears the turn and session records;
    ``social`` and ``searches`` receive the messages and searches as Arrow batches."""

    def __init__(
        self,
        world: SocialWorld,
        arm: int,
        users: np.ndarray,
        *,
        observe: Observer,
        social: Sink,
        searches: Sink,
        search: ItemSearch | None,
        voice: Callable[[Any], SocialVoice] | None = None,
    ) -> None:
        """``voice(personas)``: the language brain's voice for these users (a language brain's
        study), None for the parametric brain."""
        prep = world.prep
        cfg, cat = prep.cfg, prep.catalog
        self.world, self.arm, self.users, self.cfg = world, arm, users, cfg
        self.cat, self.graph, self.seed = cat, world.graph, cfg.seed
        self.first = int(users[0]) if users.size else 0
        n = users.size
        personas = prep.population.take(users)
        self.uid, self.pop_uid = personas.uid, prep.population.uid
        self.aware = Awareness(n, cfg.social.memory, cfg.social.fade_days)
        model = AwareChoiceModel.wrap(prep.model, self.aware, cfg.social.aware_logit)
        self.brain = ParametricBrain(model, cfg.brain, cat, personas, cfg.seed)
        self.rec = build_recommender(cfg.recommender, cfg.arms[arm], prep.arm_items[arm])
        self.rec.bind(
            Audience(
                personas=personas, catalog=cat, seed=cfg.seed, treated=prep.treated[arm][users]
            )
        )
        sim = cfg.simulation
        self.ledger = Ledger(
            arm=arm,
            n=n,
            turns=sim.turns,
            creator_mask=prep.arm_items[arm],
            tags=cat.tags,
            observe=observe,
        )
        self.session = np.zeros(n, np.int64)  # sessions done
        self.alive = np.ones(n, bool)  # the return model brings it (back)
        self.fresh = np.full((n, MENTIONS), -1, np.int64)  # watched, not yet talked about
        self.fresh_day = np.full(n, -np.inf)
        self.best = np.full((n, MENTIONS), -1, np.int64)  # this session's most watched
        self.best_frac = np.zeros((n, MENTIONS), _F32)
        self.last_watched = np.full(n, -1, np.int64)
        self.degree = world.graph.degree()[users]
        self.diffusion = Diffusion(n, np.flatnonzero(prep.arm_items[arm]), cat.n_items)
        self.search, self.social_sink, self.search_sink = search, social, searches
        self._searched: list[dict] = []  # this round's searches, written at its end
        self.item_dict = pa.array(cat.item_ids.tolist(), pa.string())
        self.counts = {k: 0 for k in ("recommender", "social", "nothing", "pulled", "searches")}
        self.voice = voice(personas) if voice is not None else None
        self.heard: dict[int, list[tuple[int, str, str]]] = {}  # row: (friend, kind, words)

    # --- the round ------------------------------------------------------------------------

    def round(self, day: int, inbox: Inbox) -> Inbox:
        """Round ``day``: ``inbox`` = (receiver, sender, item, kind, words) in canonical order
        (population rows); returns this round's deliveries (same layout, any order)."""
        so, sim = self.cfg.social, self.cfg.simulation
        # 1. what friends said last round is heard
        recv, send, item, kind, words = inbox
        rows = recv - self.first
        if self.voice is not None and words:
            self._remember(rows, send, kind, words)
        strength = np.where(kind == CHAT, so.chat_strength, so.post_strength).astype(_F32)
        self.aware.hear(rows, item, strength, send, day)
        if self.diffusion.active:
            self.diffusion.heard(rows, item, send, day)
        self.aware.today = day
        # 2. who takes part: due, pulled back by what it heard, or with something to tell
        everyone = np.arange(self.users.size)
        left = self.session < sim.sessions
        due = self.alive & left & (self.ledger.day < day + 1)
        _, aware = self.aware.strongest(everyone, day)
        pull = uniforms(self.seed, SocialStream.PULL, self.uid, day) < so.pull * aware
        pulled = ~due & left & pull
        fresh = (self.fresh[:, 0] >= 0) & (day - self.fresh_day <= so.share_window_days)
        can_talk = self.degree > 0
        present = np.flatnonzero(due | pulled | (fresh & can_talk))
        # 3. each chooses: the recommender, the social network or nothing
        choice = round_choice(
            so,
            self.seed,
            self.uid[present],
            day,
            can_visit=(due | pulled)[present],
            aware=aware[present],
            can_talk=can_talk[present],
            has_fresh=fresh[present],
        )
        if self.voice is not None and present.size:  # the language brain answers it
            choice = self._ask_choice(day, present, choice, (due | pulled)[present], can_talk)
        visit, social = present[choice == RECOMMENDER], present[choice == SOCIAL]
        self.counts["recommender"] += visit.size
        self.counts["social"] += social.size
        self.counts["nothing"] += present.size - visit.size - social.size
        self.counts["pulled"] += int(pulled[visit].sum())
        # 4. the recommender: a session for each visitor (sessions grouped by index)
        if visit.size:
            d = self.ledger.day
            d[visit] = np.where(pulled[visit], _F32(day), np.maximum(d[visit], _F32(day)))
            self.alive[visit] = True
            at = self.session[visit].copy()  # one session per visitor, grouped by its index
            for s in np.unique(at):
                self._session(visit[at == s], int(s), day)
        self._write_searches(day)
        # 5. the social network: a post or a chat about what it watched
        talkers = social[fresh[social]]
        return self._talk(talkers, day)

    def _remember(
        self, rows: np.ndarray, send: np.ndarray, kind: np.ndarray, words: list[str]
    ) -> None:
        """What friends told (a language brain's users): the last :data:`HEARD` messages each,
        one per message (a message about two items arrives twice)."""
        for r, s, k, w in zip(rows.tolist(), send.tolist(), kind.tolist(), words):
            got = self.heard.setdefault(r, [])
            msg = (int(self.pop_uid[s]), KINDS[k], w)
            if msg not in got:
                got.append(msg)
                del got[:-HEARD]

    def _ask_choice(
        self,
        day: int,
        present: np.ndarray,
        default: np.ndarray,
        can_visit: np.ndarray,
        can_talk: np.ndarray,
    ) -> np.ndarray:
        """The language brain's round choice (``recoworld.users.llm_social``), the parametric
        draw as the default; the same options are open to it."""
        asks = []
        for i, r in enumerate(present.tolist()):
            options = ("nothing",) + (("recommender",) if can_visit[i] else ())
            options += ("social",) if can_talk[r] else ()
            slots = self.aware.item[r]
            asks.append(
                RoundAsk(
                    row=r,
                    options=options,
                    default=CHOICES[int(default[i])],
                    heard=tuple(self.heard.get(r, ())),
                    aware=tuple(int(x) for x in slots[slots >= 0]),
                    fresh=tuple(int(x) for x in self.fresh[r] if x >= 0),
                )
            )
        return choice_codes(self.voice.choose(day, asks), CHOICES)  # type: ignore[union-attr]

    # --- a session in the recommender -----------------------------------------------------

    def _session(self, rows: np.ndarray, session: int, day: int) -> None:
        sim, ledger, brain, rec = self.cfg.simulation, self.ledger, self.brain, self.rec
        carry = ledger.start_session(rows, session)
        self.best[rows], self.best_frac[rows] = -1, 0.0
        idx, mind = rows, brain.start_session(rows, session, carry, ledger.day[rows])
        for turn in range(sim.turns):
            if idx.size == 0:
                break
            # the recommender's page; a searching user's results top it
            slates = rec.recommend(idx, session, turn, sim.slate_size)
            pages, searched = self._search(idx, session, turn, day, slates)
            decision = brain.decide(mind, idx, session, turn, pages)
            last = ledger.settle_turn(rec, idx, session, turn, pages, decision, mind)
            self._consumed(idx, pages, searched, decision.feedback.action >= WATCH, day)
            self._watched(idx, pages, decision.feedback.watch, decision.feedback.action)
            idx, mind = idx[~last], mind.take(~last)
        back = ledger.settle_session(brain, rows, session)
        self.alive[rows] = back
        self.session[rows] += 1
        told = self.best[rows, 0] >= 0
        self.fresh[rows[told]] = self.best[rows[told]]
        self.fresh_day[rows[told]] = day

    def _search(
        self, idx: np.ndarray, session: int, turn: int, day: int, slates: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pages (n, k) and which slots hold search results (module docstring, step 4)."""
        searched = np.zeros(slates.shape, bool)
        se = self.cfg.search
        if self.search is None:
            return slates, searched
        uid = self.uid[idx]
        target, strength = self.aware.strongest(idx, day)
        p = np.minimum(se.base_probability + se.aware_probability * strength, 1.0)
        s = np.flatnonzero(uniforms(self.seed, SocialStream.SEARCH, uid, session, turn) < p)
        if s.size == 0:
            return slates, searched
        by_title = uniforms(self.seed, SocialStream.QUERY, uid[s], session, turn) < se.title_share
        texts, kinds = queries(
            self.cat,
            target=target[s],
            by_title=by_title,
            taste=self.brain.p.taste[idx[s]],
            last_watched=self.last_watched[idx[s]],
        )
        if self.voice is not None:  # the language brain types the query
            texts, kinds = self._ask_queries(day, session, turn, idx[s], texts, kinds)
        k = slates.shape[1]
        res = self.search.search(texts, se.results or k)
        shown = np.full((s.size, k), -1, np.int64)
        count = np.minimum(res.counts(), k)
        for j in np.flatnonzero(count):
            shown[j, : count[j]] = res.items[j][: count[j]]
        # the page: the results, then the recommender's items that are not among them
        rest = ~(slates[s][:, :, None] == shown[:, None, :]).any(axis=2)
        order = np.argsort(~rest, axis=1, kind="stable")
        rest_items = np.take_along_axis(slates[s], order, axis=1)
        slot = np.arange(k)[None, :]
        from_rest = np.take_along_axis(rest_items, np.maximum(slot - count[:, None], 0), axis=1)
        pages = slates.copy()
        pages[s] = np.where(slot < count[:, None], shown, from_rest)
        searched[s] = slot < count[:, None]
        self.counts["searches"] += s.size
        self._searched.append(
            {
                "users": uid[s],
                "session": np.full(s.size, session, np.int16),
                "turn": np.full(s.size, turn, np.int16),
                "kind": kinds,
                "queries": texts,
                "target": target[s],
                "results": res.counts(),
                "shown": shown,
            }
        )
        return pages, searched

    def _ask_queries(
        self,
        day: int,
        session: int,
        turn: int,
        rows: np.ndarray,
        texts: list[str],
        kinds: np.ndarray,
    ) -> tuple[list[str], np.ndarray]:
        """The language brain's queries (kind ``text``), the templated ones as the default."""
        asks = []
        for r, q in zip(rows.tolist(), texts):
            slots = self.aware.item[r]
            asks.append(
                QueryAsk(
                    row=r,
                    default=q,
                    heard=tuple(self.heard.get(r, ())),
                    aware=tuple(int(x) for x in slots[slots >= 0]),
                )
            )
        typed = self.voice.search(day, session, turn, asks)  # type: ignore[union-attr]
        kinds = np.where([t is not None for t in typed], TEXT, kinds).astype(np.int8)
        return [q if t is None else t for q, t in zip(texts, typed)], kinds

    def _write_searches(self, day: int) -> None:
        """The round's searches, in the order they were made, as one batch (one Arrow batch
        per turn cost more than the searches themselves)."""
        if not self._searched:
            return
        cols = {k: [b[k] for b in self._searched] for k in self._searched[0]}
        self._searched = []
        self.search_sink(
            searches_batch(
                day=day,
                users=np.concatenate(cols["users"]),
                session=np.concatenate(cols["session"]),
                turn=np.concatenate(cols["turn"]),
                kind=np.concatenate(cols["kind"]),
                queries=[q for qs in cols["queries"] for q in qs],
                target=np.concatenate(cols["target"]),
                results=np.concatenate(cols["results"]),
                shown=np.concatenate(cols["shown"]),
                item_ids=self.cat.item_ids,
                item_dict=self.item_dict,
            )
        )

    def _consumed(
        self,
        idx: np.ndarray,
        pages: np.ndarray,
        searched: np.ndarray,
        watched: np.ndarray,
        day: int,
    ) -> None:
        """Diffusion of treated items; awareness of what was watched ends."""
        if self.diffusion.active:
            self.diffusion.shown(idx, pages, searched, day)
            self.diffusion.adopted(idx, pages, watched, day)
        r, j = np.nonzero(watched)
        self.aware.forget(idx[r], pages[r, j])

    def _watched(
        self, idx: np.ndarray, pages: np.ndarray, watch: np.ndarray, action: np.ndarray
    ) -> None:
        """The session's most watched items (what the user will talk about), and the last
        item it watched (what it may search words of)."""
        frac = np.where(action >= WATCH, watch, _F32(0.0))
        both_f = np.concatenate([self.best_frac[idx], frac], axis=1)
        both_i = np.concatenate([self.best[idx], pages], axis=1)
        both_i = np.where(both_f > 0, both_i, -1)
        order = np.argsort(-both_f, axis=1, kind="stable")[:, :MENTIONS]
        self.best[idx] = np.take_along_axis(both_i, order, axis=1)
        self.best_frac[idx] = np.take_along_axis(both_f, order, axis=1)
        any_w = (action >= WATCH).any(axis=1)
        last = pages.shape[1] - 1 - np.argmax((action >= WATCH)[:, ::-1], axis=1)
        self.last_watched[idx[any_w]] = pages[any_w, last[any_w]]

    # --- the social network ---------------------------------------------------------------

    def _talk(self, talkers: np.ndarray, day: int) -> Inbox:
        empty = np.zeros(0, np.int64)
        if talkers.size == 0:
            return empty, empty, empty, np.zeros(0, np.int8), None
        senders = self.users[talkers]
        conv = conversations(
            self.cfg.social,
            self.seed,
            self.cat,
            self.graph,
            rows=talkers,
            population_rows=senders,
            uid=self.uid[talkers],
            day=day,
            items=self.fresh[talkers],
        )
        if self.voice is not None:  # the language brain writes the message
            conv = self._ask_messages(conv, day)
        self.fresh[talkers] = -1  # told
        recv, send, item, kind, msg = message_deliveries(self.graph, conv, senders)
        if self.diffusion.active:
            self.diffusion.sent(send - self.first, item)
        receivers = np.where(conv.receiver >= 0, self.pop_uid[np.maximum(conv.receiver, 0)], -1)
        self.social_sink(
            social_batch(
                day=day,
                senders=self.uid[talkers],
                receivers=receivers,
                audience=conv.audience,
                kind=conv.kind,
                items=conv.items,
                treated=self.world.prep.arm_items[self.arm],
                texts=conv.texts,
                item_ids=self.cat.item_ids,
            )
        )
        words = [conv.texts[m] for m in msg.tolist()] if self.voice is not None else None
        return recv, send, item, kind, words

    def _ask_messages(self, conv: Conversations, day: int) -> Conversations:
        """The messages in the language brain's words, mentioning items it chose among the
        fresh ones (the templated words and every fresh item as the default)."""
        asks = [
            MessageAsk(
                row=int(r),
                kind=KINDS[int(conv.kind[i])],
                items=tuple(int(x) for x in conv.items[i] if x >= 0),
                default=conv.texts[i],
            )
            for i, r in enumerate(conv.rows.tolist())
        ]
        said = self.voice.write(day, asks)  # type: ignore[union-attr]
        items = np.full_like(conv.items, -1)
        for i, (mentioned, _) in enumerate(said):
            items[i, : len(mentioned)] = mentioned
        return replace(conv, items=items, texts=[w for _, w in said])
