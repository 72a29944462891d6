"""RecoWorld: simulated populations of persona-conditioned users meeting recommender systems.

The package is pure: it imports and runs without Ray or vLLM. Nothing happens at import.
"""

__version__ = "0.1.0"
