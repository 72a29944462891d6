"""Worlds: a catalog of items, users, and their interactions, in one normalised form."""

from recoworld.world.model import World

__all__ = ["World"]
