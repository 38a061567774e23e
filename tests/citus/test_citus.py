"""The gateway on a Citus cluster: where the tables go, moving a single-node database in,
floods, concurrent run creation, and a worker that stops mid-flood."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import asyncpg
import pytest

from gateway.store.distribution import DISTRIBUTED_TABLES, REFERENCE_TABLES
from gateway.store.gc import RUN_SCOPED_TABLES
from gateway.store.migrations import migrate
from tests.e2e.flood import API, Ledger, create_runs, flood
from tests.e2e.test_flood import assert_exactly_acknowledged, stored_points, summaries_match_points
from tests.pg import with_database
from tests.server import GatewayProcess


async def placements(url: str) -> dict[str, tuple[str, int]]:
    """Each placed table's Citus method ('h' hash-distributed, 'n' reference) and colocation group."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT logicalrelid::regclass::text AS name, partmethod::text, colocationid FROM pg_dist_partition"
        )
    finally:
        await conn.close()
    return {row["name"]: (row["partmethod"], row["colocationid"]) for row in rows}


async def test_run_tables_are_distributed_together_and_the_rest_are_reference_tables(database_url):
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn)
        tables = {
            row["tablename"]
            for row in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    finally:
        await conn.close()
    placed = await placements(database_url)
    # Every table of the schema has its place; only the migration runner's own stays on the coordinator.
    assert tables - set(placed) == {"gateway_schema_migrations"}
    assert set(DISTRIBUTED_TABLES) == {"runs", *RUN_SCOPED_TABLES}
    assert {placed[t][0] for t in DISTRIBUTED_TABLES} == {"h"}
    assert len({placed[t][1] for t in DISTRIBUTED_TABLES}) == 1  # one colocation group
    assert {placed[t][0] for t in REFERENCE_TABLES} == {"n"}
    assert set(placed) == set(DISTRIBUTED_TABLES) | set(REFERENCE_TABLES)


async def test_a_single_node_database_is_distributed_rows_and_all_by_migrate(citus):
    """A database made and written without Citus, then given the extension and the workers,
    is distributed by `gateway migrate`, and serves what it held."""
    name = "gw_test_single_" + uuid.uuid4().hex[:8]
    workers = await citus.worker_urls()
    conn = await asyncpg.connect(citus.admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    citus._created.append(name)
    url = with_database(citus.admin_url, name)
    gateway = GatewayProcess(url)
    try:
        run_ids = await create_runs(gateway.url, 6, "single-node")
        ledger = await flood(gateway.url, run_ids, writers=6, duration=60, max_requests_per_writer=10)
        async with aiohttp.ClientSession() as session:
            async with session.post(
                gateway.url + API + "/runs/log-parameter", json={"run_id": run_ids[0], "key": "lr", "value": "0.1"}
            ) as response:
                assert response.status == 200
    finally:
        gateway.stop()
    assert ledger.statuses == {200: 60}
    for worker in workers:
        conn = await asyncpg.connect(worker)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        conn = await asyncpg.connect(with_database(worker, name))
        try:
            await conn.execute("CREATE EXTENSION citus")
        finally:
            await conn.close()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE EXTENSION citus")
        await conn.execute("SELECT citus_set_coordinator_host('127.0.0.1', $1)", int(url.rsplit(":", 1)[1].split("/")[0]))
        for worker in workers:
            host, port = worker.split("@")[-1].split("/")[0].rsplit(":", 1)
            await conn.execute("SELECT citus_add_node($1, $2)", host, int(port))
    finally:
        await conn.close()
    process = await asyncio.create_subprocess_exec(
        "python", "-m", "gateway", "migrate", "--database-url", url, stdout=asyncio.subprocess.PIPE
    )
    output, _ = await process.communicate()
    assert process.returncode == 0
    assert "distributed:runs" in output.decode() and "reference:experiments" in output.decode()
    assert {method for method, _ in (await placements(url)).values()} == {"h", "n"}
    assert_exactly_acknowledged(ledger, await stored_points(url, run_ids))
    await summaries_match_points(url)
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM runs") == 6
        assert await conn.fetchval("SELECT value FROM params WHERE run_id = $1", run_ids[0]) == "0.1"
    finally:
        await conn.close()
    gateway = GatewayProcess(url)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(gateway.url + API + "/runs/get", params={"run_id": run_ids[0]}) as response:
                assert response.status == 200
                run = (await response.json())["run"]
        assert run["data"]["params"] == [{"key": "lr", "value": "0.1"}]
        assert {m["key"] for m in run["data"]["metrics"]} == {"w0"}
    finally:
        gateway.stop()


async def test_a_flood_of_log_batch_and_log_metric_loses_nothing_and_answers_no_error(gateway, database_url):
    run_ids = await create_runs(gateway.url, 12, "citus-flood-" + uuid.uuid4().hex)
    ledger = await flood(gateway.url, run_ids, writers=24, duration=60, max_requests_per_writer=25)
    assert ledger.statuses == {200: 24 * 25} and ledger.transport_errors == 0
    stored = await stored_points(database_url, run_ids)
    assert_exactly_acknowledged(ledger, stored)
    assert set(stored) == ledger.acknowledged
    await summaries_match_points(database_url)


async def test_concurrent_run_creation_in_one_experiment(gateway):
    async with aiohttp.ClientSession() as session:
        async with session.post(gateway.url + API + "/experiments/create", json={"name": uuid.uuid4().hex}) as r:
            experiment_id = (await r.json())["experiment_id"]

        async def create() -> int:
            async with session.post(gateway.url + API + "/runs/create", json={"experiment_id": experiment_id}) as r:
                await r.read()
                return r.status

        statuses = await asyncio.gather(*[create() for _ in range(40)])
        assert statuses == [200] * 40
        async with session.post(
            gateway.url + API + "/runs/search", json={"experiment_ids": [experiment_id], "max_results": 100}
        ) as r:
            assert len((await r.json())["runs"]) == 40


async def shard_worker_ports(url: str, run_ids: list[str]) -> dict[str, int]:
    """The port of the worker holding each run's shard."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            """SELECT r.run_id, p.nodeport FROM unnest($1::uuid[]) AS r(run_id)
               JOIN pg_dist_shard_placement p ON p.shardid = get_shard_id_for_distribution_column('runs', r.run_id)""",
            run_ids,
        )
    finally:
        await conn.close()
    return {row["run_id"].hex: row["nodeport"] for row in rows}


async def test_a_stopped_worker_fails_only_its_runs_writes_and_the_gateway_recovers(citus, fresh_database_url):
    """Worker 2 stops mid-flood: runs on worker 1 keep committing; writes to worker 2's runs are
    answered 503 with Retry-After once the request deadline passes; nothing acknowledged is lost;
    when the worker is back, the same gateway writes to its runs again."""
    if not citus.can_stop_workers:
        pytest.skip("stopping a worker needs a cluster these tests started (not GATEWAY_TEST_CITUS_URL)")
    gateway = GatewayProcess(fresh_database_url, env={"GATEWAY_REQUEST_DEADLINE_S": "3"})
    worker_ports = [int(url.rsplit(":", 1)[1].split("/")[0]) for url in await citus.worker_urls()]
    stopped = False
    try:
        run_ids = await create_runs(gateway.url, 16, "worker-failure")
        where = await shard_worker_ports(fresh_database_url, run_ids)
        live = [r for r in run_ids if where[r] == worker_ports[0]][:3]
        dead = [r for r in run_ids if where[r] == worker_ports[1]][:3]
        assert live and dead
        before = await flood(gateway.url, live + dead, writers=6, duration=60, max_requests_per_writer=5)
        assert before.statuses == {200: 30}

        citus.kill_worker(2)
        stopped = True
        during = Ledger()
        retry_after: set[str] = set()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

            async def write(run_id: str, step: int) -> None:
                body = {"run_id": run_id, "key": "during", "value": float(step), "timestamp": step, "step": step}
                async with session.post(gateway.url + API + "/runs/log-metric", json=body) as response:
                    await response.read()
                    during.count(response.status)
                    if response.status == 200:
                        during.acknowledged.add((run_id, "during", step, float(step)))
                    elif response.status == 503:
                        retry_after.add(response.headers.get("Retry-After", ""))

            # Each round writes to every run at once, live and dead side by side in the same flushes.
            for step in range(4):
                await asyncio.gather(*[write(r, step) for r in live + dead])
        acknowledged_runs = {run_id for run_id, _, _, _ in during.acknowledged}
        assert acknowledged_runs == set(live)  # every live run committed, no dead one
        assert during.statuses == {200: 4 * len(live), 503: 4 * len(dead)}
        assert retry_after and all(value.isdigit() and int(value) >= 1 for value in retry_after)

        citus.start_worker(2)
        stopped = False
        # The gateway finds the worker again by itself (the writes held since it stopped land first).
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            for run_id in dead:
                for _ in range(30):
                    body = {"run_id": run_id, "key": "probe", "value": 1.0, "timestamp": 1, "step": 0}
                    async with session.post(gateway.url + API + "/runs/log-metric", json=body) as response:
                        if response.status == 200:
                            break
                        assert response.status == 503
                else:
                    pytest.fail(f"writes to run {run_id} did not recover after the worker came back")
        after = await flood(gateway.url, live + dead, writers=6, duration=90, max_requests_per_writer=5)
        # Under load a write may still outlast the short deadline (503, which the client retries); none fails.
        assert set(after.statuses) <= {200, 503} and after.statuses.get(200, 0) > 0
        stored = set(await stored_points(fresh_database_url, live + dead))
        for ledger in (before, during, after):
            assert ledger.acknowledged <= stored
        await summaries_match_points(fresh_database_url)
    finally:
        if stopped:
            citus.start_worker(2)
        gateway.stop()
