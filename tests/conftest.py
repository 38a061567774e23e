"""Shared fixtures: a real PostgreSQL and a real gateway process on 127.0.0.1."""

from __future__ import annotations

import os

import pytest

from tests.pg import TestPostgres, run_apart
from tests.server import GatewayProcess


@pytest.fixture(scope="session", autouse=True)
def gateway_data_dir(tmp_path_factory):
    """Every gateway and CLI the tests start keeps its files (local artifacts) in a
    folder of the session's, never in the user's default data directory."""
    if "GATEWAY_DATA_DIR" in os.environ:
        yield os.environ["GATEWAY_DATA_DIR"]
        return
    folder = str(tmp_path_factory.mktemp("gateway-data"))
    os.environ["GATEWAY_DATA_DIR"] = folder
    yield folder
    del os.environ["GATEWAY_DATA_DIR"]


@pytest.fixture(scope="session")
def postgres():
    server = TestPostgres()
    yield server
    server.close()


@pytest.fixture(scope="session")
def mariadb():
    """A throwaway MariaDB server (for MLflow stores on MySQL), or None where Debian's mariadb-server
    is not installed."""
    from tests.mariadb import TestMariadb, installed

    if not installed():
        yield None
        return
    server = TestMariadb()
    yield server
    server.close()


@pytest.fixture(scope="session")
def database_url(postgres) -> str:
    """One database shared by the end-to-end tests of a session."""
    return run_apart(postgres.create_database())


@pytest.fixture
def fresh_database_url(postgres) -> str:
    """An empty database of the test's own."""
    return run_apart(postgres.create_database())


@pytest.fixture(scope="session")
def gateway(database_url):
    """A gateway serving the session database (commit mode)."""
    process = GatewayProcess(database_url)
    yield process
    process.stop()


@pytest.fixture
def tracking_uri(gateway, monkeypatch) -> str:
    """Point the stock mlflow client at the gateway."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", gateway.url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(gateway.url)
    yield gateway.url
    while mlflow.active_run() is not None:
        mlflow.end_run()
