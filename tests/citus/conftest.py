"""The tests of tests/citus/ run on a Citus cluster (tests/citus_cluster.py): the fixtures that
hand out databases and the shared gateway are replaced by ones on the cluster's coordinator."""

from __future__ import annotations

import pytest

from tests.citus_cluster import TestCitus, unavailable_reason
from tests.pg import run_apart
from tests.server import GatewayProcess


@pytest.fixture(scope="session")
def citus():
    """The Citus cluster of the session; the tests are skipped, saying how to get one, without it."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    cluster = TestCitus()
    yield cluster
    cluster.close()


@pytest.fixture(scope="session")
def postgres(citus):
    return citus


@pytest.fixture(scope="session")
def database_url(citus) -> str:
    """One Citus database shared by the tests of tests/citus/."""
    return run_apart(citus.create_database())


@pytest.fixture
def fresh_database_url(citus) -> str:
    """An empty Citus database of the test's own."""
    return run_apart(citus.create_database())


@pytest.fixture(scope="session")
def gateway(database_url):
    """A gateway serving the session's Citus database (commit mode)."""
    process = GatewayProcess(database_url)
    yield process
    process.stop()
