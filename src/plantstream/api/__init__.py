"""The HTTP API: ingest, query, health, metrics and the dashboard."""

from plantstream.api.app import create_app
from plantstream.api.state import AppState

__all__ = ["AppState", "create_app"]
