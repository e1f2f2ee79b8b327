"""Lambda sources deployed by the stack (kept importable so tests can exercise them)."""
