"""Values as the tables hold them: times in epoch milliseconds, experiment ids as bigint,
run ids as uuid. Every store converts with these, and reports what cannot be stored
the way MLflow reports a missing entity."""

from __future__ import annotations

import re
import time

from gateway.mlflow import experiments, numbers, runs

# A run id the gateway can have stored: its uuid column, written as 32 lowercase hex digits.
RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def now_ms() -> int:
    return int(time.time() * 1000)


def parse_experiment_id(experiment_id: object) -> int:
    """An experiment id as the bigint it is stored as.

    Raises:
        InvalidParameter: not an integer (MLflow's message).
        NotFound: an integer no bigint column can hold, so no experiment has it.
    """
    value = numbers.experiment_id(experiment_id)
    if not numbers.in_int64(value):
        raise experiments.experiment_not_found(value)
    return value


def run_uuid(run_id: str) -> str:
    """Check that a run id can name a stored run (32 lowercase hex digits); NotFound, as MLflow, when it cannot."""
    if not RUN_ID.match(run_id):
        raise runs.run_not_found(run_id)
    return run_id
