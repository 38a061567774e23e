"""`gateway import-mlflow`: a store written through a real `mlflow server` (SQLite, PostgreSQL and,
where Debian's mariadb-server is installed, MariaDB) moves into the gateway with every id kept, and
the gateway then answers every question as that server did; an import killed mid-table continues to
the same result; bad input copies nothing."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import psutil
import pytest

from tests.e2e.mlflow_stores import differences, write_store
from tests.mariadb import MISSING
from tests.mlflow_server import MlflowServerProcess
from tests.pg import run_apart
from tests.server import GatewayProcess, free_port

# `mlflow server` imports for a long time; on a busy machine its start alone can take minutes.
pytestmark = pytest.mark.timeout(900)


def import_command(source: str, database_url: str, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "import-mlflow", "--from", source, "--database-url", database_url,
         "--no-progress", *extra],
        capture_output=True, text=True, timeout=300,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"import-mlflow failed ({result.returncode}):\n{result.stderr}\n{result.stdout}")
    return result


async def fetch(url: str, sql: str, *args) -> list:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(row) for row in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


# Everything an import writes, keyed so that two imports of one store compare equal (chunk ids
# and registry keys are the database's own numbers, not MLflow's ids).
CONTENT = {
    "experiments": "SELECT * FROM experiments ORDER BY experiment_id",
    "experiment_tags": "SELECT * FROM experiment_tags ORDER BY 1, 2",
    "runs": "SELECT * FROM runs ORDER BY run_id",
    "params": "SELECT run_id, key, value, experiment_id, start_time FROM params ORDER BY 1, 2",
    "run_tags": "SELECT run_id, key, value, experiment_id, start_time FROM run_tags ORDER BY 1, 2",
    "points": "SELECT run_id, key, step, timestamp, value::text, model_id, dataset_name, dataset_digest "
              "FROM metric_points ORDER BY 1, 2, 3, 4, 5",
    "summaries": "SELECT * FROM metric_summaries ORDER BY 1, 2",
    "inputs": "SELECT * FROM run_dataset_inputs ORDER BY 1, 2, 3",
    "model_inputs": "SELECT * FROM run_model_inputs ORDER BY 1, 2",
    "model_outputs": "SELECT * FROM run_model_outputs ORDER BY 1, 2, 3",
    "logged_models": "SELECT * FROM logged_models ORDER BY model_id",
    "logged_model_params": "SELECT * FROM logged_model_params ORDER BY 1, 2",
    "logged_model_tags": "SELECT * FROM logged_model_tags ORDER BY 1, 2",
    "registered_models": "SELECT name, creation_time, last_updated_time, description, last_version "
                         "FROM registered_models ORDER BY name",
    "model_versions": "SELECT m.name, v.version, v.creation_time, v.last_updated_time, v.description, "
                      "v.current_stage, v.source, v.storage_location, v.source_run_id, v.run_link "
                      "FROM model_versions v JOIN registered_models m USING (model_key) ORDER BY 1, 2",
    "aliases": "SELECT m.name, a.alias, a.version FROM registered_model_aliases a "
               "JOIN registered_models m USING (model_key) ORDER BY 1, 2",
}


async def content(url: str) -> dict:
    return {name: await fetch(url, sql) for name, sql in CONTENT.items()}


@pytest.fixture(scope="module")
def mlflow_stores(postgres, mariadb):
    """A SQLite, a PostgreSQL and (with MariaDB installed) a MariaDB store, each written through its own
    `mlflow server` (started side by side), the servers left running to answer; by kind: (server,
    what was written, store URI)."""
    database = run_apart(postgres.create_database())
    backends = {"sqlite": None, "postgresql": "postgresql+psycopg2://" + database.split("://", 1)[1]}
    sources = {"postgresql": database}
    if mariadb is not None:
        backends["mysql"] = sources["mysql"] = mariadb.create_database()
    with ThreadPoolExecutor(len(backends)) as pool:
        starting = {kind: pool.submit(MlflowServerProcess, uri, startup_timeout=420) for kind, uri in backends.items()}
    servers = {}
    try:
        for kind, future in starting.items():
            servers[kind] = future.result()
        sources["sqlite"] = f"sqlite:///{servers['sqlite'].folder / 'mlflow.db'}"
        # One at a time: the client's fluent API keeps its tracking URI in a global.
        yield {kind: (server, write_store(server.url), sources[kind]) for kind, server in servers.items()}
    finally:
        for future in starting.values():
            if future.exception() is None:
                future.result().stop()


@pytest.fixture(scope="module")
def sqlite_store(mlflow_stores):
    return mlflow_stores["sqlite"]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mysql"])
def test_the_gateway_answers_as_mlflow_did(kind, request, fresh_database_url):
    stores = request.getfixturevalue("mlflow_stores")
    if kind not in stores:
        pytest.skip(MISSING)
    server, store, source = stores[kind]
    # Points from SQLite and MySQL read by worker processes (by default only for big stores).
    result = import_command(source, fresh_database_url, *(["--workers", "2"] if kind != "postgresql" else []))
    assert "imported" in result.stdout and "metric points" in result.stdout
    gateway = GatewayProcess(fresh_database_url, "--artifacts-destination", str(server.folder / "artifacts"))
    try:
        assert differences(server.url, gateway.url, store) == []
        # The same artifact store: a run's files are where MLflow put them.
        run_id = store["runs"][3]
        url = f"{gateway.url}/api/2.0/mlflow-artifacts/artifacts/2/{run_id}/artifacts/notes/readme.txt"
        with urllib.request.urlopen(url, timeout=30) as answer:
            assert answer.read() == b"hello"
    finally:
        gateway.stop()
    # Done once: running it again copies nothing more.
    before = run_apart(content(fresh_database_url))
    import_command(source, fresh_database_url)
    assert run_apart(content(fresh_database_url)) == before


def grown_copy(kind: str, stores: dict, mariadb, folder, runs: int = 60, points: int = 4000) -> str:
    """A copy of the module's SQLite or MariaDB store with ``runs`` more runs of two long metric
    histories (NaN among them), written into MLflow's tables as MLflow's SQL store writes them."""
    _, _, source = stores[kind]
    if kind == "sqlite":
        path = folder / "grown.db"
        shutil.copy(source.split(":///", 1)[1], path)
        conn = sqlite3.connect(path)
        with conn:
            _grow(conn.executemany, "?", runs, points)
        conn.close()
        return f"sqlite:///{path}"
    copy = mariadb.create_database()
    original = source.rsplit("/", 1)[1]
    conn = mariadb.connect(copy.rsplit("/", 1)[1])
    try:
        with conn.cursor() as cursor:
            # Experiment 0 kept as 0, not taken for "the next id".
            cursor.execute("SET foreign_key_checks = 0, sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')")
            cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                           "AND table_type = 'BASE TABLE'", (original,))
            for (table,) in cursor.fetchall():
                cursor.execute(f"CREATE TABLE `{table}` LIKE `{original}`.`{table}`")
                cursor.execute(f"INSERT INTO `{table}` SELECT * FROM `{original}`.`{table}`")
            conn.begin()
            _grow(cursor.executemany, "%s", runs, points)
            conn.commit()
    finally:
        conn.close()
    return copy


def _grow(executemany, mark: str, runs: int, points: int) -> None:
    """Insert the runs with ``executemany`` (placeholders ``mark``; `key` in backquotes, which MySQL
    needs for its reserved word and SQLite takes too)."""

    def insert(sql: str, rows: list) -> None:
        executemany(sql.replace("?", mark), rows)

    for index in range(runs):
        run_id = uuid.uuid4().hex
        insert("INSERT INTO runs (run_uuid, name, source_type, user_id, status, start_time, lifecycle_stage, "
               "artifact_uri, experiment_id) VALUES (?, ?, 'LOCAL', 'bench', 'FINISHED', ?, 'active', ?, 1)",
               [(run_id, f"bulk-{index}", 5_000 + index, f"mlflow-artifacts:/1/{run_id}/artifacts")])
        insert("INSERT INTO tags (`key`, value, run_uuid) VALUES ('mlflow.runName', ?, ?)", [(f"bulk-{index}", run_id)])
        insert("INSERT INTO params (`key`, value, run_uuid) VALUES ('seed', ?, ?)", [(str(index), run_id)])
        for key in ("loss", "acc"):
            insert("INSERT INTO metrics (`key`, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, ?)",
                   [(key, 0.0 if step % 997 == 5 else step / (index + 1), 1_000 + step, run_id, step // 2,
                     step % 997 == 5) for step in range(points)])
        if index == 0:
            # A key of its own, though MySQL's collation takes it for "loss".
            insert("INSERT INTO metrics (`key`, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, 0)",
                   [("LOSS", step + 0.5, 1_000 + step, run_id, step) for step in range(10)])


async def runs_progress(url: str) -> tuple:
    """(last run id committed, done) of the runs step, (None, False) before it started."""
    conn = await asyncpg.connect(url)
    try:
        if not await conn.fetchval("SELECT to_regclass('mlflow_import_progress') IS NOT NULL"):
            return None, False
        row = await conn.fetchrow("SELECT last_key, done FROM mlflow_import_progress WHERE step = 'runs'")
        return (row["last_key"], row["done"]) if row else (None, False)
    finally:
        await conn.close()


@pytest.mark.parametrize("kind", ["sqlite", "mysql"])
def test_an_import_killed_mid_table_continues_to_the_same_result(kind, request, postgres, tmp_path):
    stores = request.getfixturevalue("mlflow_stores")
    if kind not in stores:
        pytest.skip(MISSING)
    # Fewer points into MariaDB, whose inserts cost more than SQLite's; still enough to kill it mid-table.
    # (Not a count whose last point is NaN: a summary's NaN would compare unequal to itself.)
    points = 4000 if kind == "sqlite" else 2500
    source = grown_copy(kind, stores, request.getfixturevalue("mariadb"), tmp_path, points=points)
    clean = run_apart(postgres.create_database())
    import_command(source, clean)
    resumed = run_apart(postgres.create_database())
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "import-mlflow", "--from", source, "--database-url", resumed,
         "--no-progress", "--batch-runs", "2", "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            last_key, done = run_apart(runs_progress(resumed))
            if last_key and not done:
                break
            assert process.poll() is None, "the import ended before it could be killed"
            time.sleep(0.05)
        else:
            raise AssertionError("the import never committed a batch of runs")
        workers = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # Its worker processes end with it.
    assert workers
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert alive == []
    assert run_apart(fetch(clean, "SELECT point_count FROM metric_summaries WHERE key = 'LOSS'")) == [(10,)]
    assert run_apart(fetch(clean, "SELECT DISTINCT point_count FROM metric_summaries s JOIN runs USING (run_id) "
                                  "WHERE s.key = 'loss' AND runs.name LIKE 'bulk-%'")) == [(points,)]
    killed_at = run_apart(fetch(resumed, "SELECT count(*) FROM runs"))[0][0]
    total = run_apart(fetch(clean, "SELECT count(*) FROM runs"))[0][0]
    assert 0 < killed_at < total
    result = import_command(source, resumed)
    assert "(continued)" in result.stdout
    assert run_apart(content(resumed)) == run_apart(content(clean))


def test_points_read_in_the_import_or_by_workers_are_the_same(sqlite_store, postgres):
    _, _, source = sqlite_store
    in_process, by_workers = run_apart(postgres.create_database()), run_apart(postgres.create_database())
    import_command(source, in_process, "--workers", "0")
    import_command(source, by_workers, "--workers", "3")
    assert run_apart(content(in_process)) == run_apart(content(by_workers))


def test_dry_run_counts_and_copies_nothing(sqlite_store, fresh_database_url):
    _, _, source = sqlite_store
    result = import_command(source, fresh_database_url, "--dry-run")
    assert "nothing copied" in result.stdout
    assert "runs" in result.stdout and "metric points" in result.stdout
    assert run_apart(fetch(fresh_database_url, "SELECT count(*) FROM runs")) == [(0,)]


def refused(source: str, database_url: str, *extra: str) -> str:
    result = import_command(source, database_url, *extra, check=False)
    assert result.returncode != 0
    return result.stderr


def test_an_unknown_schema_revision_is_refused(sqlite_store, tmp_path, fresh_database_url):
    _, _, source = sqlite_store
    path = tmp_path / "future.db"
    shutil.copy(source.split(":///", 1)[1], path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'feedfacecafe'")
    message = refused(f"sqlite:///{path}", fresh_database_url)
    assert "revision feedfacecafe" in message and "mlflow db upgrade" in message
    assert run_apart(fetch(fresh_database_url, "SELECT to_regclass('runs') IS NULL")) == [(True,)]


def test_what_is_not_an_mlflow_store_is_refused(tmp_path, fresh_database_url, postgres):
    not_a_database = tmp_path / "notes.db"
    not_a_database.write_text("not a database at all, just some text" * 100)
    assert "is not an MLflow store" in refused(f"sqlite:///{not_a_database}", fresh_database_url)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE things (id integer)")
    assert "is not an MLflow store: it has no alembic_version" in refused(f"sqlite:///{other}", fresh_database_url)
    assert "no such file" in refused(f"sqlite:///{tmp_path / 'missing.db'}", fresh_database_url)
    empty_postgres = run_apart(postgres.create_database())
    assert "is not an MLflow store" in refused(empty_postgres, fresh_database_url)
    nobody = f"mysql://user@127.0.0.1:{free_port()}/mlflow"
    assert f"cannot connect to mysql://127.0.0.1:{nobody.rsplit(':', 1)[1]}" in refused(nobody, fresh_database_url)
    assert "not supported" in refused("mssql://user@localhost/mlflow", fresh_database_url)
    assert run_apart(fetch(fresh_database_url, "SELECT to_regclass('runs') IS NULL")) == [(True,)]


def test_a_mariadb_database_that_is_not_an_mlflow_store_is_refused(mariadb, fresh_database_url):
    if mariadb is None:
        pytest.skip(MISSING)
    empty = mariadb.create_database()
    assert f"mysql://127.0.0.1:{mariadb.port}/{empty.rsplit('/', 1)[1]} is not an MLflow store" in refused(
        empty, fresh_database_url)
    assert "Unknown database" in refused(mariadb.admin_url + "missing", fresh_database_url)
    assert run_apart(fetch(fresh_database_url, "SELECT to_regclass('runs') IS NULL")) == [(True,)]


def test_a_database_with_data_is_refused_unless_merged_without_collisions(sqlite_store, fresh_database_url):
    _, _, source = sqlite_store
    run_apart(_seed_gateway(fresh_database_url))
    message = refused(source, fresh_database_url)
    assert "is not empty" in message and "--merge" in message
    assert run_apart(fetch(fresh_database_url, "SELECT count(*) FROM runs")) == [(1,)]
    # Experiment 1 is taken by another name: merging would mix two experiments.
    assert "experiment id 1" in refused(source, fresh_database_url, "--merge")
    run_apart(fetch(fresh_database_url, "UPDATE experiments SET experiment_id = 500 WHERE experiment_id = 1"))
    run_apart(fetch(fresh_database_url, "UPDATE runs SET experiment_id = 500"))
    import_command(source, fresh_database_url, "--merge")
    names = run_apart(fetch(fresh_database_url, "SELECT experiment_id, name FROM experiments ORDER BY 1"))
    assert (500, "mine") in names and (1, "vision") in names
    assert run_apart(fetch(fresh_database_url, "SELECT count(*) FROM runs"))[0][0] > 1
    next_id = run_apart(fetch(fresh_database_url, "SELECT nextval('experiment_id_seq')"))[0][0]
    assert next_id > 500


async def _seed_gateway(url: str) -> None:
    from gateway.store.migrations import migrate

    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        await conn.execute("INSERT INTO experiments (experiment_id, name, artifact_location, creation_time, "
                           "last_update_time) VALUES (1, 'mine', 'mlflow-artifacts:/1', 0, 0)")
        await conn.execute("SELECT setval('experiment_id_seq', 1)")
        await conn.execute("INSERT INTO runs (run_id, experiment_id, start_time) VALUES ($1, 1, 0)", uuid.uuid4().hex)
    finally:
        await conn.close()


def test_the_importer_needs_neither_mlflow_nor_sqlalchemy():
    code = ("import sys; sys.modules['mlflow'] = None; sys.modules['sqlalchemy'] = None; "
            "import gateway.store.mlflow_import, gateway.cli")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})


def test_a_mysql_store_without_pymysql_says_what_to_install(fresh_database_url, tmp_path):
    code = "import sys; sys.modules['pymysql'] = None; from gateway.cli import main; main(sys.argv[1:])"
    for target in (["--database-url", fresh_database_url], ["--data-dir", str(tmp_path / "data")]):
        result = subprocess.run(
            [sys.executable, "-c", code, "import-mlflow", "--from", f"mysql://user@127.0.0.1:{free_port()}/mlflow",
             *target, "--no-progress"],
            capture_output=True, text=True, timeout=120, env={**os.environ})
        assert result.returncode != 0
        assert "needs PyMySQL: pip install 'mlflow-ingestion-gateway[mysql]'" in result.stderr
    # Refused before an embedded database was made for the import.
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_the_source_url_keeps_no_password():
    from gateway.store.mlflow_import.source import MysqlSource, PostgresSource

    label = PostgresSource("postgresql+psycopg2://alice:s3cret@db.example:5433/mlflow").label
    assert label == "postgresql://db.example:5433/mlflow" and "s3cret" not in label
    label = MysqlSource("mysql+pymysql://alice:s3cret@db.example:3307/mlflow?charset=utf8mb4").label
    assert label == "mysql://db.example:3307/mlflow" and "s3cret" not in label


# MLflow's own migrations, stopped at the head of MLflow 2.22 (the last 2.x release).
MLFLOW_2_22_SCHEMA = """
import sys
import sqlalchemy
from alembic import command
from mlflow.store.db.utils import InitialBase, _get_alembic_config
engine = sqlalchemy.create_engine(sys.argv[1])
InitialBase.metadata.create_all(engine)
config = _get_alembic_config(sys.argv[1])
with engine.begin() as connection:
    config.attributes["connection"] = connection
    command.upgrade(config, "0584bdc529eb")
"""


def test_a_store_of_mlflow_2_22_imports(tmp_path, fresh_database_url):
    path = tmp_path / "mlflow-2.22.db"
    subprocess.run([sys.executable, "-c", MLFLOW_2_22_SCHEMA, f"sqlite:///{path}"], check=True, timeout=300,
                   capture_output=True)
    run_id = uuid.uuid4().hex
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO experiments VALUES (0, 'Default', 'mlflow-artifacts:/0', 'active', 1, 2)")
        conn.execute("INSERT INTO runs (run_uuid, name, source_type, user_id, status, start_time, end_time, "
                     "lifecycle_stage, artifact_uri, experiment_id, deleted_time) VALUES "
                     "(?, 'old', 'LOCAL', 'ann', 'FINISHED', 10, 20, 'deleted', 'mlflow-artifacts:/0/r', 0, 30)",
                     (run_id,))
        conn.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, ?)",
                         [("loss", 0.5, 11, run_id, 0, 0), ("loss", 0.0, 12, run_id, 1, 1)])
        conn.execute("INSERT INTO params VALUES ('lr', '0.1', ?)", (run_id,))
        conn.execute("INSERT INTO tags VALUES ('mlflow.runName', 'old', ?)", (run_id,))
        conn.execute("INSERT INTO datasets VALUES ('d1', 0, 'train', 'abc', 'local', 'file:///t', NULL, NULL)")
        conn.execute("INSERT INTO inputs VALUES ('i1', 'DATASET', 'd1', 'RUN', ?)", (run_id,))
        conn.execute("INSERT INTO input_tags VALUES ('i1', 'mlflow.data.context', 'training')")
        conn.execute("INSERT INTO registered_models VALUES ('m', 1, 2, NULL)")
        conn.execute("INSERT INTO model_versions VALUES ('m', 1, 1, 2, NULL, NULL, 'Staging', 'runs:/r/m', ?, "
                     "'READY', NULL, '', NULL)", (run_id,))
        conn.execute("INSERT INTO registered_model_aliases VALUES ('best', 1, 'm')")
    result = import_command(f"sqlite:///{path}", fresh_database_url)
    assert "MLflow schema 0584bdc529eb" in result.stdout
    found = run_apart(content(fresh_database_url))
    assert [(row[0].hex, *row[1:]) for row in found["runs"]] == [
        (run_id, 0, "old", "ann", "FINISHED", 10, 20, "mlflow-artifacts:/0/r", "deleted", 30)]
    assert [(row[2], row[3], row[4]) for row in found["points"]] == [(0, 11, "0.5"), (1, 12, "NaN")]
    assert [row[1:] for row in found["inputs"]] == [
        ("train", "abc", "local", "file:///t", None, None, '[{"key": "mlflow.data.context", "value": "training"}]', 1)]
    assert found["model_versions"] == [("m", 1, 1, 2, None, "Staging", "runs:/r/m", "runs:/r/m", run_id, "")]
    assert found["aliases"] == [("m", "best", 1)]
