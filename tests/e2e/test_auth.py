"""Authentication: every path without credentials, with wrong ones, with each scope; the stock client."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import uuid

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException

from gateway.api.auth import required_scope
from gateway.app import create_app
from gateway.auth import CredentialsFile
from gateway.config import Settings
from tests.server import GatewayProcess

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def credentials(tmp_path_factory):
    path = tmp_path_factory.mktemp("auth") / "credentials.json"
    file = CredentialsFile(path)
    tokens = {scope: file.add_token_user(f"{scope}-user", scope) for scope in ("read", "write", "admin")}
    file.add_password_user("basic-user", "write", PASSWORD)
    return path, tokens


@pytest.fixture(scope="module")
def secured(database_url, credentials, tmp_path_factory):
    destination = tmp_path_factory.mktemp("auth-artifacts")
    process = GatewayProcess(database_url, "--auth-file", str(credentials[0]), "--artifacts-destination", str(destination))
    yield process
    process.stop()


def registered_routes() -> list[tuple[str, str]]:
    """Every (method, path) the application registers, with a concrete path for each."""
    app = create_app(Settings(), "postgresql://unused")
    routes = []
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        path = re.sub(r"\{[^}]+\}", "x", route.resource.canonical)
        routes.append((route.method, path))
    return sorted(set(routes))


ROUTES = registered_routes()
PROTECTED = [(method, path) for method, path in ROUTES if path != "/health"]


def call(base: str, method: str, path: str, headers: dict | None = None) -> requests.Response:
    body = b"{}" if method != "GET" else None
    return requests.request(
        method, base + path, data=body, timeout=30,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def assert_unauthenticated(response: requests.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error_code"] == "UNAUTHENTICATED"
    assert set(response.json()) == {"error_code", "message"}
    assert "Bearer" in response.headers["WWW-Authenticate"]
    assert "Basic" in response.headers["WWW-Authenticate"]


def test_the_route_list_covers_the_api():
    paths = {path for _, path in ROUTES}
    assert "/api/2.0/mlflow/runs/log-metric" in paths
    assert "/ajax-api/2.0/mlflow/databricks/runs/delete-runs" in paths
    assert "/health" in paths


def test_health_is_open(secured):
    response = requests.get(secured.url + "/health", timeout=10)
    assert (response.status_code, response.text) == (200, "OK")


def test_every_path_without_credentials_is_401(secured):
    with requests.Session() as session:
        for method, path in PROTECTED:
            body = b"{}" if method != "GET" else None
            response = session.request(method, secured.url + path, data=body, timeout=30,
                                       headers={"Content-Type": "application/json"})
            assert_unauthenticated(response)
        # An unknown path does not reveal whether it exists.
        assert_unauthenticated(session.get(secured.url + "/api/2.0/mlflow/no/such/path", timeout=30))


@pytest.mark.parametrize(
    "header",
    [
        "Bearer mlgw_000000000000_" + "A" * 43,
        "Bearer not-a-token",
        "Bearer ",
        "Basic " + base64.b64encode(b"basic-user:wrong password").decode(),
        "Basic " + base64.b64encode(b"nobody:" + PASSWORD.encode()).decode(),
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic %%%not-base64",
        "Digest username=basic-user",
    ],
)
def test_bad_credentials_are_401(secured, header):
    response = call(secured.url, "POST", "/api/2.0/mlflow/runs/search", {"Authorization": header})
    assert_unauthenticated(response)
    assert "correct horse" not in response.text


def test_a_token_of_one_user_with_another_users_secret_is_401(secured, credentials):
    _, tokens = credentials
    read_id = tokens["read"].split("_")[1]
    admin_secret = tokens["admin"].split("_", 2)[2]
    response = call(secured.url, "GET", "/api/2.0/mlflow/experiments/search",
                    {"Authorization": f"Bearer mlgw_{read_id}_{admin_secret}"})
    assert_unauthenticated(response)


@pytest.mark.parametrize("scope", ["read", "write", "admin"])
def test_each_scope_on_every_path(secured, credentials, scope):
    _, tokens = credentials
    granted = ("read", "write", "admin").index(scope)
    headers = {"Authorization": "Bearer " + tokens[scope]}
    denied = allowed = 0
    with requests.Session() as session:
        for method, path in PROTECTED:
            body = b"{}" if method != "GET" else None
            response = session.request(method, secured.url + path, data=body, timeout=30,
                                       headers={"Content-Type": "application/json", **headers})
            needed = required_scope(method, path)
            if ("read", "write", "admin").index(needed) > granted:
                assert response.status_code == 403, (method, path, response.text)
                assert response.json() == {
                    "error_code": "PERMISSION_DENIED",
                    "message": f"User '{scope}-user' has scope '{scope}'; {method} {path} needs scope '{needed}'.",
                }
                denied += 1
            else:
                # Admitted: the request reaches its handler, which answers on its own terms.
                assert response.status_code not in (401, 403, 500), (method, path, response.text)
                allowed += 1
    assert allowed > 0
    assert (denied > 0) == (scope != "admin")


def test_scopes_of_paths():
    assert required_scope("GET", "/api/2.0/mlflow/runs/get") == "read"
    assert required_scope("POST", "/ajax-api/2.0/mlflow/runs/search") == "read"
    assert required_scope("POST", "/api/2.0/mlflow/runs/log-metric") == "write"
    assert required_scope("POST", "/api/2.0/mlflow/databricks/runs/delete-runs") == "admin"
    assert required_scope("POST", "/ajax-api/2.0/mlflow/databricks/runs/restore-runs") == "admin"
    assert required_scope("GET", "/metrics") == "read"
    assert required_scope("POST", "/api/2.0/mlflow/registered-models/get-latest-versions") == "read"
    assert required_scope("GET", "/api/2.0/mlflow/model-versions/search") == "read"
    assert required_scope("DELETE", "/api/2.0/mlflow/registered-models/alias") == "write"
    assert required_scope("PATCH", "/ajax-api/2.0/mlflow/model-versions/update") == "write"


def test_basic_auth_with_a_token_as_password(secured, credentials):
    _, tokens = credentials
    response = requests.get(secured.url + "/api/2.0/mlflow/experiments/search",
                            auth=("write-user", tokens["write"]), timeout=30)
    assert response.status_code == 200, response.text


def training_loop() -> None:
    mlflow.set_experiment("auth-" + uuid.uuid4().hex)
    with mlflow.start_run() as run:
        mlflow.log_param("lr", "0.1")
        for step in range(3):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, 1.0 / 3)]
    assert mlflow.get_run(run.info.run_id).data.params == {"lr": "0.1"}


@pytest.fixture
def stock_client(secured, monkeypatch):
    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(secured.url)
    yield monkeypatch
    while mlflow.active_run() is not None:
        mlflow.end_run()


def test_stock_client_with_tracking_token(stock_client, credentials):
    stock_client.setenv("MLFLOW_TRACKING_TOKEN", credentials[1]["write"])
    training_loop()


class AddN(mlflow.pyfunc.PythonModel):
    def __init__(self, n):
        self.n = n

    def predict(self, context, model_input, params=None):
        return [value + self.n for value in model_input]


def test_stock_client_with_tracking_token_logs_artifacts_and_a_model(stock_client, credentials, tmp_path):
    stock_client.setenv("MLFLOW_TRACKING_TOKEN", credentials[1]["write"])
    notes = tmp_path / "notes.txt"
    notes.write_text("written through an authenticated gateway")
    mlflow.set_experiment("auth-artifacts-" + uuid.uuid4().hex)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(notes))
        mlflow.log_dict({"lr": 0.1}, "config/params.json")
        info = mlflow.pyfunc.log_model(name="adder", python_model=AddN(2), pip_requirements=[])
    client = mlflow.MlflowClient()
    run_id = run.info.run_id
    assert [(f.path, f.is_dir) for f in client.list_artifacts(run_id)] == [("config", True), ("notes.txt", False)]
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/config/params.json") == {"lr": 0.1}
    assert client.get_logged_model(info.model_id).status.name == "READY"
    assert list(mlflow.pyfunc.load_model(info.model_uri).predict([1, 40])) == [3, 42]

    # A read token downloads and loads, but may not upload.
    stock_client.setenv("MLFLOW_TRACKING_TOKEN", credentials[1]["read"])
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes.txt") == "written through an authenticated gateway"
    assert list(mlflow.pyfunc.load_model(info.model_uri).predict([0])) == [2]
    with pytest.raises(requests.HTTPError) as raised:
        mlflow.MlflowClient().log_artifact(run_id, str(notes), artifact_path="denied")
    assert raised.value.response.status_code == 403
    assert raised.value.response.json()["error_code"] == "PERMISSION_DENIED"
    # Without credentials, nothing: not even the file.
    stock_client.delenv("MLFLOW_TRACKING_TOKEN")
    with pytest.raises(MlflowException) as raised:
        mlflow.artifacts.load_text(f"runs:/{run_id}/notes.txt")
    assert raised.value.error_code == "UNAUTHENTICATED"
    stock_client.setenv("MLFLOW_TRACKING_TOKEN", credentials[1]["read"])
    assert [f.path for f in mlflow.MlflowClient().list_artifacts(run_id)] == ["config", "notes.txt"]


def test_stock_client_with_username_and_password(stock_client):
    stock_client.setenv("MLFLOW_TRACKING_USERNAME", "basic-user")
    stock_client.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    training_loop()


def test_stock_client_errors(stock_client, credentials):
    with pytest.raises(MlflowException) as raised:
        mlflow.MlflowClient().search_experiments()
    assert raised.value.error_code == "UNAUTHENTICATED"
    stock_client.setenv("MLFLOW_TRACKING_TOKEN", credentials[1]["read"])
    assert mlflow.MlflowClient().search_experiments() is not None
    with pytest.raises(MlflowException) as raised:
        mlflow.MlflowClient().create_experiment("denied-" + uuid.uuid4().hex)
    assert raised.value.error_code == "PERMISSION_DENIED"


def test_refuses_a_public_address_without_auth(database_url):
    command = [sys.executable, "-m", "gateway", "serve", "--host", "0.0.0.0", "--port", "1",
               "--database-url", database_url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "--insecure-no-auth" in result.stderr


def test_refuses_a_missing_credentials_file(database_url, tmp_path):
    command = [sys.executable, "-m", "gateway", "serve", "--port", "1", "--database-url", database_url,
               "--auth-file", str(tmp_path / "absent.json")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "does not exist" in result.stderr
