"""The optional ``edge`` extra (asyncua, pymodbus): imported on use, named when missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from plantstream.errors import ConfigError


def require_edge_extra(module: str) -> ModuleType:
    """Import ``module`` of the edge extra, or raise ``ConfigError`` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f'the edge agent needs {module}: run "pip install plantstream[edge]"'
        ) from None
