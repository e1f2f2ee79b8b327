"""The composition root: ``Runtime`` builds every part from ``Settings``; ``ROLES`` runs them.

``cli`` and ``demo`` only parse arguments and call into here.
"""

from plantstream.runtime.clients import open_redis, previous_server_secret, server_secret
from plantstream.runtime.roles import ROLES, RoleRegistry, RoleSpec, web_role
from plantstream.runtime.run import run_role
from plantstream.runtime.runtime import Runtime
from plantstream.runtime.signals import stop_on_signals
from plantstream.runtime.web import serve_web, server_config, web_server_thread

__all__ = [
    "ROLES",
    "RoleRegistry",
    "RoleSpec",
    "Runtime",
    "open_redis",
    "previous_server_secret",
    "run_role",
    "serve_web",
    "server_config",
    "server_secret",
    "stop_on_signals",
    "web_role",
    "web_server_thread",
]
