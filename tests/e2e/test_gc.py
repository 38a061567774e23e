"""`gateway gc` as a real subprocess against a real database, alone and while a gateway ingests."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
import uuid

import aiohttp
import asyncpg
import pytest
import requests

from gateway.store.gc import EXPERIMENT_SCOPED_TABLES, LOGGED_MODEL_SCOPED_TABLES, RUN_SCOPED_TABLES
from tests.e2e.flood import API, create_runs, flood
from tests.e2e.test_flood import assert_exactly_acknowledged, stored_points, summaries_match_points
from tests.server import GatewayProcess

pytestmark = pytest.mark.timeout(240)

DAY_MS = 86_400_000


def gc(database_url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "gc", "--database-url", database_url, *args],
        capture_output=True, text=True, timeout=180, env={**os.environ, **(env or {})},
    )


async def tables_with_column(conn: asyncpg.Connection, column: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT c.table_name FROM information_schema.columns c JOIN information_schema.tables t "
        "ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
        "WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' AND c.column_name = $1 "
        "ORDER BY c.table_name",
        column,
    )
    return [row["table_name"] for row in rows]


# Metric points are counted a point each, through the view over chunks and rows.
POINT_TABLES = {"metric_chunks", "metric_rows"}


async def rows_naming(database_url: str, column: str, ids: list) -> dict[str, int]:
    """Rows that name any of ``ids`` in every table of the schema with that column (metric points
    as rows of the metric_points view)."""
    conn = await asyncpg.connect(database_url)
    try:
        counts = {}
        cast = {"run_id": "uuid", "model_id": "text"}.get(column, "bigint")
        tables = await tables_with_column(conn, column)
        if POINT_TABLES & set(tables):
            tables = [t for t in tables if t not in POINT_TABLES] + ["metric_points"]
        for table in tables:
            counts[table] = await conn.fetchval(
                f'SELECT count(*) FROM "{table}" WHERE {column} = ANY($1::{cast}[])', ids
            )
        return counts
    finally:
        await conn.close()


async def age(database_url: str, *, runs: list[str] = (), experiments: list[str] = (), days: int = 31) -> None:
    """Make deletions look ``days`` old (the clock cannot be turned back any other way)."""
    moment = int(time.time() * 1000) - days * DAY_MS
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE runs SET deleted_time = $2 WHERE run_id = ANY($1::uuid[])", list(runs), moment)
        await conn.execute(
            "UPDATE experiments SET last_update_time = $2 WHERE experiment_id = ANY($1::bigint[])",
            [int(e) for e in experiments],
            moment,
        )
        await conn.execute(
            "UPDATE runs SET deleted_time = $2 WHERE experiment_id = ANY($1::bigint[])",
            [int(e) for e in experiments],
            moment,
        )
    finally:
        await conn.close()


class Api:
    def __init__(self, url: str):
        self.url = url + API
        self.session = requests.Session()

    def post(self, path: str, body: dict) -> dict:
        response = self.session.post(self.url + path, json=body, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def experiment(self, tags: bool = True) -> str:
        body = {"name": "gc-" + uuid.uuid4().hex}
        if tags:
            body["tags"] = [{"key": "team", "value": "vision"}]
        return self.post("/experiments/create", body)["experiment_id"]

    def run(self, experiment_id: str, *, deleted: bool = False) -> str:
        """A run with metric points, params, tags, a dataset and a model input, and a model output."""
        run_id = self.post("/runs/create", {"experiment_id": experiment_id})["run"]["info"]["run_id"]
        self.post("/runs/log-batch", {
            "run_id": run_id,
            "metrics": [{"key": k, "value": s / 3, "timestamp": 1000 + s, "step": s} for k in ("loss", "acc") for s in range(5)],
            "params": [{"key": "lr", "value": "0.1"}, {"key": "layers", "value": "3"}],
            "tags": [{"key": "stage", "value": "train"}],
        })
        self.post("/runs/log-inputs", {"run_id": run_id, "datasets": [{
            "tags": [{"key": "mlflow.data.context", "value": "training"}],
            "dataset": {"name": "d", "digest": "abc", "source_type": "local", "source": "{}"},
        }], "models": [{"model_id": "m-" + run_id[:8]}]})
        self.post("/runs/outputs", {"run_id": run_id, "models": [{"model_id": "m-" + run_id[8:16], "step": 3}]})
        if deleted:
            self.post("/runs/delete", {"run_id": run_id})
        return run_id

    def get_run(self, run_id: str) -> requests.Response:
        return self.session.get(self.url + "/runs/get", params={"run_id": run_id}, timeout=30)


@pytest.fixture
def own_gateway(fresh_database_url):
    process = GatewayProcess(fresh_database_url)
    yield process
    process.stop()


async def test_every_run_scoped_table_is_removed_by_gc(fresh_database_url):
    """A table added to sql/ with a run_id, model_id or experiment_id column must be known to gc."""
    from gateway.store.migrations import migrate

    conn = await asyncpg.connect(fresh_database_url)
    try:
        await migrate(conn)
        assert set(await tables_with_column(conn, "run_id")) == {"runs", *RUN_SCOPED_TABLES}
        # A run-scoped table naming a model goes with its run, not with the model.
        assert set(await tables_with_column(conn, "model_id")) - set(RUN_SCOPED_TABLES) == {
            "logged_models", *LOGGED_MODEL_SCOPED_TABLES}
        # params and run_tags copy their run's experiment for search; they go with their run.
        assert set(await tables_with_column(conn, "experiment_id")) - {"params", "run_tags"} == {
            "experiments", "runs", "logged_models", *EXPERIMENT_SCOPED_TABLES}
        assert {"params", "run_tags"} <= set(RUN_SCOPED_TABLES)
    finally:
        await conn.close()


async def test_gc_removes_what_was_deleted_before_the_cutoff_from_every_table(own_gateway, fresh_database_url):
    api = Api(own_gateway.url)
    exp_a = api.experiment()
    live = api.run(exp_a)
    old_a = api.run(exp_a, deleted=True)
    recent_a = api.run(exp_a, deleted=True)
    exp_b = api.experiment()  # deleted long ago, with its runs
    old_b = [api.run(exp_b), api.run(exp_b)]
    api.post("/experiments/delete", {"experiment_id": exp_b})
    exp_c = api.experiment()  # deleted just now
    recent_c = api.run(exp_c)
    api.post("/experiments/delete", {"experiment_id": exp_c})
    exp_d = api.experiment()
    old_d = api.run(exp_d, deleted=True)
    await age(fresh_database_url, runs=[old_a, old_d], experiments=[exp_b])
    live_before = api.get_run(live).json()

    # Restricted to one experiment: only its old deleted run goes.
    done = gc(fresh_database_url, "--older-than", "30d", "--experiment-ids", exp_a, "--batch-size", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith(
        "gc: removed 1 runs, 0 logged models and 0 experiments deleted before ")
    assert done.stdout.splitlines()[-1].endswith(
        " (10 metric points, 2 metric summaries, 2 params, 2 tags, 2 inputs, 1 outputs, 0 model params, "
        "0 model tags); artifacts of 1 runs and models removed, 0 failed")
    assert "1/1" in done.stderr and "run" in done.stderr  # the progress bar
    assert api.get_run(old_a).status_code == 404
    assert api.get_run(old_d).status_code == 200

    done = gc(fresh_database_url, "--older-than", "30d", "--batch-size", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith(
        "gc: removed 3 runs, 0 logged models and 1 experiments deleted before ")
    assert "3/3" in done.stderr

    gone_runs = [old_a, old_d, *old_b]
    assert set((await rows_naming(fresh_database_url, "run_id", gone_runs)).values()) == {0}
    assert set((await rows_naming(fresh_database_url, "experiment_id", [int(exp_b)])).values()) == {0}
    for run_id in gone_runs:
        assert api.get_run(run_id).json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    # What is younger than the cutoff, or was never deleted, is untouched.
    assert api.get_run(live).json() == live_before
    kept = await rows_naming(fresh_database_url, "run_id", [recent_a, recent_c])
    assert kept == {"metric_summaries": 4, "metric_points": 20, "params": 4, "run_dataset_inputs": 2,
                    "run_model_inputs": 2, "run_model_outputs": 2, "run_tags": 4, "run_versions": 2, "runs": 2}
    assert (await rows_naming(fresh_database_url, "experiment_id", [int(exp_c)]))["experiments"] == 1

    # 0s: everything deleted so far.
    done = gc(fresh_database_url, "--older-than", "0s")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith(
        "gc: removed 2 runs, 0 logged models and 1 experiments deleted before ")
    assert set((await rows_naming(fresh_database_url, "run_id", [recent_a, recent_c])).values()) == {0}
    assert set((await rows_naming(fresh_database_url, "experiment_id", [int(exp_c)])).values()) == {0}
    assert api.get_run(live).json() == live_before
    done = gc(fresh_database_url)
    assert done.returncode == 0
    assert done.stdout.splitlines()[-1].startswith("gc: removed 0 runs, 0 logged models and 0 experiments")


async def test_gc_of_named_runs_and_models_checks_each_then_removes_only_them(own_gateway, fresh_database_url):
    api = Api(own_gateway.url)
    exp = api.experiment()
    named = [api.run(exp, deleted=True), api.run(exp, deleted=True)]
    other = api.run(exp, deleted=True)
    recent = api.run(exp, deleted=True)
    live = api.run(exp)
    exp_gone = api.experiment()  # deleted long ago: not named, so it stays
    in_exp_gone = api.run(exp_gone)
    api.post("/experiments/delete", {"experiment_id": exp_gone})
    models = [api.post("/logged-models", {"experiment_id": exp, "name": f"m{i}"})["model"]["info"]["model_id"]
              for i in range(3)]
    named_model, other_model, live_model = models
    for model_id in (named_model, other_model):
        response = api.session.delete(f"{api.url}/logged-models/{model_id}", timeout=30)
        assert response.status_code == 200, response.text
    await age(fresh_database_url, runs=[*named, other], experiments=[exp_gone])
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await conn.execute(
            "UPDATE logged_models SET last_updated_timestamp_ms = $2 WHERE model_id = ANY($1::text[])",
            [named_model, other_model], int(time.time() * 1000) - 31 * DAY_MS,
        )
    finally:
        await conn.close()

    async def everything_stored() -> dict:
        return {
            "runs": await rows_naming(fresh_database_url, "run_id", [*named, other, recent, live, in_exp_gone]),
            "models": await rows_naming(fresh_database_url, "model_id", models),
        }

    before = await everything_stored()
    # Each named id is checked first, in `mlflow gc`'s words; one refused id removes nothing.
    refusals = [
        ([f"--run-ids={named[0]},{live}"],
         f"Run {live} is not in `deleted` lifecycle stage. Only runs in `deleted` lifecycle stage can be deleted."),
        (["--older-than", "30d", "--run-ids", named[0], recent],
         f"Run {recent} is not older than the required age. Only runs older than 30d can be deleted."),
        (["--run-ids", "0" * 32], f"Run with id={'0' * 32} not found"),
        (["--run-ids", "not-a-run"], "Run with id=not-a-run not found"),
        (["--run-ids", named[0], "--logged-model-ids", "m-nope"], "Logged model with ID 'm-nope' not found."),
        (["--logged-model-ids", live_model],
         f"Logged model {live_model} is not in `deleted` lifecycle stage. "
         "Only logged models in `deleted` lifecycle stage can be deleted."),
        (["--run-ids", named[0], "--experiment-ids", exp],
         "run ids and logged model ids name what to remove; they cannot be combined with experiment ids"),
    ]
    for args, message in refusals:
        done = gc(fresh_database_url, *args)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert f"gateway gc: {message}" in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert await everything_stored() == before

    done = gc(fresh_database_url, "--older-than", "30d", "--run-ids", named[0], "--run-ids", named[1],
              "--logged-model-ids", named_model)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("gc: removed 2 runs, 1 logged models and 0 experiments deleted")
    assert set((await rows_naming(fresh_database_url, "run_id", named)).values()) == {0}
    assert set((await rows_naming(fresh_database_url, "model_id", [named_model])).values()) == {0}
    # Nothing that was not named went, though some of it was due.
    for run_id in (other, recent, live, in_exp_gone):
        assert api.get_run(run_id).status_code == 200
    kept = await rows_naming(fresh_database_url, "model_id", [other_model, live_model])
    assert kept["logged_models"] == 2
    assert (await rows_naming(fresh_database_url, "experiment_id", [int(exp_gone)]))["experiments"] == 1

    # Only models named: no run goes.
    done = gc(fresh_database_url, "--logged-model-ids", other_model)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("gc: removed 0 runs, 1 logged models and 0 experiments deleted")
    assert api.get_run(other).status_code == 200


@pytest.mark.parametrize(
    "args, status, message",
    [
        (["--older-than", "30x"], 2, "gateway gc: error: argument --older-than: invalid duration '30x': give a number "
         "and a unit, d (days), h (hours), m (minutes) or s (seconds), largest unit first, e.g. 30d, 12h, 90m, 45s, "
         "0s or 1d12h"),
        (["--older-than=-1d"], 2, "gateway gc: error: argument --older-than: invalid duration '-1d'"),
        (["--experiment-ids", "one"], 2, "gateway gc: error: argument --experiment-ids: experiment ids are "
         "integers, got 'one'"),
        (["--experiment-ids", "987654"], 1, "gateway gc: No Experiment with id=987654 exists"),
        (["--batch-size", "0"], 1, "gateway gc: batch_size must be between 1 and 10000, got 0"),
        (["--batch-size", "10001"], 1, "gateway gc: batch_size must be between 1 and 10000, got 10001"),
    ],
)
def test_gc_rejects_bad_arguments_with_a_clear_message(fresh_database_url, args, status, message):
    done = gc(fresh_database_url, *args)
    assert done.returncode == status
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


async def test_gc_while_a_gateway_ingests_removes_whole_runs_and_loses_no_write(own_gateway, fresh_database_url):
    """Live runs are flooded, deleted runs are restored and written to, while gc removes them.

    Each raced run ends either restored with every acknowledged write, or gone from
    every table; the flood's writes all land, and no call gets a 5xx.
    """
    api = Api(own_gateway.url)
    live = await create_runs(own_gateway.url, 8, "gc-live-" + uuid.uuid4().hex)
    doomed_experiment = api.experiment()
    doomed = sorted(api.run(doomed_experiment, deleted=True) for _ in range(150))
    await age(fresh_database_url, runs=doomed)
    # gc removes in run_id order: race runs spread over that order, once gc has begun.
    raced = doomed[::5]
    outcomes: dict[str, tuple[int, int, int]] = {}
    started = asyncio.Event()

    async def watch_gc_start() -> None:
        conn = await asyncpg.connect(fresh_database_url)
        try:
            while await conn.fetchval("SELECT count(*) FROM runs WHERE run_id = ANY($1::uuid[])", doomed) == len(doomed):
                await asyncio.sleep(0.01)
        finally:
            await conn.close()
        started.set()

    async def race(session: aiohttp.ClientSession, run_id: str, index: int) -> None:
        await started.wait()
        await asyncio.sleep(random.uniform(0, 0.2))
        async with session.post(own_gateway.url + API + "/runs/log-metric",
                                json={"run_id": run_id, "key": "early", "value": 1, "timestamp": 1}) as response:
            refused = response.status
        async with session.post(own_gateway.url + API + "/runs/restore", json={"run_id": run_id}) as response:
            restored = response.status
        body = {
            "run_id": run_id,
            "metrics": [{"key": "late", "value": s, "timestamp": 5000 + s, "step": s} for s in range(20)],
            "params": [{"key": "late_param", "value": str(index)}],
            "tags": [{"key": "late_tag", "value": str(index)}],
        }
        async with session.post(own_gateway.url + API + "/runs/log-batch", json=body) as response:
            outcomes[run_id] = (refused, restored, response.status)

    async def racers() -> None:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*[race(session, run_id, i) for i, run_id in enumerate(raced)])

    collector = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "gc", "--database-url", fresh_database_url,
        "--older-than", "30d", "--batch-size", "1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    ledger, _, _, (out, err) = await asyncio.gather(
        flood(own_gateway.url, live, writers=16, duration=3), watch_gc_start(), racers(), collector.communicate())
    assert collector.returncode == 0, err.decode()
    assert out.decode().startswith("gc: removed ")

    assert set(ledger.statuses) == {200} and ledger.transport_errors == 0
    assert_exactly_acknowledged(ledger, await stored_points(fresh_database_url, live))
    assert set(ledger.acknowledged) == set(await stored_points(fresh_database_url, live))

    survivors, removed = [], []
    for run_id in raced:
        refused, restored, logged = outcomes[run_id]
        assert refused in (400, 404)  # deleted, or already removed: never stored
        if restored == 200:
            assert logged == 200, outcomes[run_id]
            survivors.append(run_id)
        else:
            assert (restored, logged) == (404, 404), outcomes[run_id]
            removed.append(run_id)
    for run_id in survivors:
        run = api.get_run(run_id).json()["run"]
        assert run["info"]["lifecycle_stage"] == "active"
        data = run["data"]
        assert {m["key"] for m in data["metrics"]} == {"loss", "acc", "late"}
        assert {p["key"] for p in data["params"]} == {"lr", "layers", "late_param"}
        assert {"late_tag", "stage"} <= {t["key"] for t in data["tags"]}
    counts = await rows_naming(fresh_database_url, "run_id", survivors)
    assert counts["metric_points"] == len(survivors) * 30 and counts["params"] == len(survivors) * 3
    not_raced = [run_id for run_id in doomed if run_id not in set(raced)]
    assert set((await rows_naming(fresh_database_url, "run_id", removed + not_raced)).values()) == {0}
    await summaries_match_points(fresh_database_url)


async def test_a_write_racing_bulk_delete_lands_whole_or_is_refused(own_gateway, fresh_database_url):
    """log-batch calls (metrics, params, tags) race delete-runs: each is stored whole or not at all."""
    api = Api(own_gateway.url)
    experiment_id = api.experiment(tags=False)
    run_ids = [api.post("/runs/create", {"experiment_id": experiment_id, "start_time": 1000})["run"]["info"]["run_id"]
               for _ in range(20)]
    answers: dict[tuple[str, int], int] = {}

    async def writer(session: aiohttp.ClientSession, run_id: str) -> None:
        for call in range(40):
            body = {
                "run_id": run_id,
                "metrics": [{"key": f"m{call}", "value": s, "timestamp": s, "step": s} for s in range(10)],
                "params": [{"key": f"p{call}", "value": "v"}],
                "tags": [{"key": f"t{call}", "value": "v"}],
            }
            async with session.post(own_gateway.url + API + "/runs/log-batch", json=body) as response:
                answers[(run_id, call)] = response.status
                if response.status != 200:
                    return

    async def deleter(session: aiohttp.ClientSession) -> int:
        await asyncio.sleep(0.3)
        async with session.post(own_gateway.url + API + "/databricks/runs/delete-runs",
                                json={"experiment_id": experiment_id, "max_timestamp_millis": 1000}) as response:
            assert response.status == 200
            return (await response.json())["runs_deleted"]

    async with aiohttp.ClientSession() as session:
        *_, deleted = await asyncio.gather(*[writer(session, r) for r in run_ids], deleter(session))
    assert deleted == 20
    assert set(answers.values()) <= {200, 400}
    conn = await asyncpg.connect(fresh_database_url)
    try:
        for table, key_prefix, per_call in (("metric_points", "m", 10), ("params", "p", 1), ("run_tags", "t", 1)):
            rows = await conn.fetch(
                f"SELECT run_id, key, count(*) AS n FROM {table} WHERE run_id = ANY($1::uuid[]) "
                f"AND key LIKE '{key_prefix}%' GROUP BY run_id, key", run_ids)
            stored = {(row["run_id"].hex, int(row["key"][1:])): row["n"] for row in rows}
            acknowledged = {key for key, status in answers.items() if status == 200}
            assert set(stored) == acknowledged, table
            assert set(stored.values()) == {per_call}
    finally:
        await conn.close()


async def test_gc_without_a_database_url_uses_the_embedded_database(tmp_path):
    """Like `gateway serve`, gc with no URL attaches to (or starts) the PostgreSQL in --data-dir."""
    from gateway.store.embedded import EmbeddedPostgres
    from gateway.store.migrations import migrate

    embedded = EmbeddedPostgres(tmp_path)
    url = embedded.start()  # as a running `gateway serve` would hold it
    try:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
            old, recent = uuid.uuid4().hex, uuid.uuid4().hex
            now = int(time.time() * 1000)
            for run_id, deleted_time in ((old, now - 2 * DAY_MS), (recent, now - 3_600_000)):
                await conn.execute(
                    "INSERT INTO runs (run_id, experiment_id, start_time, lifecycle_stage, deleted_time) "
                    "VALUES ($1, 0, 0, 'deleted', $2)", run_id, deleted_time)
                await conn.execute(
                    "INSERT INTO metric_rows (run_id, key, step, timestamp, value) VALUES ($1, 'm', 0, 0, 1.0)", run_id)
            env = {k: v for k, v in os.environ.items() if k != "GATEWAY_DATABASE_URL"}
            done = subprocess.run(
                [sys.executable, "-m", "gateway", "gc", "--older-than", "1d", "--data-dir", str(tmp_path)],
                capture_output=True, text=True, timeout=180, env=env,
            )
            assert done.returncode == 0, done.stderr
            assert done.stdout.splitlines()[-1].startswith(
                "gc: removed 1 runs, 0 logged models and 0 experiments deleted before ")
            remaining = await conn.fetch("SELECT run_id FROM runs UNION ALL SELECT run_id FROM metric_points")
            assert [row["run_id"].hex for row in remaining] == [recent, recent]
        finally:
            await conn.close()
    finally:
        embedded.stop()
