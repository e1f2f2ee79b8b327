"""What a facility's signal catalog costs ingest per batch: a JSON batch of 1,000 readings
validated against the fixed default catalog, against ``StoreCatalog.batch()`` (the view ingest
uses: one lookup per batch) and against the ``StoreCatalog`` itself (a lookup per reading).

The store's entry is loaded once and kept (steady state: no PostgreSQL round trip), so this
measures the lookup alone. The three run interleaved; the minimum of each is printed (the
machine is shared: the minimum is the least disturbed). Run:
``PYTHONPATH=src python bench/catalog_lookup.py``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

from plantstream.model import DEFAULT_CATALOG, TimeWindow, now_us, parse_batch
from plantstream.model.signals import (
    DEFAULT_SIGNALS,
    SignalCatalog,
    UnknownSignalPolicy,
    per_batch,
)
from plantstream.store.catalog import StoreCatalog, _Entry

READINGS = 1000
ROUNDS = 600


class _Loaded(StoreCatalog):
    """A store catalog whose facility reads come from memory (the entry of a steady state)."""

    def _load(self, facility: str, now: float) -> _Entry:
        return _Entry(dict(DEFAULT_SIGNALS), UnknownSignalPolicy.REFUSE, now)


def main() -> None:
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    metrics = ("temperature", "pressure")
    body = json.dumps(
        {
            "facility": "plant-01",
            "readings": [
                {"device": f"m{i % 50}", "metric": metrics[i % 2], "ts": ts, "value": 20.0 + i % 7}
                for i in range(READINGS)
            ],
        }
    ).encode()
    received = now_us()
    store = _Loaded(None, ttl=3600)  # type: ignore[arg-type]
    ways: dict[str, Callable[[], SignalCatalog]] = {
        "default": lambda: DEFAULT_CATALOG,
        "store_batch_view": lambda: per_batch(store),
        "store_per_reading": lambda: store,
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(ROUNDS):
        for name, catalog in ways.items():
            start = time.perf_counter()
            parse_batch(
                body,
                received_us=received,
                window=TimeWindow(),
                max_readings=READINGS,
                catalog=catalog(),
            )
            times[name].append(time.perf_counter() - start)
    best = {name: min(t) * 1e6 for name, t in times.items()}
    print(f"load average {os.getloadavg()[0]:.1f}; us per batch of {READINGS} (minimum):")
    for name, us in best.items():
        print(f"  {name:18} {us:8.0f}  ({us / best['default']:.2f}x the default)")


if __name__ == "__main__":
    main()
