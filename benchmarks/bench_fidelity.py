"""Fidelity benchmark: evaluation time, and how far the parametric brain is from what the
held-out data allows, against baselines measured in the same run.

    .venv/bin/python benchmarks/bench_fidelity.py [--dataset ml-100k] [--repeats 3]

Prints:
1. wall time of `evaluate` (median of repeats), and its protocols' headline figures;
2. on the same 1:1 and 1:9 discrimination lists, each *score* turned into decisions by the
   best rule a score allows when told the list's share (watch the top p of the list): the
   fitted choice model, popularity alone, and two strong collaborative-filtering scores fitted
   on the same training part (EASE, lambda = 500; PureSVD, 16 factors). This bounds what a
   better choice model could reach on this split;
3. the same with a random (not time-ordered) per-user split, as protocols that do not split
   by time evaluate.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from recoworld.eval import protocols as P
from recoworld.eval.fidelity import FidelitySettings, Fitting, evaluate, fit_on_training
from recoworld.eval.report import headline
from recoworld.world.loaders import load_world


def _auc(score: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import rankdata

    r = rankdata(score)
    npos = y.sum()
    return float((r[y].sum() - npos * (npos + 1) / 2) / (npos * (y.size - npos)))


def scores(f: Fitting) -> dict[str, callable]:
    tr = f.split.train_coded
    n_users, n_items = f.split.world.users.height, f.split.n_items
    x = sp.csr_matrix((np.ones(len(tr)), (tr.user, tr.item)), shape=(n_users, n_items))
    x.data[:] = 1.0
    g = (x.T @ x).toarray()
    p = np.linalg.inv(g + 500.0 * np.eye(n_items)) if n_items <= 4000 else None
    out = {
        "choice model": lambda u, it: f.fitted.model.static_logit(
            f.personas, u, it, f.catalog, "logged"
        )[0],
        "popularity": lambda u, it: (
            f.catalog.popularity[it] + 1e-6 * np.random.default_rng(0).random(it.shape)
        ),
    }
    if p is not None:
        b = -p / np.diag(p)
        np.fill_diagonal(b, 0.0)
        xb = x @ b
        out["EASE (500)"] = lambda u, it: np.take_along_axis(np.asarray(xb[u]), it, axis=1)
    _, _, vt = svds(x, k=16, random_state=0)
    uf = np.asarray(x @ vt.T)
    out["PureSVD (16)"] = lambda u, it: np.einsum("nd,nkd->nk", uf[u], vt.T[it])
    return out


def top_share_metrics(f: Fitting, score, ratio: int) -> tuple[float, float, float]:  # noqa: ANN001
    """(accuracy, F1, AUC) of 'watch the top 1/(1+ratio) of the list by score'."""
    lists = P.discrimination_lists(f.split, ratio, seed=0)
    length = lists.valid.sum(1)
    pred = np.zeros(lists.items.shape)
    all_s, all_y = [], []
    for ln in np.unique(length):
        rows = np.flatnonzero(length == ln)
        s = score(lists.users[rows], lists.items[rows, :ln])
        n = ln // (1 + ratio)
        pred[rows, :ln] = s >= -np.sort(-s, axis=1)[:, n - 1 : n]
        all_s.append(s.ravel())
        all_y.append(lists.label[rows, :ln].ravel())
    m = P._scores(pred, lists.label, lists.valid)
    return (
        float(m["accuracy"].mean()),
        float(m["f1"].mean()),
        _auc(np.concatenate(all_s), np.concatenate(all_y)),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    world = load_world(args.dataset)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        result = evaluate(world, FidelitySettings())
        times.append(time.perf_counter() - t0)
    h = headline(result)
    print(
        f"{args.dataset}: evaluate() median {statistics.median(times):.2f}s over {args.repeats} "
        "(goal < 300s)"
    )
    print("  " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(h.items())))
    for order in ("auto", "random"):
        f = fit_on_training(world, FidelitySettings(split_order=order))
        print(
            f"\nsplit {f.split.order}: watch the top share of each list by score (told the share)"
        )
        print(f"  {'score':<16} {'acc 1:1':>8} {'F1 1:9':>8} {'AUC':>7} {'acc vs pop':>11}")
        sc = scores(f)
        pop_acc = top_share_metrics(f, sc["popularity"], 1)[0]
        for name, s in sc.items():
            a1, _, auc = top_share_metrics(f, s, 1)
            _, f9, _ = top_share_metrics(f, s, 9)
            print(f"  {name:<16} {a1:8.3f} {f9:8.3f} {auc:7.3f} {a1 / pop_acc:11.3f}")


if __name__ == "__main__":
    main()
