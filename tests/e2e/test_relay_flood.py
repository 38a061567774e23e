"""Floods through `gateway relay`: every acknowledged point arrives upstream exactly once.

The upstream is a real `gateway serve`, so what arrived is counted in its
database; the upstream's calls are counted on its /metrics and the relay's.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

from tests.e2e.flood import Ledger, create_runs, flood
from tests.e2e.test_flood import assert_exactly_acknowledged, stored_points
from tests.relay_processes import RelayProcess, prometheus_value
from tests.server import GatewayProcess

pytestmark = pytest.mark.timeout(300)

UPSTREAM_LOG_BATCH = 'endpoint="/api/2.0/mlflow/runs/log-batch",status="200"'
ONLY_SINGLE_CALLS = 10**9  # flood(batch_every=...) never sends a log-batch


def upstream_log_batches(upstream_url: str) -> float:
    return prometheus_value(upstream_url, "gateway_requests_total", UPSTREAM_LOG_BATCH)


async def drained(relay: RelayProcess, timeout: float = 120.0) -> None:
    """Wait until the relay delivered its whole spool (a bound on waiting, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while relay.metric("gateway_relay_spool_entities") > 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"the spool did not drain:\n{relay.log()[-3000:]}")
        await asyncio.sleep(0.2)


async def test_64_writers_arrive_exactly_once_in_few_full_batches(gateway, database_url):
    # A run's writes may wait up to a second to fill a batch: at most about
    # 2 runs x 4 windows of calls, however slow or fast this machine is.
    relay = RelayProcess(gateway.url, "--batch-linger-ms", "1000")
    try:
        run_ids = await create_runs(relay.url, 2, "relay-flood-" + uuid.uuid4().hex[:8])
        calls_before = upstream_log_batches(gateway.url)
        ledger = await flood(relay.url, run_ids, writers=64, duration=3, batch_every=ONLY_SINGLE_CALLS)
        await drained(relay)
        assert set(ledger.statuses) == {200} and ledger.statuses[200] > 300, ledger.statuses
        stored = await stored_points(database_url, run_ids)
        assert_exactly_acknowledged(ledger, stored)
        assert set(stored) == ledger.acknowledged  # and nothing that was not acknowledged
        calls = upstream_log_batches(gateway.url) - calls_before
        assert 0 < calls * 20 <= ledger.statuses[200], (calls, ledger.statuses)
        assert relay.metric("gateway_relay_dead_letters_total") == 0
    finally:
        relay.stop()


async def test_upstream_max_rps_holds(gateway, database_url):
    rate = 4
    relay = RelayProcess(gateway.url, "--upstream-max-rps", str(rate), "--batch-linger-ms", "0")
    try:
        run_ids = await create_runs(relay.url, 8, "relay-rps-" + uuid.uuid4().hex[:8])
        batches_before = upstream_log_batches(gateway.url)
        started = time.monotonic()
        ledger = await flood(relay.url, run_ids, writers=32, duration=3, batch_every=ONLY_SINGLE_CALLS)
        await drained(relay)
        elapsed = time.monotonic() - started
        calls = relay.metric("gateway_relay_upstream_calls_total")  # every call the relay made upstream
        # The pacer spaces calls 1/rate apart: whatever the machine's speed, no more
        # than rate * elapsed + 1 calls fit in the window.
        assert calls <= rate * elapsed + 1, (calls, elapsed)
        # and as the upstream counted them
        arrived = upstream_log_batches(gateway.url) - batches_before
        assert len(run_ids) <= arrived <= calls, (arrived, calls)
        assert calls >= len(run_ids)  # at least one log-batch per run (runs created through the relay need no check)
        assert_exactly_acknowledged(ledger, await stored_points(database_url, run_ids))
    finally:
        relay.stop()


async def test_upstream_outage_mid_flood_drains_by_itself(fresh_database_url):
    upstream = GatewayProcess(fresh_database_url)
    port = upstream.port
    relay = RelayProcess(
        upstream.url, "--spool-max-bytes", str(128 * 1024), "--retry-backoff-max-s", "0.5", "--batch-linger-ms", "20"
    )
    try:
        run_ids = await create_runs(relay.url, 8, "relay-outage")
        ledger = Ledger()
        restarted: list[GatewayProcess] = []

        def outage():
            time.sleep(1.0)
            upstream.stop()
            time.sleep(4.0)
            restarted.append(GatewayProcess(fresh_database_url, port=port))

        thread = threading.Thread(target=outage)
        thread.start()
        await flood(relay.url, run_ids, writers=16, duration=7, ledger=ledger)
        thread.join()
        await drained(relay)
        # Writers were refused only past the spool's bound: 503 while the upstream was down
        # (429 if the spool was full while the upstream was up but behind).
        assert set(ledger.statuses) <= {200, 429, 503}, ledger.statuses
        refused = ledger.statuses.get(503, 0) + ledger.statuses.get(429, 0)
        assert refused == relay.metric("gateway_relay_spool_full_rejects_total")
        assert ledger.statuses.get(503, 0) > 0, ledger.statuses
        assert relay.metric("gateway_relay_upstream_retries_total") > 0
        stored = await stored_points(fresh_database_url, run_ids)
        assert_exactly_acknowledged(ledger, stored)
        assert len(stored) == len(ledger.acknowledged)
    finally:
        relay.stop()
        upstream.stop()
        for process in restarted:
            process.stop()


async def test_sigkill_of_the_relay_mid_flood_loses_nothing_acknowledged(fresh_database_url):
    upstream = GatewayProcess(fresh_database_url)
    # A slow pace keeps most acknowledged writes in the spool when the relay dies.
    relay = RelayProcess(upstream.url, "--upstream-max-rps", "2")
    try:
        run_ids = await create_runs(relay.url, 8, "relay-sigkill")
        ledger = Ledger()

        def kill_soon():
            time.sleep(2)
            relay.kill()

        killer = threading.Thread(target=kill_soon)
        killer.start()
        await flood(relay.url, run_ids, writers=32, duration=3, ledger=ledger)
        killer.join()
        assert ledger.statuses.get(200, 0) > 100 and ledger.transport_errors > 0, ledger.statuses
        before_restart = await stored_points(fresh_database_url, run_ids)
        assert len(before_restart) < len(ledger.acknowledged)  # the spool held the rest

        restarted = RelayProcess(upstream.url, spool_dir=relay.spool_dir, port=relay.port)
        try:
            assert "replaying" in restarted.log()
            await drained(restarted)
            stored = await stored_points(fresh_database_url, run_ids)
            assert_exactly_acknowledged(ledger, stored)  # every acknowledged point, none twice
        finally:
            restarted.stop()
    finally:
        relay.stop()
        upstream.stop()
