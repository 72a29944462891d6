"""examples/rl/train.py, small: a few hundred slates of training on the native batched env, a
checkpoint, and its evaluation as a plug-in on held-out users (the example's whole path)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from recoworld.config import (  # noqa: E402
    PopulationConfig,
    RecommenderConfig,
    SimulationConfig,
    StudyConfig,
    WorldConfig,
)
from recoworld.env.scorer import CandidateScorer  # noqa: E402
from recoworld.eval.policy import build_bench, checkpoint_recommender, evaluate  # noqa: E402
from recoworld.world.synthetic import synthetic_world  # noqa: E402

TRAIN = Path(__file__).resolve().parents[1] / "examples" / "rl" / "train.py"


def load_example():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("rl_train_example", TRAIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_example_trains_a_scorer_and_evaluates_it(tmp_path: Path) -> None:
    import torch

    torch.set_num_threads(1)
    example = load_example()
    cfg = StudyConfig(
        name="rl-smoke",
        seed=0,
        world=WorldConfig(dataset="synthetic", embedding_dim=8),
        population=PopulationConfig(size=300),
        simulation=SimulationConfig(sessions=3, turns=3, slate_size=5),
    )
    bench = build_bench(cfg, synthetic_world(150, 300, seed=1))
    settings = example.Settings(envs=32, steps=4, iterations=3, candidates=30, minibatch=512)
    rows: list[str] = []
    scorer, log = example.train(bench, 1, settings, log=rows.append)
    assert len(rows) == 3 and len(log["curve"]) == 3
    assert log["curve"][-1]["slates"] == 3 * 4 * 32
    assert np.isfinite([r["loss"] for r in log["curve"]]).all()
    # the torch scorer and its numpy export score alike
    assert scorer.settings["candidates"] == 30 and scorer.settings["slate_size"] == 5
    path = tmp_path / "policy.npz"
    scorer.save(path)
    assert isinstance(CandidateScorer.load(path), CandidateScorer)
    result = evaluate(
        bench,
        {"policy": checkpoint_recommender(path), "mf": RecommenderConfig(kind="mf")},
        [0],
        users=bench.test_users[:30],
    )
    assert result.get("policy", "retention").mean >= 1.0
    assert 0.0 <= result.get("policy", "ndcg").mean <= 1.0
