"""Fidelity evaluation: how closely simulated users match held-out real behaviour."""
