"""Embedded PostgreSQL and Redis servers for laptops, tests and on-prem trials."""

from plantstream.local.postgres import EmbeddedPostgres
from plantstream.local.redis import EmbeddedRedis
from plantstream.local.services import EmbeddedServices, Endpoints, mask_url, resolve_endpoints

__all__ = [
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "EmbeddedServices",
    "Endpoints",
    "mask_url",
    "resolve_endpoints",
]
