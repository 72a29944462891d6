"""Simulated users: personas, mindsets, memory, the brains that decide, and retention."""
