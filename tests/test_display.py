"""The summary table on a terminal (recoworld/display.py): what it says about its intervals."""

from __future__ import annotations

import polars as pl
import pytest
from rich.console import Console

from recoworld.display import pm, summary_notes, summary_table


def summary(replicates: int, share: float | None, reach: float = 0.2) -> pl.DataFrame:
    rows = []
    for arm, diff in (("control", None), ("inject", 0.5)):
        for metric, mean in (("ctr", 0.1), ("creator_reach", reach)):
            rows.append(
                {
                    "arm": arm, "segment": "all", "metric": metric, "n": 100, "mean": mean,
                    "ci_low": mean - 0.01, "ci_high": mean + 0.01, "diff": diff,
                    "diff_ci_low": None if diff is None else diff - 0.1,
                    "diff_ci_high": None if diff is None else diff + 0.1,
                    "replicates": replicates, "between_share": share,
                    "diff_between_share": None if diff is None else share,
                    "lift": None if diff is None else 250.0,
                    "lift_ci_low": None if diff is None else 200.0,
                    "lift_ci_high": None if diff is None else 300.0,
                    "significant": None if diff is None else True,
                    "q_bh": None if diff is None else 0.001,
                    "mde": None if diff is None else 0.05,
                }
            )  # fmt: skip
    return pl.DataFrame(rows)


@pytest.mark.parametrize(
    ("mean", "lo", "hi", "sign", "text"),
    [
        (0.5, 0.4, 0.6, False, "0.5000 ± 0.1000"),
        (0.5, 0.4, 0.6, True, "+0.5000 ± 0.1000"),
        (0.5, None, None, False, "0.5000"),
        (None, None, None, False, "-"),
        (float("nan"), 0.0, 1.0, False, "-"),
    ],
)
def test_pm(mean, lo, hi, sign, text) -> None:  # noqa: ANN001
    assert pm(mean, lo, hi, sign) == text


def test_one_replicate_with_creator_items_warns_that_placement_is_ignored() -> None:
    notes = summary_notes(summary(1, None))
    assert "over users;" in notes[0]
    assert any("one replicate: the intervals ignore" in n for n in notes)
    assert not any(
        "one replicate" in n for n in summary_notes(summary(1, None), creator_items=False)
    )


def test_replicates_are_named_and_a_dominant_placement_spread_is_flagged() -> None:
    calm = summary_notes(summary(5, 0.2))
    assert "over 5 replicates" in calm[0] and not any("warning" in n for n in calm)
    loud = summary_notes(summary(5, 0.8))
    assert any("between-replicate share > 0.5: control creator_reach" in n for n in loud)


def test_the_table_shows_lift_significance_and_mde() -> None:
    console = Console(width=200, record=True)
    console.print(summary_table(summary(5, 0.2), title="t"))
    text = console.export_text()
    assert "+250.0% [+200.0, +300.0]" in text and "* q=0.001" in text and "0.0500" in text
    assert "(control)" in text and "over 5 replicates" in text
