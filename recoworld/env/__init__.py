"""Gymnasium environments over RecoWorld's users: the agent is the recommender.

Importing this package registers the environments' ids with Gymnasium
(:func:`recoworld.env.registration.register_envs`: entries in ``gymnasium.registry``, nothing
else), so that ``gymnasium.make("RecoWorld/Retention-v0", prep=...)`` works.
"""

from recoworld.env.reco_env import EnvError, RecoEnv
from recoworld.env.registration import ENVS, register_envs
from recoworld.env.retention import RetentionEnv
from recoworld.env.text import TextRecoEnv
from recoworld.env.vector import RetentionVectorEnv
from recoworld.env.view import AgentView

register_envs()

__all__ = [
    "ENVS",
    "AgentView",
    "EnvError",
    "RecoEnv",
    "RetentionEnv",
    "RetentionVectorEnv",
    "TextRecoEnv",
    "register_envs",
]
