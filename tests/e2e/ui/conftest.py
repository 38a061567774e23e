"""Fixtures of the browser tests: a gateway on a database of its own, seeded through
the stock client, and one headless Chromium for the session.

With UI_TESTS_AGAINST=mlflow the same tests drive a stock `mlflow server` instead,
which tells a fault of the gateway from a fault of MLflow's UI itself.
"""

from __future__ import annotations

import os

import pytest

from tests.e2e.ui.browser import chromium
from tests.e2e.ui.seed import Seeded, seed
from tests.mlflow_server import MlflowServerProcess
from tests.pg import run_apart
from tests.server import GatewayProcess


def new_database(postgres) -> str:
    """A new empty database (made apart from the event loop Playwright keeps on this thread)."""
    return run_apart(postgres.create_database())


@pytest.fixture(scope="session")
def ui_server(postgres):
    """The server the browser talks to, with an empty database of its own."""
    if os.environ.get("UI_TESTS_AGAINST") == "mlflow":
        server = MlflowServerProcess()
    else:
        server = GatewayProcess(new_database(postgres))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seeded(ui_server, tmp_path_factory) -> Seeded:
    return seed(ui_server.url, tmp_path_factory.mktemp("ui-seed"))


# One browser a module, closed at its end: Playwright's sync API runs an event loop on the
# test thread while a browser is open, and the asyncio tests that follow need the thread.
@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser
