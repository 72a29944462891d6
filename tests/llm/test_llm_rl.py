"""The language-model recommender's RL hook: TRL's GRPO trainer optimises the tiny model on the
text environment (prompts of lives' states, JSON slates scored by the retention environment) for
two steps, on CPU. What is checked is the plumbing (prompts in, completions scored by the
environment, gradients applied), not that a random-weight model learns to recommend."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("trl")
pytest.importorskip("datasets")

from recoworld.config import (  # noqa: E402
    PopulationConfig,
    SimulationConfig,
    StudyConfig,
    WorldConfig,
)
from recoworld.env.text import CompletionReward, TextRecoEnv, prompt_rows  # noqa: E402
from recoworld.study.prepare import prepare  # noqa: E402
from recoworld.world.synthetic import synthetic_world  # noqa: E402

pytestmark = pytest.mark.llm


def test_grpo_takes_two_optimisation_steps_on_the_text_env(
    tiny_model: Path, tmp_path: Path
) -> None:
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(1)
    cfg = StudyConfig(
        name="llm-rl",
        seed=1,
        world=WorldConfig(dataset="synthetic", embedding_dim=8),
        population=PopulationConfig(size=30),
        simulation=SimulationConfig(sessions=2, turns=2, slate_size=3),
    )
    prep = prepare(cfg, synthetic_world(60, 80, seed=1))
    make_env = lambda: TextRecoEnv(prep, candidates=6)  # noqa: E731
    rows = prompt_rows(make_env, 4, seed=0, max_depth=2)
    assert all(r["prompt"].startswith("You are a recommender.") for r in rows)
    env_reward = CompletionReward(make_env, horizon="session")
    scored: list[float] = []

    def reward(completions, **columns):  # noqa: ANN001, ANN003, ANN202
        out = env_reward(completions, **columns)
        scored.extend(out)
        return out

    reward.__name__ = "recoworld"

    def brevity(completions, **columns):  # noqa: ANN001, ANN003, ANN202
        # A random-weight model rarely writes valid JSON, so every completion of a prompt may
        # earn the same environment reward (no advantage, no gradient); a second, standard
        # shaping reward keeps the two steps' gradients non-zero whatever the model writes.
        return [-len(str(c)) / 100.0 for c in completions]

    # the reward of a state's completion is the environment's, replayed: a valid answer scores
    # its slate, an empty one the base recommender's slate less the format penalty
    valid = json.dumps({"items": [0, 1, 2]})
    seed, answers = rows[0]["seed"], rows[0]["answers"]
    nonsense = env_reward([valid, "nonsense"], seed=[seed] * 2, answers=[answers] * 2)[1]
    assert nonsense == env_reward.score(json.dumps({"items": []}), seed, json.loads(answers))

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"),
        max_steps=2,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=16,
        learning_rate=5e-3,
        beta=0.0,
        temperature=1.0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward, brevity],
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    trainer.train()
    assert trainer.state.global_step == 2
    logged = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logged) == 2 and all(np.isfinite(h["reward"]) for h in logged)
    assert len(scored) == 2 * 4 and np.isfinite(scored).all()  # every completion was scored
    changed = [n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert changed, "two GRPO steps changed no weight"
