"""Tests of the suite run again on Citus, unchanged."""

from tests.integration.conftest import pool  # noqa: F401
from tests.integration.test_writer import *  # noqa: F401,F403
from tests.e2e.test_client_training_loop import *  # noqa: F401,F403
