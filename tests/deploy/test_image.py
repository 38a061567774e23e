"""The container image: built by deploy/build-image.sh, run on the host's network against the
tests' PostgreSQL, driven by the stock MLflow client."""

from __future__ import annotations

import json
import time

import pytest

from tests.deploy.podman import Container, container_database, podman, wait_healthy
from tests.server import free_port

pytestmark = pytest.mark.timeout(900)


def test_image_serves_the_stock_client_as_a_user_of_its_own(gateway_image, fresh_database_url):
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    inspected = json.loads(podman("image", "inspect", gateway_image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["gateway"] and config["Cmd"] == ["serve"]
    assert "/health" in " ".join(inspected["Healthcheck"]["Test"])

    mounts, url = container_database(fresh_database_url)
    port = free_port()
    started = time.monotonic()
    container = Container(
        gateway_image,
        flags=[*mounts, "-e", f"GATEWAY_DATABASE_URL={url}", "-e", "GATEWAY_HOST=127.0.0.1",
               "-e", f"GATEWAY_PORT={port}"],
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", timeout=60, alive=container.running)
        print(f"started to healthy in {time.monotonic() - started:.1f} s")
        assert container.exec("id", "-u").strip() == "10001"
        assert podman("healthcheck", "run", container.name, check=False).returncode == 0

        client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")
        experiment_id = client.create_experiment("deploy-image")
        run_id = client.create_run(experiment_id).info.run_id
        client.log_param(run_id, "lr", "0.01")
        for step in range(20):
            client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric("loss", 0.001, now, step) for step in range(20, 1020)])
        client.set_terminated(run_id)

        history = client.get_metric_history(run_id, "loss")
        assert [point.step for point in history] == list(range(1020))
        run = client.get_run(run_id)
        assert run.data.params == {"lr": "0.01"} and run.data.metrics == {"loss": 0.001}
        found = client.search_runs([experiment_id], "metrics.loss < 0.01 and params.lr = '0.01'")
        assert [r.info.run_id for r in found] == [run_id]

        container.stop(timeout=90)
        assert container.exit_code() == 0, container.logs()
    finally:
        container.remove()
    size = int(podman("image", "inspect", "--format", "{{.Size}}", gateway_image).stdout)
    print(f"image {gateway_image}: {size / 1e6:.0f} MB")


def test_image_refuses_to_listen_on_every_address_without_credentials(gateway_image):
    name = f"gateway-test-noauth-{free_port()}"
    try:
        result = podman("run", "--name", name, "--network", "none", gateway_image, check=False, timeout=120)
    finally:
        podman("rm", "-f", "-v", name, check=False)
    assert result.returncode == 1
    assert "host 0.0.0.0 is not a loopback address: set auth_file" in result.stderr


def test_image_serves_with_its_embedded_postgresql(gateway_image):
    """Without GATEWAY_DATABASE_URL the image starts PostgreSQL in its data volume, as its user."""
    from mlflow import MlflowClient

    port = free_port()
    container = Container(gateway_image, flags=["-e", "GATEWAY_HOST=127.0.0.1", "-e", f"GATEWAY_PORT={port}"])
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", timeout=90, alive=container.running)
        client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")
        run_id = client.create_run(client.create_experiment("embedded")).info.run_id
        client.log_metric(run_id, "loss", 0.5, step=1)
        assert [point.value for point in client.get_metric_history(run_id, "loss")] == [0.5]
        assert "embedded PostgreSQL in /var/lib/gateway/postgres" in container.logs()
        container.stop(timeout=90)
        assert container.exit_code() == 0, container.logs()
    finally:
        container.remove()
