"""Ray job entry points. Like the CLI, only this layer reads flags and environment variables."""
