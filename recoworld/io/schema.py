"""The versioned Parquet schemas of a run. Bump SCHEMA_VERSION on any incompatible change.

Tables (one folder each under ``runs/<run_id>/``, hive-partitioned by ``arm=``):
- ``events``: one row per item shown;
- ``sessions``: one row per user session, with the session summary kept in memory;
- ``user_metrics``: one row per user and arm, the per-user totals the summary is built from;
- ``summary``: one row per arm x segment x metric (a single file);
- ``llm_calls``: one row per language-model call (LLM and hybrid brains, agentic recommender):
  prompt and completion, their hash, tokens, latency, finish reason, parse status, seed.

A sweep's date folder holds ``sweep_summary`` (:data:`SWEEP_SUMMARY`, a single file written and
read through ``recoworld/io/tables.py``); it is not a run table, so it is not in :data:`TABLES`.

Version 2 added ``events.feeling`` (the LLM user's short feeling about an item; null for the
parametric brain) and the ``llm_calls`` table.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 2
METADATA_KEY = b"recoworld.schema_version"
TABLE_KEY = b"recoworld.table"

_dict_str = pa.dictionary(pa.int32(), pa.string())

EVENTS = pa.schema(
    [
        ("segment", _dict_str),
        ("user", pa.int64()),
        ("session", pa.int16()),
        ("turn", pa.int16()),
        ("position", pa.int16()),
        ("day", pa.float32()),
        ("item_id", _dict_str),
        ("creator", _dict_str),
        ("is_creator_item", pa.bool_()),
        ("action", _dict_str),
        ("watch_fraction", pa.float32()),
        ("rating", pa.float32()),
        ("left_after_turn", pa.bool_()),
        ("instruction", _dict_str),
        ("satisfaction", pa.float32()),
        ("fatigue", pa.float32()),
        ("boredom", pa.float32()),
        ("curiosity", pa.float32()),
        ("feeling", pa.string()),
    ]
)

SESSIONS = pa.schema(
    [
        ("segment", _dict_str),
        ("user", pa.int64()),
        ("session", pa.int16()),
        ("day", pa.float32()),
        ("turns", pa.int16()),
        ("left_early", pa.bool_()),
        ("clicks", pa.int32()),
        ("watched", pa.int32()),
        ("watch_time", pa.float32()),
        ("instructions", pa.int32()),
        ("satisfaction_end", pa.float32()),
        ("top_tag", pa.string()),
        ("returned", pa.bool_()),
        ("return_gap_days", pa.float32()),
        ("summary", pa.string()),
    ]
)

USER_METRICS = pa.schema(
    [
        ("segment", pa.string()),
        ("user", pa.int64()),
        ("impressions", pa.float64()),
        ("clicks", pa.float64()),
        ("watch_time", pa.float64()),
        ("sessions", pa.float64()),
        ("turns", pa.float64()),
        ("returned_first", pa.float64()),
        ("creator_impressions", pa.float64()),
        ("creator_clicks", pa.float64()),
    ]
)

SUMMARY = pa.schema(
    [
        ("arm", pa.string()),
        ("segment", pa.string()),
        ("metric", pa.string()),
        ("n", pa.int64()),
        ("mean", pa.float64()),
        ("ci_low", pa.float64()),
        ("ci_high", pa.float64()),
        ("diff", pa.float64()),
        ("diff_ci_low", pa.float64()),
        ("diff_ci_high", pa.float64()),
    ]
)

LLM_CALLS = pa.schema(
    [
        ("call_id", pa.string()),  # "<arm>/<user>/<session>/<turn>/<purpose>/<attempt>"
        ("user", pa.int64()),
        ("session", pa.int16()),
        ("turn", pa.int16()),
        ("purpose", _dict_str),  # slate | summary | language | rerank | repair-<purpose>
        ("attempt", pa.int16()),
        ("model", _dict_str),
        ("replica", pa.int16()),  # Ray replica that served it, -1 in-process / HTTP
        ("seed", pa.int64()),
        ("prompt_hash", pa.string()),  # sha256 of prompt + schema, 16 hex digits
        ("prompt", pa.string()),
        ("schema", _dict_str),  # the JSON schema the output was constrained to ("" = none)
        ("completion", pa.string()),
        ("tokens_in", pa.int32()),
        ("tokens_out", pa.int32()),
        ("cached_tokens", pa.int32()),  # prompt tokens served from the prefix cache, -1 unknown
        ("latency_s", pa.float32()),
        ("finish_reason", _dict_str),  # stop | length | error | replay
        ("parse_status", _dict_str),  # ok | invalid | repaired | fallback | rejected_id | error
        ("error", pa.string()),
    ]
)

TABLES = {
    "events": EVENTS,
    "sessions": SESSIONS,
    "user_metrics": USER_METRICS,
    "summary": SUMMARY,
    "llm_calls": LLM_CALLS,
}

SWEEP_SUMMARY_TABLE = "sweep_summary"
"""The table name a sweep summary file carries in its metadata."""

SWEEP_SUMMARY = pa.schema(
    [
        ("study", pa.string()),
        ("recommender", pa.string()),
        ("population", pa.string()),
        ("seed", pa.int64()),
        ("cell", pa.string()),
        ("arm", pa.string()),
        ("metric", pa.string()),
        ("n", pa.int64()),
        ("mean", pa.float64()),
        ("ci_low", pa.float64()),
        ("ci_high", pa.float64()),
        ("diff", pa.float64()),
        ("diff_ci_low", pa.float64()),
        ("diff_ci_high", pa.float64()),
    ]
)
"""One row per sweep cell x arm x metric: segment "all" of each cell's ``summary`` with the
cell's keys. The date is the hive partition of the folder the file is in (not a column)."""


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
