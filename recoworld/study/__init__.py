"""Studies: the strict config tree, the core loop, and the statistics of arms."""
