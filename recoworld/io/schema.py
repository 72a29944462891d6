"""The versioned Parquet schemas of a run, and what every column means. Bump SCHEMA_VERSION on
any incompatible change.

Tables (one folder each under ``runs/<run_id>/``, hive-partitioned by ``arm=``):
- ``events``: one row per item shown;
- ``sessions``: one row per user session, with the session summary kept in memory;
- ``user_metrics``: one row per user and arm, the per-user totals the summary is built from;
- ``summary``: one row per arm x segment x metric (a single file);
- ``llm_calls``: one row per language-model call (LLM and hybrid brains, agentic recommender):
  prompt and completion, their hash, tokens, latency, finish reason, parse status, seed.

A run also holds ``users.parquet`` (:data:`USERS`, one row per simulated user, a single file).
A sweep's date folder holds ``sweep_summary`` (:data:`SWEEP_SUMMARY`, a single file written and
read through ``recoworld/io/tables.py``); neither is a part table, so neither is in
:data:`TABLES`; :data:`DESCRIBED` lists every table.

Every field carries its description in its Parquet field metadata (:data:`DESCRIPTION_KEY`), so
a file says what its columns mean; ``recoworld schema [TABLE]`` prints them. Storage is 0-based:
``user``, ``session``, ``turn`` and ``position`` count from 0 (the viewer shows 1-based numbers
on screen, 0-based in its URLs and API).

Version 2 added ``events.feeling`` (the LLM user's short feeling about an item; null for the
parametric brain) and the ``llm_calls`` table.
Version 3 added ``events.clicked`` and ``events.watched`` (the action as booleans, as the
summary counts them) and the column descriptions.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 4
METADATA_KEY = b"recoworld.schema_version"
TABLE_KEY = b"recoworld.table"
DESCRIPTION_KEY = b"description"
"""The key of a column's description in its Parquet field metadata."""

_dict_str = pa.dictionary(pa.int32(), pa.string())


def _col(name: str, type_: pa.DataType, description: str) -> pa.Field:
    return pa.field(name, type_, metadata={DESCRIPTION_KEY: description.encode()})


def description(field: pa.Field) -> str:
    """The description a field carries in its metadata ("" if none)."""
    return (field.metadata or {}).get(DESCRIPTION_KEY, b"").decode()


# Columns several tables share, described once.
_SEGMENT = "the user's segment (a value of population.segment_by; the summary's segments)"
_USER = (
    "simulated user id, 0-based (the population row; the same id is the same user in every "
    "arm: arms are paired per user)"
)
_SESSION = "the user's session, 0-based (0 = the first)"
_TURN = "slate within the session, 0-based (0 = the first slate)"
_DAY = "day the session started, in days since the user's first session (session 0: day 0)"

_LEAN = "; null in lean events (output.mindset = false)"

EVENTS = pa.schema(
    [
        _col("segment", _dict_str, _SEGMENT),
        _col("user", pa.int64(), _USER),
        _col("session", pa.int16(), _SESSION),
        _col("turn", pa.int16(), _TURN),
        _col("position", pa.int16(), "slot in the slate, 0-based (0 = top)"),
        _col("day", pa.float32(), _DAY),
        _col(
            "item_id",
            _dict_str,
            "the item shown: its catalog id (the study creator's items: '<creator id>:<k>')",
        ),
        _col("creator", _dict_str, "the item's creator (the study creator's name for its items)"),
        _col(
            "is_creator_item",
            pa.bool_(),
            "the item is one of the study creator's items (the summary's creator_reach and "
            "creator_engagement count these)",
        ),
        _col(
            "action",
            _dict_str,
            "skip | click (opened, then bounced: watched under brain.watch_threshold) | watch | "
            "rate; each implies the ones before; a click in the summary's ctr is any action but "
            "skip = `clicked`",
        ),
        _col(
            "clicked",
            pa.bool_(),
            "action != skip: the user opened the item (a bounce counts). The summary's ctr is "
            "per user sum(clicked) / rows (impressions), averaged over users",
        ),
        _col(
            "watched",
            pa.bool_(),
            "action is watch or rate: the user watched at least brain.watch_threshold of the "
            "item (sessions.watched counts these)",
        ),
        _col(
            "watch_fraction",
            pa.float32(),
            "fraction of the item watched, 0..1 (0 for a skip; under brain.watch_threshold for "
            "a click); the summary's watch_time is per user its sum / sessions",
        ),
        _col(
            "rating",
            pa.float32(),
            "the rating given, on the world's rating scale; null unless action = rate",
        ),
        _col(
            "left_after_turn",
            pa.bool_(),
            "the user chose to leave the session after this slate (the same on every row of "
            "the slate)",
        ),
        _col(
            "instruction",
            _dict_str,
            "what the user told the recommender after this slate (a templated sentence, or a "
            "language user's words); null: nothing (the same on every row of the slate)",
        ),
        _col(
            "satisfaction",
            pa.float32(),
            "the user's satisfaction after this item, 0..1" + _LEAN,
        ),
        _col(
            "fatigue",
            pa.float32(),
            "the user's fatigue after this item, >= 0 (grows with every item and with watching)"
            + _LEAN,
        ),
        _col(
            "boredom",
            pa.float32(),
            "the user's boredom after this item (moves toward the item's overlap with what "
            "was consumed this session)" + _LEAN,
        ),
        _col(
            "curiosity",
            pa.float32(),
            "the user's curiosity after this item (weighs novel items in the click decision)"
            + _LEAN,
        ),
        _col(
            "feeling",
            pa.string(),
            "the language user's short feeling about the item; null for the parametric brain",
        ),
    ]
)

SESSIONS = pa.schema(
    [
        _col("segment", _dict_str, _SEGMENT),
        _col("user", pa.int64(), _USER),
        _col("session", pa.int16(), _SESSION),
        _col("day", pa.float32(), _DAY),
        _col("turns", pa.int16(), "slates shown in the session, 1..simulation.turns"),
        _col(
            "left_early",
            pa.bool_(),
            "the user chose to leave (rather than stopping at the turn budget, simulation.turns)",
        ),
        _col(
            "clicks",
            pa.int32(),
            "items clicked in the session: the session's events with clicked (action != skip)",
        ),
        _col(
            "watched",
            pa.int32(),
            "items watched in the session: the session's events with watched (watch or rate)",
        ),
        _col(
            "watch_time",
            pa.float32(),
            "sum of the session's events.watch_fraction (in items: 1.0 = one whole item)",
        ),
        _col("instructions", pa.int32(), "instructions the user wrote in the session"),
        _col("satisfaction_end", pa.float32(), "satisfaction when the session ended, 0..1"),
        _col(
            "top_tag",
            pa.string(),
            "the tag most present in what the user clicked this session; null if none",
        ),
        _col(
            "returned",
            pa.bool_(),
            "the user comes back for another session (after the last simulated session: would "
            "come back)",
        ),
        _col("return_gap_days", pa.float32(), "days until the next session; null if not returning"),
        _col(
            "summary",
            pa.string(),
            "what the user remembers of the session: a templated sentence, or a language "
            "user's own words",
        ),
    ]
)

USER_METRICS = pa.schema(
    [
        _col("segment", pa.string(), _SEGMENT),
        _col("user", pa.int64(), _USER),
        _col(
            "replicate",
            pa.int16(),
            "the replicate the user belongs to, 0-based: each replicate has its own placement of "
            "the creator's new items and its own population; the summary pools replicates",
        ),
        _col(
            "impressions",
            pa.float64(),
            "items shown over the run (the user's events rows in the arm); ctr's denominator",
        ),
        _col(
            "clicks",
            pa.float64(),
            "items clicked over the run (events.clicked); the summary's ctr is clicks / "
            "impressions per user, averaged over users",
        ),
        _col(
            "watch_time",
            pa.float64(),
            "sum of events.watch_fraction over the run; the summary's watch_time is "
            "watch_time / sessions per user",
        ),
        _col("sessions", pa.float64(), "sessions over the run (the summary's sessions)"),
        _col(
            "turns",
            pa.float64(),
            "slates over the run; the summary's session_length is turns / sessions per user",
        ),
        _col(
            "returned_first",
            pa.float64(),
            "1 if the user came back after the first session, else 0 (the summary's return_rate)",
        ),
        _col(
            "creator_impressions",
            pa.float64(),
            "the study creator's items shown over the run; the summary's creator_reach is "
            "1 where this is > 0",
        ),
        _col(
            "creator_clicks",
            pa.float64(),
            "the study creator's items clicked over the run (the summary's creator_engagement)",
        ),
        _col(
            "fallback_slates",
            pa.float64(),
            "slates the recommender's declared fallback served this user instead of a "
            "bring-your-own recommender (a user its file or service does not cover, or a slate "
            "that failed the contract check); 0 for built-in recommenders",
        ),
    ]
)

_METRIC = (
    "the per-user metric: ctr (clicks / impressions: any action but skip, = events.clicked), "
    "watch_time (watch fractions summed / sessions), session_length (turns / sessions), "
    "sessions, return_rate (came back after the first session, 0/1), creator_reach (saw a "
    "creator item, 0/1), creator_engagement (creator items clicked); see user_metrics"
)
_STATS = [
    _col(
        "n",
        pa.int64(),
        "users in the arm and segment (the mean is over users: each weighs the same)",
    ),
    _col(
        "mean",
        pa.float64(),
        "mean over users of the per-user metric (not pooled: ctr is not all clicks / all "
        "impressions); with replicates, the mean of the replicates' means",
    ),
    _col(
        "ci_low",
        pa.float64(),
        "lower end of the 95% interval of mean: over users with one replicate; with several, "
        "the random-effects interval over replicates (placement and population uncertainty "
        "included; recoworld/study/pooling.py)",
    ),
    _col("ci_high", pa.float64(), "upper end of the 95% interval of mean (see ci_low)"),
    _col(
        "diff",
        pa.float64(),
        "mean over users of the paired difference from the control arm (the first arm: the "
        "same users); null for the control arm",
    ),
    _col("diff_ci_low", pa.float64(), "lower end of the 95% interval of diff (see ci_low)"),
    _col("diff_ci_high", pa.float64(), "upper end of the 95% interval of diff (see ci_low)"),
    _col(
        "replicates",
        pa.int32(),
        "replicates pooled (each its own placement of the creator's new items and population); "
        "1: the interval covers user noise only, not which plausible item a new item is",
    ),
    _col("se", pa.float64(), "standard error of mean (the interval's half-width / t)"),
    _col("df", pa.float64(), "degrees of freedom of the interval's Student-t"),
    _col(
        "between_share",
        pa.float64(),
        "share of one replicate's uncertainty about mean that comes from the replicates' "
        "placement and population (tau^2 / (tau^2 + within)); null with one replicate; above "
        "0.5, which item a new item is matters more than which users saw it",
    ),
    _col("diff_se", pa.float64(), "standard error of diff"),
    _col("diff_df", pa.float64(), "degrees of freedom of diff's interval"),
    _col("diff_between_share", pa.float64(), "between_share of diff"),
    _col(
        "lift",
        pa.float64(),
        "relative lift in percent, 100 * diff / the control arm's mean (same segment and "
        "metric); null for the control arm and where the control mean is 0",
    ),
    _col(
        "lift_ci_low",
        pa.float64(),
        "lower end of the 95% interval of lift: delta method with the paired covariance, "
        "pooled over replicates like diff (recoworld/study/inference.py); null where the "
        "control mean is not distinguishable from 0 (the interval is unbounded there)",
    ),
    _col("lift_ci_high", pa.float64(), "upper end of the 95% interval of lift (see lift_ci_low)"),
    _col(
        "p_value",
        pa.float64(),
        "two-sided p-value of diff against 0 (t = diff / diff_se on diff_df degrees of "
        "freedom); 1 where diff is exactly 0; null for the control arm and where diff_se is "
        "unknown. Not adjusted: see p_holm and q_bh",
    ),
    _col(
        "p_holm",
        pa.float64(),
        "p_value after Holm's adjustment over every test of the run's summary (treatment arms "
        "x segments x metrics): a family-wise error bound, valid however the tests depend on "
        "each other. In a sweep summary, the family is the cell's own summary",
    ),
    _col(
        "q_bh",
        pa.float64(),
        "Benjamini-Hochberg q-value over the same family as p_holm: calling every row with "
        "q_bh <= f a change keeps the expected share of false calls at most f",
    ),
    _col(
        "significant",
        pa.bool_(),
        "p_holm <= 0.05: the difference holds with the whole summary's family-wise error "
        "at 5% (Holm); null for the control arm and where p_value is null",
    ),
    _col(
        "mde",
        pa.float64(),
        "minimum detectable effect, in the metric's units: the true diff this design detects "
        "with 80% power at two-sided 5%, (t(0.975, diff_df) + t(0.8, diff_df)) * diff_se; "
        "null for the control arm",
    ),
]
_ARM = "the arm (the study's arms; the first is the control that diff is taken from)"

SUMMARY = pa.schema(
    [
        _col("arm", pa.string(), _ARM),
        _col("segment", pa.string(), "'all', or one segment (a value of population.segment_by)"),
        _col("metric", pa.string(), _METRIC),
        *_STATS,
    ]
)

_UNKEYED = "; -1 for a call made for no user (ad hoc)"
LLM_CALLS = pa.schema(
    [
        _col(
            "call_id",
            pa.string(),
            "'<arm>/<user>/<session>/<turn>/<purpose>/<attempt>' (numbers 0-based); unique "
            "within a run; replay looks calls up by it",
        ),
        _col("user", pa.int64(), "the simulated user the call is for, 0-based" + _UNKEYED),
        _col("session", pa.int16(), "the user's session, 0-based" + _UNKEYED),
        _col("turn", pa.int16(), "slate within the session, 0-based" + _UNKEYED),
        _col(
            "purpose",
            _dict_str,
            "slate | summary | language | rerank | repair-<purpose> (the second attempt)",
        ),
        _col("attempt", pa.int16(), "0 = the question, 1 = its repair after an invalid answer"),
        _col("model", _dict_str, "the model that answered"),
        _col("replica", pa.int16(), "Ray replica that served it; -1 in-process or HTTP"),
        _col(
            "seed",
            pa.int64(),
            "the request's seed (a hash of root seed, user, session, turn, purpose, attempt)",
        ),
        _col("prompt_hash", pa.string(), "sha256 of prompt + schema, 16 hex digits"),
        _col("prompt", pa.string(), "the prompt sent"),
        _col("schema", _dict_str, "the JSON schema the output was constrained to ('' = none)"),
        _col("completion", pa.string(), "the model's completion"),
        _col("tokens_in", pa.int32(), "prompt tokens"),
        _col("tokens_out", pa.int32(), "completion tokens"),
        _col(
            "cached_tokens",
            pa.int32(),
            "prompt tokens served from the prefix cache; -1 unknown",
        ),
        _col("latency_s", pa.float32(), "seconds from request to completion"),
        _col("finish_reason", _dict_str, "stop | length | error | replay"),
        _col(
            "parse_status",
            _dict_str,
            "ok | invalid | repaired | fallback | rejected_id | error (fallback: the "
            "parametric brain's decision stands)",
        ),
        _col("error", pa.string(), "what went wrong ('' if nothing)"),
    ]
)

# --- the social layer's tables (docs/social.md): messages, searches, diffusion -----------------

_ROUND = "round of the social calendar, 0-based: the day (round r covers days [r, r + 1))"
_SENDER = "the user who wrote the message: " + _USER

SOCIAL = pa.schema(
    [
        _col("round", pa.int32(), _ROUND),
        _col("user", pa.int64(), _SENDER),
        _col(
            "receiver",
            pa.int64(),
            "a chat's friend (simulated user id, 0-based); null for a post (every friend reads it)",
        ),
        _col(
            "audience",
            pa.int32(),
            "friends the message reaches: 1 for a chat, the degree for a post",
        ),
        _col("kind", _dict_str, "post (to every friend) | chat (to one friend)"),
        _col(
            "items",
            pa.list_(pa.string()),
            "the item ids the message mentions (items the sender watched, most fully first)",
        ),
        _col(
            "creator_item",
            pa.bool_(),
            "the message mentions one of the items this arm treats (the creator's, or a placebo "
            "arm's placebo items)",
        ),
        _col(
            "text",
            pa.string(),
            "the words (templated for the parametric brain): third-party text for its readers, "
            "shown to them only as data",
        ),
    ]
)
"""One row per message of the social layer (``social/arm=*/part-*.parquet``)."""

SEARCHES = pa.schema(
    [
        _col("round", pa.int32(), _ROUND),
        _col("user", pa.int64(), _USER),
        _col("session", pa.int16(), _SESSION),
        _col("turn", pa.int16(), _TURN + "; the page the results top (events of that turn)"),
        _col("kind", _dict_str, "how the query was typed: title | tags | text"),
        _col("query", pa.string(), "the query text"),
        _col(
            "target",
            _dict_str,
            "the item heard of from a friend that the user searched for; null: a query from its "
            "own memory (a liked tag, words of what it watched)",
        ),
        _col("results", pa.int16(), "items that matched (0: the page is the recommender's)"),
        _col(
            "found_target",
            pa.bool_(),
            "the target is among the results shown; null without a target",
        ),
        _col(
            "shown",
            pa.list_(pa.string()),
            "the result items on the page, best first (before the recommender's items)",
        ),
    ]
)
"""One row per search (``searches/arm=*/part-*.parquet``)."""

_NULL_IF = "; null if never"
DIFFUSION = pa.schema(
    [
        _col("user", pa.int64(), _USER),
        _col("replicate", pa.int16(), "the user's replicate, 0-based (cascades stay inside one)"),
        _col("item_id", _dict_str, "the treated item (the creator's, or a placebo arm's placebo)"),
        _col(
            "heard_round", pa.int32(), "round the user first heard of it from a friend" + _NULL_IF
        ),
        _col("heard_from", pa.int64(), "the friend it first heard of it from (user id)" + _NULL_IF),
        _col("shown_round", pa.int32(), "round the item was first on one of its pages" + _NULL_IF),
        _col(
            "shown_by",
            _dict_str,
            "what first put it there: recommender (its slate, a creator injection included) | "
            "search (the user's search results)" + _NULL_IF,
        ),
        _col("adopted_round", pa.int32(), "round the user first watched it" + _NULL_IF),
        _col(
            "parent",
            pa.int64(),
            "the friend whose word it followed: who first told it of the item before it watched "
            "it (its parent in the cascade); null: it found the item itself (a cascade root) or "
            "never watched it",
        ),
    ]
)
"""One row per user and treated item the user was reached by (heard, shown or watched), per arm
(``diffusion/arm=*/part-*.parquet``)."""

CASCADES = pa.schema(
    [
        _col("arm", pa.string(), "the arm (the study's arms; the first is the control)"),
        _col("replicate", pa.int16(), "the replicate, 0-based"),
        _col("item_id", pa.string(), "the treated item"),
        _col("root", pa.int64(), "the user who watched it without a friend's word (user id)"),
        _col("size", pa.int32(), "users who watched it in this cascade, the root included"),
        _col("depth", pa.int32(), "generations below the root (0: nobody followed its word)"),
        _col("first_round", pa.int32(), "round the root watched it"),
        _col("last_round", pa.int32(), "round the cascade's last user watched it"),
    ]
)
"""One row per cascade: a root and everyone who watched the item following a chain of friends'
words from it (``cascades.parquet``)."""

FRIENDS = pa.schema(
    [
        _col("replicate", pa.int16(), "the replicate, 0-based"),
        _col("user", pa.int64(), "one friend (simulated user id, 0-based; the lower id)"),
        _col("friend", pa.int64(), "the other friend (simulated user id; the higher id)"),
    ]
)
"""One row per friendship of a social run's graph, once (``social_friends.parquet``): who
reads whose posts (the viewer lists the posts a user received from it)."""

DIFFUSION_METRICS = {
    "reach_recommender": "shown a treated item by the recommender (0/1)",
    "reach_search": "found a treated item through search (0/1)",
    "reach_friends": "heard of a treated item from a friend (0/1)",
    "adopted": "watched a treated item (0/1)",
    "adopted_after_friend": "watched a treated item a friend had told it of (0/1)",
    "mentions_sent": "mentions of treated items it sent (a post: once per friend who reads it)",
    "cascade_size": "per cascade (not per user): users who watched, root included",
    "cascade_depth": "per cascade: generations below the root",
    "adoption_round": "per adopter: the round it first watched a treated item",
}
"""The metrics of ``diffusion_summary.parquet`` (the summary's schema): per-user metrics with
the summary's paired intervals, then per-cascade and per-adopter figures pooled over
replicates (no paired difference)."""

TABLES = {
    "events": EVENTS,
    "sessions": SESSIONS,
    "user_metrics": USER_METRICS,
    "summary": SUMMARY,
    "llm_calls": LLM_CALLS,
    "social": SOCIAL,
    "searches": SEARCHES,
    "diffusion": DIFFUSION,
    "cascades": CASCADES,
    "diffusion_summary": SUMMARY,
    "social_friends": FRIENDS,
}

USERS_TABLE = "users"
"""The table name ``users.parquet`` carries in its metadata."""

USERS = pa.schema(
    [
        _col("user", pa.int64(), _USER),
        _col(
            "replicate",
            pa.int16(),
            "the replicate the user belongs to, 0-based: each replicate has its own placement of "
            "the creator's new items and its own population; the summary pools replicates",
        ),
        _col("segment", pa.string(), _SEGMENT),
        _col(
            "source_user",
            pa.string(),
            "the world's user this persona was drawn from ('' if synthetic)",
        ),
        _col("age", pa.int64(), "age in years; -1 unknown"),
        _col("gender", pa.string(), "gender as the world gives it ('' unknown)"),
        _col("occupation", pa.string(), "occupation as the world gives it ('' unknown)"),
        _col("activity", pa.float32(), "trait in [0, 1]: how often the user clicks and comes back"),
        _col("conformity", pa.float32(), "trait in [0, 1]: how much popularity sways the user"),
        _col(
            "diversity",
            pa.float32(),
            "trait in [0, 1]: appetite for variety (the level curiosity moves to)",
        ),
        _col(
            "patience",
            pa.float32(),
            "trait in [0, 1]: the higher, the later the user leaves a session",
        ),
        _col(
            "liked_tags",
            pa.list_(pa.string()),
            "up to 3 tags with the largest share of the persona's taste",
        ),
    ]
)
"""One row per simulated user (``users.parquet``)."""

SWEEP_SUMMARY_TABLE = "sweep_summary"
"""The table name a sweep summary file carries in its metadata."""

SWEEP_SUMMARY = pa.schema(
    [
        _col("study", pa.string(), "the study file's name (a sweep cell key)"),
        _col("recommender", pa.string(), "the recommender variant (a sweep cell key)"),
        _col("population", pa.string(), "the population variant (a sweep cell key)"),
        _col("seed", pa.int64(), "the cell's root seed (a sweep cell key)"),
        _col(
            "cell",
            pa.string(),
            "the cell's id, '<study>--<recommender>--<population>--s<seed>' (its run folder)",
        ),
        _col("arm", pa.string(), _ARM),
        _col("metric", pa.string(), _METRIC),
        *_STATS,
    ]
)
"""One row per sweep cell x arm x metric: segment "all" of each cell's ``summary`` with the
cell's keys. The date is the hive partition of the folder the file is in (not a column)."""

SWEEP_POOLED_TABLE = "sweep_pooled"
"""The table name a sweep's pooled file carries in its metadata."""

_POOLED = (
    "; pooled over the seeds (each cell's mean, se and df from sweep_summary, equal weights; "
    "random-effects interval, recoworld/study/pooling.py)"
)
SWEEP_POOLED = pa.schema(
    [
        _col("study", pa.string(), "the study file's name (a sweep cell key)"),
        _col("recommender", pa.string(), "the recommender variant (a sweep cell key)"),
        _col("population", pa.string(), "the population variant (a sweep cell key)"),
        _col("arm", pa.string(), _ARM),
        _col("metric", pa.string(), _METRIC),
        _col(
            "seeds",
            pa.int32(),
            "seeds pooled (cells with a value); 1: the interval is that seed's own, and "
            "says nothing about how much another seed's population and items would move it",
        ),
        _col("n", pa.int64(), "users over all pooled seeds"),
        _col("mean", pa.float64(), "mean of the seeds' means (each seed weighs the same)"),
        _col(
            "ci_low",
            pa.float64(),
            "lower end of the 95% interval of mean" + _POOLED,
        ),
        _col("ci_high", pa.float64(), "upper end of the 95% interval of mean (see ci_low)"),
        _col("se", pa.float64(), "standard error of mean (the interval's half-width / t)"),
        _col("df", pa.float64(), "degrees of freedom of the interval's Student-t"),
        _col(
            "between_share",
            pa.float64(),
            "share of one seed's uncertainty about mean that comes from the seed (its "
            "population, world and item placement) rather than its own interval: tau^2 / "
            "(tau^2 + mean se^2); null with one seed",
        ),
        _col(
            "diff",
            pa.float64(),
            "mean of the seeds' paired differences from the control arm; null for the control",
        ),
        _col("diff_ci_low", pa.float64(), "lower end of the 95% interval of diff" + _POOLED),
        _col("diff_ci_high", pa.float64(), "upper end of the 95% interval of diff (see ci_low)"),
        _col("diff_se", pa.float64(), "standard error of diff"),
        _col("diff_df", pa.float64(), "degrees of freedom of diff's interval"),
        _col("diff_between_share", pa.float64(), "between_share of diff"),
        _col(
            "lift",
            pa.float64(),
            "relative lift in percent, 100 * diff / the control arm's pooled mean (same study, "
            "recommender, population and metric); null for the control arm and where that "
            "mean is 0",
        ),
        _col(
            "lift_ci_low",
            pa.float64(),
            "lower end of the 95% interval of lift: the summary's delta method with the paired "
            "covariance, from each seed's standard errors, pooled over the seeds like diff "
            "(recoworld/study/inference.py); null where the control mean is not "
            "distinguishable from 0 (the interval is unbounded there)",
        ),
        _col(
            "lift_ci_high", pa.float64(), "upper end of the 95% interval of lift (see lift_ci_low)"
        ),
        _col(
            "p_value",
            pa.float64(),
            "two-sided p-value of diff against 0 (t = diff / diff_se on diff_df degrees of "
            "freedom); null for the control arm and where diff_se is unknown. Not adjusted",
        ),
        _col(
            "p_holm",
            pa.float64(),
            "p_value after Holm's adjustment over every test of this table (every study x "
            "recommender x population x treatment arm x metric of the sweep): a family-wise "
            "error bound, valid however the tests depend on each other",
        ),
        _col(
            "q_bh",
            pa.float64(),
            "Benjamini-Hochberg q-value over the same family as p_holm: calling every row with "
            "q_bh <= f a change keeps the expected share of false calls at most f",
        ),
        _col(
            "significant",
            pa.bool_(),
            "p_holm <= 0.05: the difference holds with the whole sweep table's family-wise "
            "error at 5% (Holm); null for the control arm and where p_value is null",
        ),
        _col(
            "mde",
            pa.float64(),
            "minimum detectable effect of the pooled diff, in the metric's units: "
            "(t(0.975, diff_df) + t(0.8, diff_df)) * diff_se; null for the control arm",
        ),
        _col(
            "rank",
            pa.int32(),
            "the recommender variant's rank by mean among the variants of the same study, "
            "population, arm and metric (1 = highest mean; ties share the lower rank); null "
            "without a mean",
        ),
        _col(
            "overlaps_best",
            pa.bool_(),
            "the 95% interval overlaps that of rank 1 (true for rank 1): the seeds do not "
            "clearly set this variant below the best (a loose check: intervals that do not "
            "overlap differ clearly; overlap is no proof of a tie); null without an interval",
        ),
    ]
)
"""One row per sweep study x recommender x population x arm x metric: the cells of every seed
pooled (``sweep_pooled.parquet``, next to ``sweep_summary.parquet``), with each variant's rank."""

DESCRIBED = {
    **TABLES,
    USERS_TABLE: USERS,
    SWEEP_SUMMARY_TABLE: SWEEP_SUMMARY,
    SWEEP_POOLED_TABLE: SWEEP_POOLED,
}
"""Every table RecoWorld writes, by name: what ``recoworld schema`` prints."""

WHERE = {
    "events": "events/arm=<arm>/part-*.parquet: one row per item shown",
    "sessions": "sessions/arm=<arm>/part-*.parquet: one row per user session",
    "user_metrics": "user_metrics/arm=<arm>/part-*.parquet: one row per user (per-user totals)",
    "summary": "summary.parquet: one row per arm x segment x metric",
    "llm_calls": "llm_calls/arm=<arm>/part-*.parquet: one row per language-model call",
    "social": "social/arm=<arm>/part-*.parquet: one row per post or chat (social layer)",
    "searches": "searches/arm=<arm>/part-*.parquet: one row per search (social layer)",
    "diffusion": (
        "diffusion/arm=<arm>/part-*.parquet: one row per user and treated item it was reached by"
    ),
    "cascades": "cascades.parquet: one row per cascade of a treated item (social layer)",
    "social_friends": (
        "social_friends.parquet: one row per friendship of the graph (social layer)"
    ),
    "diffusion_summary": (
        "diffusion_summary.parquet: one row per arm x segment x diffusion metric (social layer)"
    ),
    USERS_TABLE: "users.parquet: one row per simulated user",
    SWEEP_SUMMARY_TABLE: (
        "<sweep>/date=<date>/sweep_summary.parquet: one row per cell x arm x metric"
    ),
    SWEEP_POOLED_TABLE: (
        "<sweep>/date=<date>/sweep_pooled.parquet: one row per study x recommender x "
        "population x arm x metric (seeds pooled)"
    ),
}
"""Where each table lives in a run (or sweep) folder, and what a row is. In part tables the arm
is the folder's hive partition (``arm=<arm>``), not a column of the file."""


def with_metadata(schema: pa.Schema, table: str) -> pa.Schema:
    return schema.with_metadata(
        {METADATA_KEY: str(SCHEMA_VERSION).encode(), TABLE_KEY: table.encode()}
    )


def version_problem(version: object) -> str:
    """Why data of ``version`` cannot be read here, and what to do about it."""
    if isinstance(version, str) and version.isdigit():
        version = int(version)
    if isinstance(version, int) and not isinstance(version, bool) and version < SCHEMA_VERSION:
        return (
            f"written by schema version {version}; "
            f"this RecoWorld reads version {SCHEMA_VERSION}: re-run the study"
        )
    if isinstance(version, int) and not isinstance(version, bool):
        return (
            f"written by schema version {version} (a newer RecoWorld); "
            f"this RecoWorld reads version {SCHEMA_VERSION}: upgrade RecoWorld"
        )
    return f"written with schema version {version!r}; this RecoWorld reads version {SCHEMA_VERSION}"
