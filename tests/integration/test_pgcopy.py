"""The binary COPY writer of chunk rows, read back by PostgreSQL."""

from __future__ import annotations

import math
import uuid

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.store import pgcopy
from gateway.store.migrations import migrate
from gateway.store.points import CHUNK_COLUMNS
from tests.pg import run_apart

INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)


@st.composite
def chunk_rows(draw):
    count = draw(st.integers(min_value=1, max_value=40))
    row = (
        uuid.UUID(int=draw(st.integers(min_value=0, max_value=2**128 - 1))).hex,
        draw(TEXT), draw(st.none() | TEXT), draw(st.none() | TEXT), draw(st.none() | TEXT),
        draw(INT64), draw(INT64), draw(INT64), draw(INT64),
        draw(st.none() | st.floats()), draw(st.none() | st.floats()),
        draw(st.integers(min_value=0, max_value=2**31 - 1)), draw(st.booleans()),
        draw(offsets(count)),
        draw(offsets(count)),
        draw(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=count, max_size=count)),
    )
    return row


def offsets(count: int):
    """Offsets as flushes make them: any, those of steps without a gap (a range) or of equal timestamps (zeros)."""
    return st.one_of(st.lists(INT32, min_size=count, max_size=count), st.just(range(count)), st.just([0] * count))


def same(left, right) -> bool:
    if isinstance(left, (list, range)):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right))
    if isinstance(left, float) and math.isnan(left):
        return isinstance(right, float) and math.isnan(right)
    return left == right and type(left) is type(right)


@pytest.fixture(scope="module")
def database(postgres):
    url = run_apart(postgres.create_database())

    async def prepare():
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()

    run_apart(prepare())
    return url


@settings(max_examples=60, deadline=None)
@given(st.lists(chunk_rows(), min_size=1, max_size=4))
def test_rows_come_back_as_written(database, rows):
    async def round_trip():
        conn = await asyncpg.connect(database)
        try:
            async with conn.transaction():
                await pgcopy.copy_chunks(conn, rows, CHUNK_COLUMNS)
                stored = await conn.fetch(f"SELECT {', '.join(CHUNK_COLUMNS)} FROM metric_chunks ORDER BY chunk_id")
                await conn.execute("DELETE FROM metric_chunks")
            return [(row[0].hex, *row[1:]) for row in stored]
        finally:
            await conn.close()

    stored = run_apart(round_trip())
    assert len(stored) == len(rows)
    for written, read in zip(rows, stored):
        assert all(same(a, b) for a, b in zip(written, read)), (written, read)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(INT32, st.lists(INT64, max_size=30), st.lists(st.floats(), max_size=30)), min_size=1,
             max_size=5),
    st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=20),
)
def test_arrays_copied_out_are_read_back_from_pieces_of_any_size(database, rows, cuts):
    """COPY BINARY data of (int4, int8[], float8[]) rows from PostgreSQL, fed to the reader cut anywhere."""

    async def copied_out() -> bytes:
        conn = await asyncpg.connect(database)
        try:
            data = bytearray()

            async def take(piece):
                data.extend(piece)

            async with conn.transaction():
                await conn.execute("CREATE TEMPORARY TABLE arrays (place int, number int4, steps int8[], "
                                   "vals float8[]) ON COMMIT DROP")
                await conn.executemany("INSERT INTO arrays VALUES ($1, $2, $3, $4)",
                                       [(place, *row) for place, row in enumerate(rows)])
                await conn.copy_from_query("SELECT number, steps, vals FROM arrays ORDER BY place", output=take,
                                           format="binary")
            return bytes(data)
        finally:
            await conn.close()

    data = run_apart(copied_out())
    reader = pgcopy.CopyReader()
    read = []
    position = 0
    while position < len(data):
        for cut in cuts:
            read += reader.feed(data[position:position + cut])
            position += cut
    assert reader.ended
    decoded = [(pgcopy.int4_of(number), pgcopy.int8_array_of(steps), pgcopy.float8_array_of(values))
               for number, steps, values in read]
    assert len(decoded) == len(rows)
    assert all(same(list(got), list(row)) for got, row in zip(decoded, rows)), (decoded, rows)
