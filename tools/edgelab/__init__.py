"""Edge lab: the engine across emulated hosts and shaped links (python -m tools.edgelab --help)."""
