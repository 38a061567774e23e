"""Durations written as on MLflow's command line: ``30d``, ``12h``, ``90m``, ``45s``, ``1d12h``."""

from __future__ import annotations

import re

_UNIT_MS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000}
# Units in descending order, each at most once, as MLflow's ``gc --older-than`` reads them.
_DURATION = re.compile(
    r"^(?:(?P<d>\d+(?:\.\d+)?)d)?(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$"
)


def parse_duration_ms(text: str) -> int:
    """The length of a duration such as ``30d``, ``12h``, ``90m``, ``45s`` or ``1d12h30m``, in milliseconds.

    Each part is a non-negative number (fractions allowed, ``1.5d``) followed by its
    unit: d (days), h (hours), m (minutes), s (seconds), largest unit first.

    Raises:
        ValueError: the text is not such a duration; the message says what is accepted.
    """
    stripped = text.strip()
    match = _DURATION.match(stripped) if stripped else None
    if match is None or not any(match.groupdict().values()):
        raise ValueError(
            f"invalid duration {text!r}: give a number and a unit, d (days), h (hours), m (minutes) "
            "or s (seconds), largest unit first, e.g. 30d, 12h, 90m, 45s, 0s or 1d12h"
        )
    total = 0.0
    for unit, amount in match.groupdict().items():
        if amount is not None:
            total += float(amount) * _UNIT_MS[unit]
    return int(total)


def format_duration_ms(ms: int) -> str:
    """A duration in the form :func:`parse_duration_ms` reads, e.g. ``30d`` or ``1d12h``; ``0s`` for none."""
    parts = []
    rest = ms
    for unit in ("d", "h", "m"):
        count, rest = divmod(rest, _UNIT_MS[unit])
        if count:
            parts.append(f"{count}{unit}")
    if rest or not parts:
        seconds = rest / 1000
        parts.append(f"{seconds:g}s")
    return "".join(parts)
