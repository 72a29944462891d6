"""A small, complete run on a generated world, for the report and viewer tests, the browser
check (.ci/browser.sh) and trying the commands without data: ``python -m recoworld.report.sample
OUT_DIR`` writes ``OUT_DIR/sample`` in a few seconds.

:func:`add_llm_records` turns such a run into what an LLM brain writes (per-item ``feeling``
texts in ``events`` and an ``llm_calls`` table), so readers of those columns can be tested
without a language model.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from recoworld.config import (
    ArmConfig,
    CreatorConfig,
    CreatorItem,
    PopulationConfig,
    RecommenderConfig,
    SimulationConfig,
    StudyConfig,
    WorldConfig,
)
from recoworld.io.runs import reseal
from recoworld.io.samples import arm_parts, part_path
from recoworld.io.schema import LLM_CALLS
from recoworld.io.tables import read_table, write_table

SAMPLE_STUDY = StudyConfig(
    name="sample",
    seed=7,
    description=(
        "A generated world: an indie creator's two new titles injected into every other slate."
    ),
    world=WorldConfig(
        dataset="synthetic", synthetic_users=150, synthetic_items=120, embedding_dim=8
    ),
    population=PopulationConfig(size=120, segment_by="activity"),
    simulation=SimulationConfig(sessions=3, turns=4, slate_size=6, replicates=3),
    recommender=RecommenderConfig(kind="mf", candidates=40),
    creator=CreatorConfig(
        id="indie",
        name="Indie Studio",
        items=[
            CreatorItem(title="Small Hours", text="A night-shift nurse.", tags=["drama"]),
            CreatorItem(
                title="Paper Moons", text="Two rival kite makers.", tags=["comedy", "drama"]
            ),
        ],
    ),
    arms=[
        ArmConfig(name="control"),
        ArmConfig(name="inject", treatment="inject", position=1, rate=0.5),
    ],
)


def sample_run(
    out_dir: str | Path, *, run_id: str = "sample", users: int | None = None, overwrite: bool = True
) -> Path:
    """Run :data:`SAMPLE_STUDY` (``users`` per arm) into ``out_dir/run_id``; returns the folder."""
    import msgspec

    from recoworld.study.runner import run_study
    from recoworld.world.synthetic import synthetic_world

    cfg = SAMPLE_STUDY
    if users is not None:
        cfg = msgspec.structs.replace(
            cfg, population=msgspec.structs.replace(cfg.population, size=users)
        )
    world = synthetic_world(cfg.world.synthetic_users, cfg.world.synthetic_items, seed=cfg.seed)
    return run_study(cfg, world, run_id=run_id, out_dir=Path(out_dir), overwrite=overwrite).path


FEELINGS = ("Loved the pacing.", "Not my kind of thing.", "loved the pacing!", "Too slow for me.")


def add_llm_records(run_dir: str | Path) -> None:
    """Give every clicked item of ``run_dir``'s events a feeling (from :data:`FEELINGS`, by
    position) and write an ``llm_calls`` table with one call per slate of user 0 and 1 (one
    of them invalid then repaired). Rewrites the run in place: use a copy."""
    for arm, files in arm_parts(run_dir, "events").items():
        slates: set[tuple[int, int, int]] = set()
        for f in files:
            t = read_table(f, "events")
            clicked = pc.not_equal(pc.cast(t["action"], pa.string()), "skip").to_pylist()
            pos = pc.cast(t["position"], pa.int64()).to_pylist()
            feel = pa.array(
                [
                    FEELINGS[p % len(FEELINGS)] if c else None
                    for p, c in zip(pos, clicked, strict=True)
                ],
                pa.string(),
            )
            write_table(
                f, t.set_column(t.schema.get_field_index("feeling"), "feeling", feel), "events"
            )
            keys = zip(t["user"].to_pylist(), t["session"].to_pylist(), t["turn"].to_pylist(), pos)
            slates |= {(u, s, turn) for u, s, turn, p in keys if u in (0, 1) and p == 0}
        rows = []
        for k, (user, session, turn) in enumerate(sorted(slates)):
            attempts = [("invalid", "length"), ("repaired", "stop")] if k == 1 else [("ok", "stop")]
            for a, (status, finish) in enumerate(attempts):
                rows.append(
                    {
                        "call_id": f"{arm}/{user}/{session}/{turn}/slate/{a}",
                        "user": user,
                        "session": session,
                        "turn": turn,
                        "purpose": "slate" if a == 0 else "repair-slate",
                        "attempt": a,
                        "model": "fake-llm",
                        "replica": -1,
                        "seed": 1000 + k,
                        "prompt_hash": f"{k:016x}",
                        "prompt": f"You are user {user}. Slate {turn + 1}: …",
                        "schema": "",
                        "completion": '{"decisions": []}',
                        "tokens_in": 300 + k,
                        "tokens_out": 40,
                        "cached_tokens": 200,
                        "latency_s": 0.05 * (1 + k % 4),
                        "finish_reason": finish,
                        "parse_status": status,
                        "error": "unterminated string" if status == "invalid" else None,
                    }
                )
        write_table(
            part_path(run_dir, "llm_calls", arm, 0),
            pa.Table.from_pylist(rows, schema=LLM_CALLS),
            "llm_calls",
        )
    reseal(run_dir)  # a deliberate rewrite of a finished run: its manifest's hashes follow


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m recoworld.report.sample OUT_DIR")
    print(sample_run(sys.argv[1]))
