"""deploy/compose.yaml: brought up with podman-compose, every service checked.

The test runs compose.yaml itself, with compose.override.yaml swapping in images made here
(no container registry is reachable): the gateway's own image, and PostgreSQL and Prometheus
from Debian's packages. Grafana is not packaged for Debian, so it does not run here: its
stand-in checks that its provisioning is mounted, and the files are checked to refer to the
dashboard and to the Prometheus service.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from gateway.config import Settings
from tests.deploy.podman import DEPLOY, podman, podman_env, unique_name, wait_healthy
from tests.deploy.prometheus import api
from tests.server import free_port

pytestmark = pytest.mark.timeout(900)

HERE = Path(__file__).resolve().parent
COMPOSE = DEPLOY / "compose.yaml"
GRAFANA = DEPLOY / "grafana"


def compose_file() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def mount_target(service: dict, source: str) -> str:
    for volume in service["volumes"]:
        parts = volume.split(":")
        if parts[0] == source:
            return parts[1]
    raise AssertionError(f"{source} is not mounted: {service['volumes']}")


def test_compose_services_refer_to_each_other():
    services = compose_file()["services"]
    assert set(services) == {"postgres", "gateway", "prometheus", "grafana"}

    gateway_env = services["gateway"]["environment"]
    known = {"GATEWAY_" + name.upper() for name in Settings.__struct_fields__}
    assert set(gateway_env) <= known, set(gateway_env) - known
    assert services["gateway"]["build"]["args"]["EXTRAS"] == "ui"
    assert (DEPLOY.parent / services["gateway"]["build"]["dockerfile"]).exists()
    postgres_env = services["postgres"]["environment"]
    assert gateway_env["GATEWAY_DATABASE_URL"] == (
        f"postgresql://{postgres_env['POSTGRES_USER']}:{postgres_env['POSTGRES_PASSWORD']}@postgres:5432/"
        f"{postgres_env['POSTGRES_DB']}"
    )

    prometheus_config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert mount_target(services["prometheus"], "./prometheus/prometheus.yml") == "/etc/prometheus/prometheus.yml"
    rules_target = mount_target(services["prometheus"], "./prometheus/gateway-rules.yml")
    assert [str(Path("/etc/prometheus") / f) for f in prometheus_config["rule_files"]] == [rules_target]
    [scrape] = prometheus_config["scrape_configs"]
    assert scrape["static_configs"][0]["targets"] == [f"gateway:{gateway_env['GATEWAY_PORT']}"]
    assert scrape["job_name"] == "mlflow-gateway"  # the job GatewayTargetDown watches

    grafana = services["grafana"]
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    [datasource] = datasources["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    assert mount_target(grafana, "./grafana/provisioning/datasources") == "/etc/grafana/provisioning/datasources"
    assert mount_target(grafana, "./grafana/provisioning/dashboards") == "/etc/grafana/provisioning/dashboards"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "mlflow-gateway.yaml").read_text())
    [provider] = providers["providers"]
    dashboards_target = mount_target(grafana, "./grafana/dashboards")
    assert provider["type"] == "file" and provider["options"]["path"] == dashboards_target
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == (
        f"{dashboards_target}/mlflow-gateway.json"
    )

    dashboard = json.loads((GRAFANA / "dashboards" / "mlflow-gateway.json").read_text())
    [variable] = dashboard["templating"]["list"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(target["expr"] for target in panel["targets"]), panel["title"]


def test_compose_brings_up_every_service(gateway_image, services_image):
    from mlflow import MlflowClient

    if shutil.which("podman-compose") is None:
        pytest.fail("podman-compose is not installed (.ci/run installs it: apt-get install podman-compose)")
    project = unique_name("gateway-compose").replace("-", "")
    ports = {"GATEWAY_PORT": free_port(), "PROMETHEUS_PORT": free_port(), "GRAFANA_PORT": free_port()}
    env = {**podman_env(), "SERVICES_IMAGE": services_image, "GATEWAY_IMAGE": gateway_image,
           **{name: str(port) for name, port in ports.items()}}
    compose = ["podman-compose", "-p", project, "-f", str(COMPOSE), "-f", str(HERE / "compose.override.yaml")]

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([*compose, *args], capture_output=True, text=True, env=env, timeout=timeout)

    def container(service: str) -> str:
        return f"{project}_{service}_1"

    try:
        up = run("up", "-d", "--no-build")
        assert up.returncode == 0, up.stdout + up.stderr
        gateway_url = f"http://127.0.0.1:{ports['GATEWAY_PORT']}"
        # The gateway may start before PostgreSQL accepts connections: it exits, and compose's
        # restart policy starts it again.
        wait_healthy(gateway_url + "/health", timeout=120)
        client = MlflowClient(tracking_uri=gateway_url)
        experiment_id = client.create_experiment("compose")
        run_id = client.create_run(experiment_id).info.run_id
        for step in range(50):
            client.log_metric(run_id, "loss", 1 / (step + 1), step=step)
        assert len(client.get_metric_history(run_id, "loss")) == 50
        with urllib.request.urlopen(gateway_url + "/", timeout=10) as page:
            assert b"static-files" in page.read()  # MLflow's UI (the ui extra)
        assert podman("exec", container("gateway"), "id", "-u").stdout.strip() == "10001"

        probe = podman("exec", container("postgres"), "pg_isready", "-U", "mlflow", "-d", "mlflow", check=False)
        assert probe.returncode == 0, probe.stdout + probe.stderr

        prometheus_url = f"http://127.0.0.1:{ports['PROMETHEUS_PORT']}"
        wait_healthy(prometheus_url + "/-/ready", timeout=60)
        assert sum(len(group["rules"]) for group in api(prometheus_url, "rules")["groups"]) == 11
        deadline = time.monotonic() + 60  # the scrape interval is 15 s
        while True:
            ingested = api(prometheus_url, "query", query='gateway_points_ingested_total{job="mlflow-gateway"}')
            if ingested["result"] and float(ingested["result"][0]["value"][1]) >= 50:
                break
            assert time.monotonic() < deadline, f"Prometheus did not scrape the writes: {ingested}"
            time.sleep(1)
        [target] = api(prometheus_url, "targets")["activeTargets"]
        assert target["labels"]["instance"] == "gateway:5000" and target["health"] == "up"

        grafana_log = podman("logs", container("grafana")).stdout
        assert "provisioning mounted" in grafana_log
        for service in ("postgres", "gateway", "prometheus", "grafana"):
            state = podman("inspect", "--format", "{{.State.Status}}", container(service)).stdout.strip()
            assert state == "running", f"{service}: {state}"
    finally:
        down = run("down", "-v", "-t", "10")
        podman("network", "rm", "-f", f"{project}_default", check=False)
        assert down.returncode == 0, down.stdout + down.stderr
