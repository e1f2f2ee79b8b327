"""The read quota of the HTTP surface: query requests per key (429 ``quota_read_rate``).

The query routes depend on ``QuotaReader`` instead of ``Reader``; ingest's quotas are the
ingest service's (``plantstream.ingest.quotas``).
"""

from __future__ import annotations

import threading
import weakref
from typing import Annotated

from fastapi import Depends

from plantstream.api.auth import Reader, State
from plantstream.api.state import AppState
from plantstream.errors import ErrorCode, RateLimitedError
from plantstream.ingest.admission import RateLimiter
from plantstream.ingest.metrics import count_refusal
from plantstream.store.keys import Principal

# one limiter per app state, built from its settings on first use
_LIMITERS: weakref.WeakKeyDictionary[AppState, RateLimiter] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def read_limiter(state: AppState) -> RateLimiter:
    """The read-rate limiter of ``state`` (``quota_read_requests_per_second`` per key)."""
    with _LOCK:
        limiter = _LIMITERS.get(state)
        if limiter is None:
            limiter = _LIMITERS[state] = RateLimiter(state.settings.quota_read_requests_per_second)
        return limiter


def read_quota(who: Reader, state: State) -> Principal:
    """A reading key, within its read requests/s; else 429 ``quota_read_rate``."""
    limiter = read_limiter(state)
    wait = limiter.admit(who.key_id)
    if wait:
        count_refusal(ErrorCode.QUOTA_READ_RATE, who.facility or "_admin")
        raise RateLimitedError(
            f"this key sends more than its quota of {limiter.rate:g} read requests/s "
            "(quota_read_rate)",
            retry_after=wait,
            code=ErrorCode.QUOTA_READ_RATE,
        )
    return who


QuotaReader = Annotated[Principal, Depends(read_quota)]
