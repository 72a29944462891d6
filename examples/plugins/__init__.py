"""Recommender plug-ins, e.g. ``target = "examples.plugins.minimal:PopularUnseen"`` in a study's
``[recommender]`` with ``kind = "python"`` (docs/recommenders.md)."""
