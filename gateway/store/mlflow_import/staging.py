"""Metric points staged in the gateway's database and made into chunks and summaries there, in SQL.

A batch's points land by COPY in a temporary table, a row each (series number,
step, timestamp, value; NaN as PostgreSQL's NaN), and two statements make them
into sealed chunks of at most CHUNK_POINTS points in (step, timestamp, value)
order (NaN above every number, as the gateway orders points) and one summary
row per series. The ordering, cutting and packing of points then runs in the
database, beside the reading, rather than point by point in Python.

From a PostgreSQL store the points go from its COPY straight into the staging
COPY; from SQLite they are packed here into COPY's binary rows a column at a
time (the ``array`` module and strided slices, as store/pgcopy.py packs arrays).
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Sequence

from gateway.store import pgcopy
from gateway.store.points import CHUNK_POINTS

STAGING_TABLES = """
CREATE TEMPORARY TABLE IF NOT EXISTS import_series (
    series integer PRIMARY KEY, run_id uuid NOT NULL, key text NOT NULL) ON COMMIT DELETE ROWS;
CREATE TEMPORARY TABLE IF NOT EXISTS import_points (
    series integer NOT NULL, step bigint NOT NULL, timestamp bigint NOT NULL, value double precision NOT NULL
) ON COMMIT DELETE ROWS;
"""

POINT_COLUMNS = ("series", "step", "timestamp", "value")

# Offsets are int4: a piece wider than that (steps or milliseconds) is left to Python, which halves it.
_SPAN = 2**31

# The staged points cut into pieces of CHUNK_POINTS points in the gateway's order, each point with its
# piece's bases (first step, least timestamp). The second window's order (series, piece, then the
# points' order) is the order the chunks are grouped and their arrays made in, so PostgreSQL sorts twice.
_PIECES = f"""
WITH numbered AS (
    SELECT series, step, timestamp, value,
           (row_number() OVER (PARTITION BY series ORDER BY step, timestamp, value) - 1) / {CHUNK_POINTS} AS piece
    FROM import_points),
based AS (
    SELECT *, min(step) OVER piece AS base_step, min(timestamp) OVER piece AS base_timestamp
    FROM numbered
    WINDOW piece AS (PARTITION BY series, piece ORDER BY step, timestamp, value
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING))
"""

# Every piece whose offsets fit int4 as a sealed chunk; returns how many points went in.
MAKE_CHUNKS = _PIECES + f"""
, made AS (
    INSERT INTO metric_chunks (run_id, key, first_step, last_step, first_timestamp, last_timestamp, min_value,
                               max_value, point_count, sealed, step_offsets, timestamp_offsets, metric_values)
    SELECT s.run_id, s.key, c.base_step, c.last_step, c.base_timestamp, c.last_timestamp, c.min_value, c.max_value,
           c.point_count, true, c.step_offsets, c.timestamp_offsets, c.metric_values
    FROM (
        SELECT series, min(base_step) AS base_step, max(step) AS last_step, min(base_timestamp) AS base_timestamp,
               max(timestamp) AS last_timestamp,
               min(value) FILTER (WHERE value <> 'NaN') AS min_value,
               max(value) FILTER (WHERE value <> 'NaN') AS max_value,
               count(*)::integer AS point_count,
               array_agg(CASE WHEN step - base_step < {_SPAN} THEN (step - base_step)::integer END
                         ORDER BY step, timestamp, value) AS step_offsets,
               array_agg(CASE WHEN timestamp - base_timestamp < {_SPAN} THEN (timestamp - base_timestamp)::integer END
                         ORDER BY step, timestamp, value) AS timestamp_offsets,
               array_agg(value ORDER BY step, timestamp, value) AS metric_values
        FROM based
        GROUP BY series, piece
        HAVING max(step) - min(base_step) < {_SPAN} AND max(timestamp) - min(base_timestamp) < {_SPAN}
    ) c JOIN import_series s USING (series)
    RETURNING point_count)
SELECT coalesce(sum(point_count), 0) FROM made
"""

# The points of pieces too wide for int4 offsets, for Python to cut finer (asked only when some are).
WIDE_PIECES = _PIECES + f"""
SELECT s.run_id, s.key, b.step, b.timestamp, b.value
FROM based b JOIN import_series s USING (series)
WHERE (b.series, b.piece) IN (
    SELECT series, piece FROM based GROUP BY series, piece
    HAVING max(step) - min(base_step) >= {_SPAN} OR max(timestamp) - min(base_timestamp) >= {_SPAN})
ORDER BY b.series, b.step, b.timestamp, b.value
"""

# The summary of each staged series, from its chunks (a series' chunks follow each other: the
# latest point is the last one of the chunk that starts last).
MAKE_SUMMARIES = """
INSERT INTO metric_summaries (run_id, key, step, timestamp, value, min_value, max_value, point_count)
SELECT l.run_id, l.key, l.first_step + l.step_offsets[l.point_count], l.first_timestamp + l.timestamp_offsets[l.point_count],
       l.metric_values[l.point_count], a.min_value, a.max_value, a.point_count
FROM (SELECT c.run_id, c.key, min(c.min_value) AS min_value, max(c.max_value) AS max_value,
             sum(c.point_count) AS point_count
      FROM import_series s JOIN metric_chunks c ON c.run_id = s.run_id AND c.key = s.key
      WHERE s.series <> ALL($1::integer[])
      GROUP BY c.run_id, c.key) a
JOIN LATERAL (SELECT * FROM metric_chunks c WHERE c.run_id = a.run_id AND c.key = a.key
              ORDER BY c.last_step DESC, c.first_step DESC, c.chunk_id DESC LIMIT 1) l ON true
"""

# A series' staged points, taken out to be split by logged model in Python.
TAKE_SERIES = """
WITH taken AS (DELETE FROM import_points WHERE series = ANY($1::integer[]) RETURNING *)
SELECT series, step, timestamp, value FROM taken ORDER BY series, step, timestamp, value
"""

_ROW = 2 + (4 + 4) + 3 * (4 + 8)
_TEMPLATE = struct.pack(">hiiiqiqid", 4, 4, 0, 8, 0, 8, 0, 8, 0.0)
# Where each field's value starts in a row, and its width.
_LANES = ((6, 4), (14, 8), (26, 8), (38, 8))
_SWAP = sys.byteorder == "little"
NAN = float("nan")


def _packed(values, typecode: str) -> bytes:
    packed = array(typecode, values)
    if _SWAP:
        packed.byteswap()
    return packed.tobytes()


def point_rows(series: bytes, steps: Sequence[int], timestamps: Sequence[int], values: Sequence[float]) -> bytes:
    """Binary COPY rows (no header) of import_points; ``series`` is each point's series number,
    already packed as big-endian int32."""
    count = len(steps)
    rows = bytearray(_TEMPLATE * count)
    for (offset, width), raw in zip(_LANES, (series, _packed(steps, "q"), _packed(timestamps, "q"),
                                              _packed(values, "d"))):
        for lane in range(width):
            rows[offset + lane :: _ROW] = raw[lane::width]
    return bytes(rows)


def series_numbers(number: int, count: int) -> bytes:
    """``count`` copies of a series number, packed as point_rows takes them."""
    return struct.pack(">i", number) * count


HEADER = pgcopy.HEADER
TRAILER = pgcopy.TRAILER
