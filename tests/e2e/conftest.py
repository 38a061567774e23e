"""Fixtures of the end-to-end tests that need a stock `mlflow server`."""

from __future__ import annotations

import pytest

from tests.mlflow_server import MlflowServerProcess


@pytest.fixture(scope="session")
def mlflow_server():
    """A stock `mlflow server` (one worker, SQLite in a temporary directory), shared by the session."""
    server = MlflowServerProcess(startup_timeout=300)
    yield server
    server.stop()
