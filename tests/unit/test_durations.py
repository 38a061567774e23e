"""Durations for `gateway gc --older-than`."""

from __future__ import annotations

import pytest

from gateway.durations import format_duration_ms, parse_duration_ms

DAY = 86_400_000


@pytest.mark.parametrize(
    "text, expected",
    [
        ("30d", 30 * DAY),
        ("12h", 12 * 3_600_000),
        ("90m", 90 * 60_000),
        ("45s", 45_000),
        ("0s", 0),
        ("1d12h", DAY + 12 * 3_600_000),
        ("2d8h5m20s", 2 * DAY + 8 * 3_600_000 + 5 * 60_000 + 20_000),
        ("1.5d", DAY + DAY // 2),
        (" 7d ", 7 * DAY),
    ],
)
def test_durations_read_as_milliseconds(text, expected):
    assert parse_duration_ms(text) == expected


@pytest.mark.parametrize("text", ["", "30", "30x", "-1d", "d", "12h30d", "1d1d", "1 d", "30D", "1e3s", "30days"])
def test_bad_durations_are_rejected_with_what_is_accepted(text):
    with pytest.raises(ValueError) as raised:
        parse_duration_ms(text)
    assert str(raised.value) == (
        f"invalid duration {text!r}: give a number and a unit, d (days), h (hours), m (minutes) "
        "or s (seconds), largest unit first, e.g. 30d, 12h, 90m, 45s, 0s or 1d12h"
    )


@pytest.mark.parametrize(
    "ms, text",
    [(30 * DAY, "30d"), (DAY + DAY // 2, "1d12h"), (90 * 60_000, "1h30m"), (45_000, "45s"), (0, "0s"),
     (1500, "1.5s"), (2 * DAY + 8 * 3_600_000 + 5 * 60_000 + 20_000, "2d8h5m20s")],
)
def test_durations_are_written_as_they_are_read(ms, text):
    assert format_duration_ms(ms) == text
    assert parse_duration_ms(text) == ms
