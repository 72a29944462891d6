"""The per-user metrics of a study: the one definition of each formula.

The unit of analysis is the user: each metric is a per-user number computed from that user's
totals over the run (the ``user_metrics`` table, :class:`~recoworld.study.simulate.UserMetrics`),
so users are independent draws and a Student-t interval on their mean is valid. Every arm sees
the same users with the same random streams, so an arm's effect is estimated from per-user
differences (paired); :mod:`recoworld.study.aggregate` does both.

Plain numpy: metrics are computed in forked worker processes, where polars' thread pool can
deadlock.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
import numpy as np


class Metric(msgspec.Struct, frozen=True, kw_only=True):
    """A per-user metric: the user's ``total``, divided by its ``per`` total when given, or
    1.0 / 0.0 for whether it is positive when ``reached``."""

    total: str
    """The per-user total (a ``user_metrics`` column)."""
    per: str | None = None
    """The total it is divided by (NaN where that is 0)."""
    reached: bool = False
    """1.0 if ``total`` is positive, else 0.0."""

    def of(self, totals: Mapping[str, np.ndarray]) -> np.ndarray:
        """The metric of every user, from per-user totals (float64)."""
        x = totals[self.total]
        if self.reached:
            return (x > 0).astype(np.float64)
        if self.per is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                x = x / totals[self.per]
        return np.asarray(x, np.float64)


METRICS: dict[str, Metric] = {
    "ctr": Metric(total="clicks", per="impressions"),  # click-through rate
    "watch_time": Metric(total="watch_time", per="sessions"),  # watch fractions summed, per session
    "session_length": Metric(total="turns", per="sessions"),  # turns per session
    "sessions": Metric(total="sessions"),
    "return_rate": Metric(total="returned_first"),  # came back after the first session (0/1)
    "creator_reach": Metric(total="creator_impressions", reached=True),  # saw a creator item (0/1)
    "creator_engagement": Metric(total="creator_clicks"),  # creator items clicked
}
"""Every metric of the summary, in the summary's order."""

METRIC_NAMES = tuple(METRICS)
