"""The quotas of the HTTP surface: read requests per key, and installing ingest's quotas.

``install`` is called once by ``create_app``; the query routes depend on ``QuotaReader``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Request

from plantstream.api.auth import Reader
from plantstream.api.state import AppState
from plantstream.errors import ErrorCode, RateLimitedError
from plantstream.ingest.admission import RateLimiter
from plantstream.ingest.metrics import count_refusal, facility_label
from plantstream.ingest.quotas import IngestQuotas
from plantstream.store.keys import Principal


def install(app: FastAPI, state: AppState) -> None:
    """Apply the quotas of ``state.settings``: ingest's per facility, reads' per key, and the
    bound on facility labels in ``/metrics``."""
    settings = state.settings
    facility_label.limit = settings.metrics_max_facilities
    state.ingest.quotas = IngestQuotas.from_settings(settings, pool=state.pool)
    app.state.read_quota = RateLimiter(settings.quota_read_requests_per_second)


def read_quota(request: Request, who: Reader) -> Principal:
    """A reading key, within its read requests/s; else 429 ``quota_read_rate``."""
    limiter: RateLimiter = request.app.state.read_quota
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
