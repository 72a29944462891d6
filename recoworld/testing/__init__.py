"""Fakes for unit tests only. Every path a fake stands in for also has a test against the real
thing (the real recommenders in tests/test_simulate.py)."""

from recoworld.testing.fakes import ScriptedRecommender

__all__ = ["ScriptedRecommender"]
