"""Benchmark: fitting a world's user models (``recoworld.users.fit.fit_choice_model``).

A fit runs eight penalised logistic regressions (one per candidate half-life of the recent
taste on a sample of the design, the logged-world and the choice-among-shown models on all of
it, and the lingering within a session on a sample), then the rating and return models. Its
solver is Newton's method with a line search; the baseline, measured in the same run, is the
quasi-Newton solver it replaced (scipy's L-BFGS-B with the same objective and gradient). The
two are alternated fit by fit; printed:
median wall seconds of a whole fit, the ratio, and how far apart the fitted coefficients are
(Newton reaches the optimum; L-BFGS stops at its default tolerance).

    python benchmarks/bench_fit.py [--world ml-100k] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import recoworld.users.fit as fit_module  # noqa: E402
from recoworld.config import WorldConfig  # noqa: E402
from recoworld.items.catalog import build_catalog  # noqa: E402
from recoworld.study.prepare import load_world_for  # noqa: E402

NEWTON = fit_module._logistic_fit


def lbfgs(
    x: np.ndarray,
    y: np.ndarray,
    l2: float = 1e-3,
    start: np.ndarray | None = None,
    *,
    offset: np.ndarray | float = 0.0,
) -> np.ndarray:
    """The baseline: the solver before (same objective, scipy's L-BFGS-B, its defaults)."""

    def loss(b: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ b + offset
        p = 1.0 / (1.0 + np.exp(-z))
        ll = np.logaddexp(0.0, z) - y * z
        g = x.T @ (p - y) / len(y) + l2 * np.r_[0.0, b[1:]]
        return float(ll.mean() + 0.5 * l2 * (b[1:] ** 2).sum()), g

    x0 = np.zeros(x.shape[1]) if start is None else start
    return minimize(loss, x0, jac=True, method="L-BFGS-B").x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", default="ml-100k")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    world = load_world_for(WorldConfig(dataset=args.world), 0)
    catalog = build_catalog(world, dim=32, seed=0)
    print(f"{args.world}: {world.interactions.height:,} interactions")
    times: dict[str, list[float]] = {"lbfgs (before)": [], "newton": []}
    coef: dict[str, np.ndarray] = {}
    solvers = {"lbfgs (before)": lbfgs, "newton": NEWTON}
    try:
        for _ in range(args.repeats):
            for name, solver in solvers.items():  # alternated, fit by fit
                fit_module._logistic_fit = solver
                t0 = time.perf_counter()
                fitted = fit_module.fit_choice_model(world, catalog, seed=0)
                times[name].append(time.perf_counter() - t0)
                coef[name] = np.r_[fitted.model.logged_coef, fitted.model.coef]
    finally:
        fit_module._logistic_fit = NEWTON
    base = float(np.median(times["lbfgs (before)"]))
    for name, t in times.items():
        med = float(np.median(t))
        print(f"  {name:16s} median {med:6.2f} s over {len(t)} fits  x{base / med:.2f} vs before")
    diff = np.abs(coef["newton"] - coef["lbfgs (before)"]).max()
    print(f"  largest coefficient difference between the solvers: {diff:.2e}")


if __name__ == "__main__":
    main()
