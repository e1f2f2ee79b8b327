"""plantstream: secure industrial sensor data, from machine to dashboard, nothing lost."""

from plantstream.errors import (
    AuthError,
    ConfigError,
    InvalidInputError,
    LeaseLostError,
    PlantstreamError,
    ServiceError,
    StorageError,
    StreamError,
    StreamThrottledError,
    StreamUnavailableError,
)
from plantstream.settings import Settings, load_settings

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "ConfigError",
    "InvalidInputError",
    "LeaseLostError",
    "PlantstreamError",
    "ServiceError",
    "Settings",
    "StorageError",
    "StreamError",
    "StreamThrottledError",
    "StreamUnavailableError",
    "__version__",
    "load_settings",
]
