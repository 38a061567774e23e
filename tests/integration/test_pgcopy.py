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
        draw(st.lists(INT32, min_size=count, max_size=count)),
        draw(st.lists(INT32, min_size=count, max_size=count)),
        draw(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=count, max_size=count)),
    )
    return row


def same(left, right) -> bool:
    if isinstance(left, list):
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
