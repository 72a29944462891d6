"""Gymnasium environments over RecoWorld's users: the agent is the recommender."""

from recoworld.env.reco_env import EnvError, RecoEnv

__all__ = ["EnvError", "RecoEnv"]
