"""Recommenders behind one small protocol: recommend a slate, observe feedback,
take instructions."""

from recoworld.recommenders.base import Recommender

__all__ = ["Recommender"]
