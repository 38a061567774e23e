"""Raw HTTP on the Databricks bulk endpoints: every limit, every error, and the time boundaries."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
import requests

API = "/api/2.0/mlflow"
DELETE = "/databricks/runs/delete-runs"
RESTORE = "/databricks/runs/restore-runs"
MISSING = "Missing value for required parameter '{}'. See the API docs for more information about request parameters."
BAD_TYPE = (
    "Invalid value {} for parameter '{}' supplied:  Hint: Value was of type '{}'. "
    "See the API docs for more information about request parameters."
)
MAX_RUNS = "Invalid value {} for parameter 'max_runs' supplied: max_runs must be between 1 and 10000."


def post(gateway, path: str, body=None, **kwargs) -> requests.Response:
    if body is not None:
        kwargs["json"] = body
    return requests.post(gateway.url + API + path, timeout=30, **kwargs)


def error_of(response: requests.Response) -> tuple[int, str, str]:
    body = response.json()
    assert set(body) == {"error_code", "message"}
    return response.status_code, body["error_code"], body["message"]


@pytest.fixture(scope="module")
def experiment_id(gateway) -> str:
    return post(gateway, "/experiments/create", {"name": "bulk-" + uuid.uuid4().hex}).json()["experiment_id"]


def invalid(message: str) -> tuple[int, str, str]:
    return 400, "INVALID_PARAMETER_VALUE", message


@pytest.mark.parametrize("path, time_field", [(DELETE, "max_timestamp_millis"), (RESTORE, "min_timestamp_millis")])
@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"max_runs": 0}, invalid(MAX_RUNS.format(0))),
        ({"max_runs": -1}, invalid(MAX_RUNS.format(-1))),
        ({"max_runs": 10001}, invalid(MAX_RUNS.format(10001))),
        ({"max_runs": 2**70}, invalid(BAD_TYPE.format(2**70, "max_runs", "int"))),
        ({"max_runs": "abc"}, invalid(BAD_TYPE.format('"abc"', "max_runs", "str"))),
        ({"max_runs": 2.5}, invalid(BAD_TYPE.format(2.5, "max_runs", "float"))),
        ({"max_runs": True}, invalid(BAD_TYPE.format("true", "max_runs", "bool"))),
        ({"experiment_id": None}, invalid(MISSING.format("experiment_id"))),
        ({"experiment_id": ""}, invalid(MISSING.format("experiment_id"))),
        ({"experiment_id": [1]}, invalid(BAD_TYPE.format("[1]", "experiment_id", "list"))),
        ({"experiment_id": True}, invalid(BAD_TYPE.format("true", "experiment_id", "bool"))),
        ({"experiment_id": "abc"}, invalid("Invalid experiment ID 'abc'. Experiment ID must be a valid integer.")),
        ({"experiment_id": "987654321"}, (404, "RESOURCE_DOES_NOT_EXIST", "No Experiment with id=987654321 exists")),
        ({"experiment_id": 987654321}, (404, "RESOURCE_DOES_NOT_EXIST", "No Experiment with id=987654321 exists")),
        ({"time": None}, invalid(MISSING.format("{time}"))),
        ({"time": "soon"}, invalid(BAD_TYPE.format('"soon"', "{time}", "str"))),
        ({"time": 1.5}, invalid(BAD_TYPE.format(1.5, "{time}", "float"))),
        ({"time": 2**70}, invalid(BAD_TYPE.format(2**70, "{time}", "int"))),
    ],
)
def test_bulk_limits_and_errors(gateway, experiment_id, path, time_field, fields, expected):
    body = {"experiment_id": experiment_id, time_field: 0}
    for name, value in fields.items():
        name = time_field if name == "time" else name
        if value is None:
            body.pop(name)
        else:
            body[name] = value
    status, code, message = expected
    assert error_of(post(gateway, path, body)) == (status, code, message.format(time=time_field))


@pytest.mark.parametrize("path", [DELETE, RESTORE])
def test_bulk_bodies_and_methods(gateway, path):
    headers = {"Content-Type": "application/json"}
    status, code, message = error_of(post(gateway, path, data=b'{"experiment_id": ', headers=headers))
    assert (status, code) == (400, "INVALID_PARAMETER_VALUE") and message.startswith("Malformed JSON in request body")
    assert error_of(post(gateway, path, data=b"[1]", headers=headers)) == invalid(
        "Invalid request body: Expected `object`, got `array`")
    assert error_of(post(gateway, path, data=b"{}", headers={"Content-Type": "text/plain"})) == invalid(
        "Bad Request. Content-Type must be one of ['application/json'].")
    assert error_of(post(gateway, path, {})) == invalid(MISSING.format("experiment_id"))
    assert error_of(requests.get(gateway.url + API + path, timeout=30)) == (
        405, "BAD_REQUEST", f"The method GET is not allowed for {API}{path}")


def test_bulk_time_boundaries_defaults_and_scope(gateway, database_url):
    experiment_id = post(gateway, "/experiments/create", {"name": "bulk-" + uuid.uuid4().hex}).json()["experiment_id"]
    other_experiment = post(gateway, "/experiments/create", {"name": "bulk-" + uuid.uuid4().hex}).json()["experiment_id"]
    runs = [post(gateway, "/runs/create", {"experiment_id": experiment_id, "start_time": 1000 + i}).json()["run"]["info"]["run_id"]
            for i in range(4)]
    bystander = post(gateway, "/runs/create", {"experiment_id": other_experiment, "start_time": 1000}).json()["run"]["info"]["run_id"]

    # Created at or before the time; the time may come as a string (protobuf JSON int64), max_runs as null.
    deleted = post(gateway, DELETE, {"experiment_id": experiment_id, "max_timestamp_millis": "1001", "max_runs": None})
    assert deleted.json() == {"runs_deleted": 2}
    # Runs already deleted are not counted again; numbers are accepted for the id (MLFlowClient.jl).
    assert post(gateway, DELETE, {"experiment_id": int(experiment_id), "max_timestamp_millis": 1001}).json() == {
        "runs_deleted": 0}

    async def deleted_times() -> dict[str, int | None]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch("SELECT run_id, deleted_time FROM runs WHERE run_id = ANY($1::uuid[])", runs)
        finally:
            await conn.close()
        return {row["run_id"].hex: row["deleted_time"] for row in rows}

    times = asyncio.run(deleted_times())
    assert times[runs[2]] is None and times[runs[3]] is None
    deleted_at = times[runs[0]]
    assert deleted_at is not None and times[runs[1]] == deleted_at

    # Deleted at or after the time: one millisecond later restores nothing, the exact time both.
    assert post(gateway, RESTORE, {"experiment_id": experiment_id, "min_timestamp_millis": deleted_at + 1}).json() == {
        "runs_restored": 0}
    assert post(gateway, RESTORE, {"experiment_id": experiment_id, "min_timestamp_millis": deleted_at}).json() == {
        "runs_restored": 2}
    assert set(asyncio.run(deleted_times()).values()) == {None}
    # max_runs defaults to 10000, and other experiments are never touched.
    assert post(gateway, DELETE, {"experiment_id": experiment_id, "max_timestamp_millis": 10**13}).json() == {
        "runs_deleted": 4}
    got = requests.get(gateway.url + API + "/runs/get", params={"run_id": bystander}, timeout=30).json()
    assert got["run"]["info"]["lifecycle_stage"] == "active"
    assert post(gateway, RESTORE, {"experiment_id": experiment_id, "min_timestamp_millis": 0, "max_runs": 10000}).json() == {
        "runs_restored": 4}
    # The same paths under /ajax-api.
    ajax = requests.post(gateway.url + "/ajax-api/2.0/mlflow" + DELETE, timeout=30,
                         json={"experiment_id": experiment_id, "max_timestamp_millis": 1000, "max_runs": 1})
    assert ajax.json() == {"runs_deleted": 1}
