"""SharedQuery: a call is answered by a run of the query sent after the call, and calls share runs."""

from __future__ import annotations

import asyncio

import pytest

from gateway.config import Settings
from gateway.store.replicas import SharedQuery, replica_name


class GatedQuery:
    """A query whose runs are numbered and each held until the test lets it answer."""

    def __init__(self):
        self.sent = 0
        self.gates: list[asyncio.Event] = []
        self.fail_next = False

    async def __call__(self) -> int:
        self.sent += 1
        number = self.sent
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionRefusedError("refused")
        return number

    async def answer(self, run: int) -> None:
        while len(self.gates) < run:
            await ticks()
        self.gates[run - 1].set()


async def ticks() -> None:
    """Let every ready task run until it waits (a handful of loop turns, no clock)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_calls_made_while_a_run_is_in_flight_share_the_next_run():
    query = GatedQuery()
    shared = SharedQuery(query)
    first = asyncio.ensure_future(shared.fresh())
    await ticks()
    assert query.sent == 1
    # These arrive after run 1 was sent: its answer may predate their callers' writes.
    second = asyncio.ensure_future(shared.fresh())
    third = asyncio.ensure_future(shared.fresh())
    await ticks()
    assert query.sent == 1
    await query.answer(1)
    assert await first == 1
    await query.answer(2)
    assert (await second, await third) == (2, 2)
    assert query.sent == 2


async def test_a_failed_run_fails_its_callers_only():
    query = GatedQuery()
    shared = SharedQuery(query)
    query.fail_next = True
    failing = asyncio.ensure_future(shared.fresh())
    await ticks()
    later = asyncio.ensure_future(shared.fresh())
    await query.answer(1)
    with pytest.raises(ConnectionRefusedError):
        await failing
    await query.answer(2)
    assert await later == 2


async def test_a_caller_that_gives_up_leaves_the_run_to_the_others():
    query = GatedQuery()
    shared = SharedQuery(query)
    impatient = asyncio.ensure_future(shared.fresh())
    patient = asyncio.ensure_future(shared.fresh())
    await ticks()
    impatient.cancel()
    await query.answer(1)
    assert await patient == 1
    assert impatient.cancelled()
    await shared.close()


def test_replica_names_leave_credentials_out():
    assert replica_name("postgresql://reader:secret@db-2:5432/gateway") == "db-2:5432/gateway"
    assert replica_name("postgresql://db-3/gateway?sslmode=require") == "db-3/gateway"


def test_replica_settings_are_checked():
    primary = "postgresql://gw@db-1/gateway"
    settings = Settings.from_env(
        {"GATEWAY_DATABASE_URL": primary,
         "GATEWAY_READ_DATABASE_URL": "postgresql://gw@db-2/gateway postgresql://gw@db-3,db-4/gateway"}
    )
    assert settings.read_database_url == ("postgresql://gw@db-2/gateway", "postgresql://gw@db-3,db-4/gateway")
    with pytest.raises(ValueError, match="read_database_url needs database_url"):
        Settings.from_env({}, read_database_url=["postgresql://gw@db-2/gateway"])
    with pytest.raises(ValueError, match="not the primary"):
        Settings.from_env({}, database_url=primary, read_database_url=[primary])
    with pytest.raises(ValueError, match="postgresql:// URLs, got 'db-2/gateway'"):
        Settings.from_env({}, database_url=primary, read_database_url=["mysql://gw:pw@db-2/gateway"])
    with pytest.raises(ValueError, match="replica_wait_ms must be > 0"):
        Settings.from_env({}, database_url=primary, replica_wait_ms=0)
