"""Fixtures of the end-to-end tests that need a stock `mlflow server`."""

from __future__ import annotations

import pytest

from tests.relay_processes import MlflowServerProcess


@pytest.fixture(scope="session")
def mlflow_server():
    """A stock `mlflow server` (one worker, SQLite in a temporary directory), shared by the session."""
    server = MlflowServerProcess()
    yield server
    server.kill()  # its SQLite store is thrown away: no clean shutdown to wait for
