"""Reads on a real streaming replica (Debian's PostgreSQL 15, ``pg_basebackup -R``): the stock
mlflow client sees its own writes at once, whether the replica keeps up, lags or is down."""

from __future__ import annotations

import time
import uuid

import asyncpg
import mlflow
import pytest
import requests
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from tests import replication
from tests.pg import run_apart
from tests.server import GatewayProcess

pytestmark = pytest.mark.skipif(replication.missing() is not None, reason=str(replication.missing()))

# The gateway's connections to the replica carry this name, so the test can find them there.
APPLICATION_NAME = "gateway-replica-reads"
# Bound on how long a replica that came back may take to be used again (it is retried after a second).
BACK_WITHIN_S = 30


@pytest.fixture(scope="module")
def pair():
    streaming = replication.StreamingPair()
    yield streaming
    streaming.close()


@pytest.fixture(scope="module")
def replica_gateway(pair):
    """A gateway writing to the primary and reading from the replica."""
    process = GatewayProcess(
        pair.primary_url,
        "--read-database-url", f"{pair.replica_url}?application_name={APPLICATION_NAME}",
        "--replica-wait-ms", "1000",
    )
    yield process
    process.stop()


@pytest.fixture
def client(replica_gateway, monkeypatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(replica_gateway.url)
    return MlflowClient(replica_gateway.url)


def reads(gateway: GatewayProcess) -> dict[tuple[str, str], float]:
    """gateway_reads_total by (served_by, reason), from the gateway's /metrics."""
    text = requests.get(gateway.url + "/metrics", timeout=10).text
    counts = {}
    for family in text_string_to_metric_families(text):
        if family.name == "gateway_reads":
            for sample in family.samples:
                if sample.name == "gateway_reads_total":
                    counts[(sample.labels["served_by"], sample.labels["reason"])] = sample.value
    return counts


def replica_up(gateway: GatewayProcess) -> float:
    text = requests.get(gateway.url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        if family.name == "gateway_replica_up":
            return family.samples[0].value
    raise AssertionError("no gateway_replica_up in /metrics")


def on_replica(pair: replication.StreamingPair, sql: str):
    async def ask():
        conn = await asyncpg.connect(pair.replica_url)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return run_apart(ask())


def new_run(client: MlflowClient) -> tuple[str, str]:
    experiment_id = client.create_experiment("replica-" + uuid.uuid4().hex[:8])
    return experiment_id, client.create_run(experiment_id).info.run_id


def test_own_writes_read_from_a_replica_that_keeps_up(pair, replica_gateway, client):
    before = reads(replica_gateway)
    experiment_id, run_id = new_run(client)
    client.log_param(run_id, "lr", "0.01")
    for step in range(5):
        client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
    client.log_batch(run_id, metrics=[mlflow.entities.Metric("acc", 0.9, 1000, 4)])

    run = client.get_run(run_id)
    assert run.data.params == {"lr": "0.01"}
    assert run.data.metrics == {"loss": 0.2, "acc": 0.9}
    found = client.search_runs([experiment_id], "metrics.loss < 0.25 and params.lr = '0.01'")
    assert [r.info.run_id for r in found] == [run_id]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [
        (step, 1.0 / (step + 1)) for step in range(5)
    ]
    sampled = requests.get(
        replica_gateway.url + "/api/2.0/mlflow/metrics/get-history-bulk-interval",
        params={"run_ids": run_id, "metric_key": "loss", "max_results": 10}, timeout=10,
    ).json()
    assert [point["step"] for point in sampled["metrics"]] == [0, 1, 2, 3, 4]
    csv = requests.get(
        replica_gateway.url + "/api/2.0/mlflow/runs/export-csv", params={"experiment_ids": experiment_id}, timeout=10
    )
    assert csv.status_code == 200
    assert csv.text.splitlines()[1].startswith(f"{run_id},")
    client.create_registered_model("replica-model-" + uuid.uuid4().hex[:8], description="on the primary")
    assert [m.description for m in client.search_registered_models()] == ["on the primary"]

    after = reads(replica_gateway)
    # Six reads above: each was served by the replica, or counted with the reason it was not.
    served = after[("replica", "caught_up")] - before.get(("replica", "caught_up"), 0)
    fallen_back = sum(after[key] - before.get(key, 0) for key in after if key[0] == "primary")
    assert served + fallen_back == 6
    assert served >= 1
    assert after[("primary", "down")] == before.get(("primary", "down"), 0)
    connections = on_replica(pair, f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{APPLICATION_NAME}'")
    assert connections >= 1


def test_a_lagging_replica_gives_way_to_the_primary(pair, replica_gateway, client):
    _, run_id = new_run(client)
    client.log_metric(run_id, "loss", 1.0, step=0)
    assert client.get_run(run_id).data.metrics == {"loss": 1.0}
    on_replica(pair, "SELECT pg_wal_replay_pause()")
    try:
        before = reads(replica_gateway)
        client.log_metric(run_id, "loss", 0.5, step=1)
        client.log_param(run_id, "written", "while-paused")
        # The replica has not replayed these writes: the reads wait for it, then go to the primary.
        run = client.get_run(run_id)
        assert run.data.metrics == {"loss": 0.5}
        assert run.data.params == {"written": "while-paused"}
        assert [m.value for m in client.get_metric_history(run_id, "loss")] == [1.0, 0.5]
        lagged = reads(replica_gateway)
        assert lagged[("primary", "lag")] - before.get(("primary", "lag"), 0) == 2
        assert lagged[("replica", "caught_up")] == before[("replica", "caught_up")]
        # The writes really are missing on the replica.
        assert on_replica(pair, f"SELECT count(*) FROM params WHERE run_id = '{run_id}'") == 0
    finally:
        on_replica(pair, "SELECT pg_wal_replay_resume()")
    # Replaying again, the replica serves this run's reads once more.
    assert replica_serves_again(replica_gateway, client, run_id)


def replica_serves_again(gateway: GatewayProcess, client: MlflowClient, run_id: str) -> bool:
    """Read the run until the replica serves a read (True), or BACK_WITHIN_S passed (False)."""
    deadline = time.monotonic() + BACK_WITHIN_S
    while time.monotonic() < deadline:
        before = reads(gateway)[("replica", "caught_up")]
        assert client.get_run(run_id).info.run_id == run_id
        if reads(gateway)[("replica", "caught_up")] > before:
            return True
        time.sleep(0.2)
    return False


def test_a_replica_that_is_down_gives_way_to_the_primary(pair, replica_gateway, client):
    experiment_id, run_id = new_run(client)
    pair.stop_replica()
    try:
        before = reads(replica_gateway)
        client.log_metric(run_id, "loss", 0.25, step=3)
        assert client.get_run(run_id).data.metrics == {"loss": 0.25}
        assert [r.info.run_id for r in client.search_runs([experiment_id], "metrics.loss = 0.25")] == [run_id]
        graphql = requests.post(
            replica_gateway.url + "/graphql",
            json={"query": "query { mlflowGetRun(input: {runId: \"%s\"}) { run { info { runId } } } }" % run_id},
            timeout=10,
        )
        assert graphql.status_code == 200
        assert graphql.json()["data"]["mlflowGetRun"]["run"]["info"]["runId"] == run_id
        csv = requests.get(
            replica_gateway.url + "/api/2.0/mlflow/runs/export-csv", params={"experiment_ids": experiment_id},
            timeout=10,
        )
        assert csv.status_code == 200
        assert csv.text.splitlines()[1].startswith(f"{run_id},")
        after = reads(replica_gateway)
        assert after[("primary", "down")] - before.get(("primary", "down"), 0) == 4
        assert after[("replica", "caught_up")] == before[("replica", "caught_up")]
        assert replica_up(replica_gateway) == 0
    finally:
        pair.start_replica()
    # Back up, the replica is used again without restarting the gateway.
    assert replica_serves_again(replica_gateway, client, run_id)
    assert replica_up(replica_gateway) == 1


def test_reads_through_one_gateway_see_writes_through_another(pair, replica_gateway, client):
    """Read-your-writes across processes: the writes go through another gateway, which the
    reading one never hears of, and the replica applies each commit only 200 ms after it."""
    _, run_id = new_run(client)
    other = GatewayProcess(pair.primary_url)
    on_replica(pair, "ALTER SYSTEM SET recovery_min_apply_delay = '200ms'")
    on_replica(pair, "SELECT pg_reload_conf()")
    try:
        writer = MlflowClient(other.url)
        before = reads(replica_gateway)
        for step in range(8):
            writer.log_metric(run_id, "loss", float(step), step=step)
            assert client.get_run(run_id).data.metrics == {"loss": float(step)}
        after = reads(replica_gateway)
        # The replica served some of them, once it had applied the write before each.
        assert after[("replica", "caught_up")] > before[("replica", "caught_up")]
    finally:
        on_replica(pair, "ALTER SYSTEM RESET recovery_min_apply_delay")
        on_replica(pair, "SELECT pg_reload_conf()")
        other.stop()
