"""The runs CSV: the HTTP endpoint and `gateway export-runs-csv`, end to end."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import uuid

import mlflow
import pytest
import requests
from mlflow import MlflowClient

API = "/api/2.0/mlflow"
TRICKY = 'a, "quoted"\nsecond line, \\ and ;-- \'%_'


@pytest.fixture(scope="module")
def experiments(gateway):
    """Two experiments: three runs in the first, one in the second, one deleted run."""
    mlflow.set_tracking_uri(gateway.url)
    client = MlflowClient(gateway.url)
    first = client.create_experiment("csv-" + uuid.uuid4().hex)
    second = client.create_experiment("csv-" + uuid.uuid4().hex)
    runs = {}

    def new_run(experiment_id, name, start_time, params, metrics, tags=None):
        run = client.create_run(
            experiment_id,
            run_name=name,
            start_time=start_time,
            tags={"mlflow.source.type": "LOCAL", "mlflow.source.name": "train.py", "mlflow.user": "alice", **(tags or {})},
        )
        run_id = run.info.run_id
        for key, value in params.items():
            client.log_param(run_id, key, value)
        for key, points in metrics.items():
            for step, value in enumerate(points):
                client.log_metric(run_id, key, value, step=step, timestamp=1700000000000 + step)
        runs[name] = run_id
        return run_id

    new_run(first, "alpha", 1000, {"lr": "0.1", "note": TRICKY}, {"loss": [0.9, 0.5], "acc": [0.7]})
    new_run(first, "beta", 2000, {"lr": "0.2", "opt key": "adam"}, {"loss": [0.3, 0.4]})
    new_run(first, "gamma", 3000, {}, {"acc": [float("nan")]})
    new_run(second, "delta", 4000, {"lr": "0.3"}, {"f1": [1e-20]})
    gone = new_run(first, "gone", 5000, {"secret": "x"}, {})
    client.delete_run(gone)
    client.set_terminated(runs["beta"], "FINISHED")
    return {"first": first, "second": second, "runs": runs}


HEADER = ["Run ID", "Name", "Source Type", "Source Name", "User", "Status"]


def expected_rows(runs):
    return [
        HEADER + ["lr", "note", "opt key", "acc", "f1", "loss"],
        [runs["delta"], "delta", "LOCAL", "train.py", "", "RUNNING", "0.3", "", "", "", "1e-20", ""],
        [runs["gamma"], "gamma", "LOCAL", "train.py", "", "RUNNING", "", "", "", "NaN", "", ""],
        [runs["beta"], "beta", "LOCAL", "train.py", "", "FINISHED", "0.2", "", "adam", "", "", "0.4"],
        [runs["alpha"], "alpha", "LOCAL", "train.py", "", "RUNNING", "0.1", TRICKY, "", "0.7", "", "0.5"],
    ]


def parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def user_of(rows):
    # The client sends the user of the process running the tests; the row keeps it.
    return {row[4] for row in rows[1:]}


def without_user(rows):
    return [row[:4] + row[5:] for row in rows]


def test_http_export_streams_the_runs_csv(gateway, experiments):
    response = requests.get(
        gateway.url + API + "/runs/export-csv",
        params=[("experiment_ids", experiments["first"]), ("experiment_ids", experiments["second"])],
        timeout=30,
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == 'attachment; filename="runs.csv"'
    assert response.headers["Transfer-Encoding"] == "chunked"
    rows = parse(response.content.decode())
    assert without_user(rows) == without_user(expected_rows(experiments["runs"]))
    assert len(user_of(rows)) == 1 and "" not in user_of(rows)
    assert rows[4][7] == TRICKY


def test_http_export_with_filter_order_by_and_view_type(gateway, experiments):
    body = {
        "experiment_ids": [experiments["first"]],
        "filter": "params.lr LIKE '0.%' AND MIN(metrics.loss) < 0.45",
        "order_by": ["metrics.loss DESC"],
    }
    response = requests.post(gateway.url + API + "/runs/export-csv", json=body, timeout=30)
    assert response.status_code == 200
    rows = parse(response.text)
    # Only the matching runs' keys make columns.
    assert rows[0] == HEADER + ["lr", "opt key", "loss"]
    assert [row[1] for row in rows[1:]] == ["beta"]

    deleted = requests.post(
        gateway.url + API + "/runs/export-csv",
        json={"experiment_ids": [experiments["first"]], "run_view_type": "DELETED_ONLY"},
        timeout=30,
    )
    assert [row[1] for row in parse(deleted.text)] == ["Name", "gone"]
    assert parse(deleted.text)[0] == HEADER + ["secret"]


def test_http_export_errors_are_mlflow_json(gateway, experiments):
    bad_filter = requests.get(
        gateway.url + API + "/runs/export-csv",
        params={"experiment_ids": experiments["first"], "filter": "metrics.loss >> 1"},
        timeout=30,
    )
    assert bad_filter.status_code == 400
    assert bad_filter.json() == {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": "Invalid comparator '>>' not one of '{'=', '!=', '>', '>=', '<', '<='}",
    }
    missing = requests.post(gateway.url + API + "/runs/export-csv", json={}, timeout=30)
    assert missing.status_code == 400
    assert missing.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert missing.json()["message"].startswith("Missing value for required parameter 'experiment_ids'.")


def run_cli(database_url, *args):
    return subprocess.run(
        [sys.executable, "-m", "gateway", "export-runs-csv", "--database-url", database_url, *args],
        capture_output=True,
        timeout=120,
    )


def test_cli_writes_the_same_csv_as_the_endpoint(gateway, database_url, experiments, tmp_path):
    first, second = experiments["first"], experiments["second"]
    output = tmp_path / "runs.csv"
    result = run_cli(database_url, "--experiment-ids", first, second, "--output", str(output))
    assert result.returncode == 0, result.stderr.decode()
    assert "exported 4 run(s)" in result.stderr.decode()
    over_http = requests.get(
        gateway.url + API + "/runs/export-csv",
        params=[("experiment_ids", first), ("experiment_ids", second)],
        timeout=30,
    )
    assert output.read_bytes() == over_http.content

    to_stdout = run_cli(
        database_url, "--experiment-ids", first, "--filter",
        f"attributes.run_id IN ('{experiments['runs']['gamma']}', '{experiments['runs']['alpha']}')",
        "--order-by", "attributes.run_name", "--run-view-type", "ALL",
    )
    assert to_stdout.returncode == 0, to_stdout.stderr.decode()
    assert [row[1] for row in parse(to_stdout.stdout.decode())] == ["Name", "alpha", "gamma"]


def test_cli_rejects_a_bad_filter(database_url, experiments):
    result = run_cli(database_url, "--experiment-ids", experiments["first"], "--filter", "params.lr < '1'")
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode().strip().endswith(
        "gateway: INVALID_PARAMETER_VALUE: Invalid comparator '<' not one of "
        "'{'=', '!=', 'LIKE', 'ILIKE', 'IS NULL', 'IS NOT NULL'}'"
    )
