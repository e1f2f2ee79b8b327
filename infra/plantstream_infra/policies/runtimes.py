"""The Lambda runtime schedule behind Security Hub Lambda.2: which runtimes AWS still supports.

Dates are AWS's "deprecation date" per runtime, from the supported and deprecated runtime tables
of https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html as published 2026-07-31
(taken 2026-12-01). A runtime AWS has not listed yet (botocore may know it first) is refused
until it is added here; a listed runtime is refused from its deprecation date on.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

SCHEDULE_AS_OF = date(2026, 7, 31)

DEPRECATION: dict[str, date] = {
    # still supported on 2026-12-01
    "python3.14": date(2029, 6, 30),
    "python3.13": date(2029, 6, 30),
    "python3.12": date(2028, 10, 31),
    "python3.11": date(2027, 6, 30),
    "nodejs24.x": date(2028, 4, 30),
    "nodejs22.x": date(2027, 4, 30),
    "java25": date(2029, 6, 30),
    "java21": date(2029, 6, 30),
    "java17": date(2027, 6, 30),
    "java11": date(2027, 6, 30),
    "java8.al2": date(2027, 6, 30),
    "dotnet10": date(2028, 11, 14),
    "ruby4.0": date(2029, 3, 31),
    "ruby3.4": date(2028, 3, 31),
    "ruby3.3": date(2027, 3, 31),
    "provided.al2023": date(2029, 6, 30),
    # deprecated by 2026-12-01
    "dotnet8": date(2026, 11, 10),
    "python3.10": date(2026, 10, 31),
    "provided.al2": date(2026, 7, 31),
    "nodejs20.x": date(2026, 4, 30),
    "ruby3.2": date(2026, 3, 31),
    "python3.9": date(2025, 12, 15),
    "nodejs18.x": date(2025, 9, 1),
    "dotnet6": date(2024, 12, 20),
    "python3.8": date(2024, 10, 14),
    "nodejs16.x": date(2024, 6, 12),
    "java8": date(2024, 1, 8),
    "go1.x": date(2024, 1, 8),
    "provided": date(2024, 1, 8),
    "ruby2.7": date(2023, 12, 7),
    "python3.7": date(2023, 12, 4),
    "nodejs14.x": date(2023, 12, 4),
    "dotnetcore3.1": date(2023, 4, 3),
    "nodejs12.x": date(2023, 3, 31),
    "python3.6": date(2022, 7, 18),
    "dotnetcore2.1": date(2022, 1, 5),
    "ruby2.5": date(2021, 7, 30),
    "nodejs10.x": date(2021, 7, 30),
    "python2.7": date(2021, 7, 15),
    "nodejs8.10": date(2020, 3, 6),
    "nodejs4.3": date(2020, 3, 5),
    "nodejs4.3-edge": date(2020, 3, 5),
    "nodejs6.10": date(2019, 8, 12),
    "dotnetcore1.0": date(2019, 6, 27),
    "dotnetcore2.0": date(2019, 5, 30),
    "nodejs": date(2016, 8, 30),
}

# In botocore's Runtime enum but on neither AWS table as of SCHEDULE_AS_OF: refused until AWS
# publishes them with a deprecation date (then they move into DEPRECATION).
UNLISTED = frozenset(
    {"nodejs26.x", "python3.15", "java8.al2023", "java11.al2023", "java17.al2023", "custom"}
)


def today() -> date:
    return datetime.now(UTC).date()


def runtime_finding(runtime: object, on: date) -> str | None:
    """Why ``runtime`` is not a supported Lambda runtime on day ``on``, or None if it is."""
    if not isinstance(runtime, str) or runtime not in DEPRECATION:
        return (
            f"runtime {runtime!r} is not on AWS's supported runtime list"
            f" (as of {SCHEDULE_AS_OF.isoformat()})"
        )
    if on >= DEPRECATION[runtime]:
        return f"runtime {runtime} is deprecated since {DEPRECATION[runtime].isoformat()}"
    return None


def supported_on(on: date) -> frozenset[str]:
    """Every runtime this schedule calls supported on day ``on``."""
    return frozenset(r for r, end in DEPRECATION.items() if on < end)
