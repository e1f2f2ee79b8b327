"""Quality names, and ``METRICS``: a compatibility name for the default signal catalog.

The signals themselves (value type, kind, units, range) are ``model/signals.py``; unit
conversions are ``model/units.py`` (pint). ``METRICS`` stays for callers that only ask
whether a name is one of the default signals or what its canonical unit is.
"""

from __future__ import annotations

from collections.abc import Mapping

from plantstream.model.signals import DEFAULT_SIGNALS, SignalDef

METRICS: Mapping[str, SignalDef] = DEFAULT_SIGNALS

QUALITIES: dict[str, int] = {"good": 0, "uncertain": 1, "bad": 2}
QUALITY_NAMES: dict[int, str] = {code: name for name, code in QUALITIES.items()}
