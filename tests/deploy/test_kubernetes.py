"""deploy/kubernetes/: the manifests parse and refer to each other; the Pods run under podman.

`podman play kube` runs the gateway's Deployment and the training pod with its relay sidecar,
with what a single machine needs instead of a cluster: the host's network (ports chosen by the
test, on 127.0.0.1), Secrets handed over as podman secrets, and the credentials Secret volume
as a host directory holding the same file (podman 4.3 has no Secret volumes). The Service,
PodDisruptionBudget and ServiceMonitor have no podman equivalent: they are checked against
the Deployment instead.
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from gateway.config import Settings
from gateway.relay.settings import RelaySettings
from tests.deploy.podman import DEPLOY, container_database, podman, unique_name, wait_healthy
from tests.server import free_port

pytestmark = pytest.mark.timeout(900)

KUBERNETES = DEPLOY / "kubernetes"
FINAL_FLUSH_S = 60  # gateway/app.py: the final flush waits max(60 s, request_deadline_s)
SHUTDOWN_TIMEOUT_S = 5  # gateway/serving.py: open connections get this long


def documents(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((KUBERNETES / name).read_text()) if doc]


def by_kind(docs: list[dict]) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def env_of(container: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container.get("env", [])}


def secret_values(secret: dict) -> dict[str, str]:
    values = {key: base64.b64decode(value).decode() for key, value in secret.get("data", {}).items()}
    values.update(secret.get("stringData", {}))
    return values


def test_kustomization_lists_every_manifest_of_the_gateway():
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == ["gateway.yaml", "secret.yaml"]
    for name in kustomization["resources"]:
        assert documents(name)


def test_manifests_refer_to_each_other():
    kinds = by_kind(documents("gateway.yaml") + documents("secret.yaml"))
    [deployment] = kinds["Deployment"]
    [service] = kinds["Service"]
    [budget] = kinds["PodDisruptionBudget"]
    [monitor] = kinds["ServiceMonitor"]
    secrets = {secret["metadata"]["name"]: secret_values(secret) for secret in kinds["Secret"]}

    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()

    [container] = pod["spec"]["containers"]
    env = env_of(container)
    known = {"GATEWAY_" + name.upper() for name in Settings.__struct_fields__}
    assert set(env) <= known, set(env) - known
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["http"] == int(env["GATEWAY_PORT"]["value"])
    [service_port] = service["spec"]["ports"]
    assert service_port["targetPort"] in ports and service_port["name"] == "http"
    assert [endpoint["port"] for endpoint in monitor["spec"]["endpoints"]] == [service_port["name"]]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}, probe

    # Settings the manifest gives must pass the gateway's own validation.
    plain = {name: item["value"] for name, item in env.items() if "value" in item}
    Settings.from_env({**plain, "GATEWAY_DATABASE_URL": "postgresql://x@db/x"})

    for name, item in env.items():
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["key"] in secrets[ref["name"]], name
    for endpoint in monitor["spec"]["endpoints"]:
        credentials = endpoint["authorization"]["credentials"]
        assert credentials["key"] in secrets[credentials["name"]]

    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    auth_file = Path(env["GATEWAY_AUTH_FILE"]["value"])
    credentials_volume = volumes[mounts[str(auth_file.parent)]]["secret"]
    assert credentials_volume["secretName"] in secrets
    assert [item["path"] for item in credentials_volume["items"]] == [auth_file.name]
    assert credentials_volume["items"][0]["key"] in secrets[credentials_volume["secretName"]]
    json.loads(secrets[credentials_volume["secretName"]][credentials_volume["items"][0]["key"]])

    # The final flush must finish inside the grace period, after the preStop pause.
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    deadline = float(env["GATEWAY_REQUEST_DEADLINE_S"]["value"])
    assert pod["spec"]["terminationGracePeriodSeconds"] > pre_stop + SHUTDOWN_TIMEOUT_S + max(FINAL_FLUSH_S, deadline)
    assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]["cpu"]
    assert pod["spec"]["securityContext"]["runAsUser"] == 10001


def test_relay_sidecar_example_is_consistent():
    [job] = documents("training-job-with-relay.yaml")
    pod = job["spec"]["template"]["spec"]
    [relay] = pod["initContainers"]
    assert relay["restartPolicy"] == "Always"  # a native sidecar
    env = env_of(relay)
    known = {"GATEWAY_RELAY_" + name.upper() for name in RelaySettings.__struct_fields__}
    relay_env = {name for name in env if name.startswith("GATEWAY_")}
    assert relay_env <= known, relay_env - known
    port = int(env["GATEWAY_RELAY_PORT"]["value"])
    for probe in ("startupProbe", "readinessProbe"):
        assert relay[probe]["httpGet"]["port"] == port
    [trainer] = pod["containers"]
    assert env_of(trainer)["MLFLOW_TRACKING_URI"]["value"] == f"http://127.0.0.1:{port}"
    assert pod["terminationGracePeriodSeconds"] > float(env["GATEWAY_RELAY_SHUTDOWN_DRAIN_S"]["value"])
    spool = {mount["name"]: mount["mountPath"] for mount in relay["volumeMounts"]}
    assert env["GATEWAY_RELAY_SPOOL_DIR"]["value"] in spool.values()


class Kube:
    """Pods and secrets made with podman for one test, all removed by :meth:`down`."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files: list[Path] = []
        self.secrets: list[str] = []

    def secret(self, manifest: dict, name: str) -> None:
        """A Kubernetes Secret as a podman secret (a JSON object of base64 values), for secretKeyRef."""
        values = {key: base64.b64encode(value.encode()).decode() for key, value in secret_values(manifest).items()}
        path = self.folder / f"secret-{name}.json"
        path.write_text(json.dumps(values))
        podman("secret", "create", name, str(path))
        self.secrets.append(name)

    def play(self, manifest: dict) -> str:
        path = self.folder / f"{manifest['metadata']['name']}.yaml"
        path.write_text(json.dumps(manifest))  # JSON on one line is YAML, and unambiguous
        self.files.append(path)
        result = podman("play", "kube", str(path), check=False, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def down(self) -> None:
        for path in reversed(self.files):
            podman("play", "kube", "--down", str(path), check=False, timeout=180)
        for name in self.secrets:
            podman("secret", "rm", name, check=False)


def add_user(auth_file: Path, name: str, scope: str) -> str:
    result = subprocess.run(
        ["python", "-m", "gateway", "users", "add", name, "--scope", scope, "--auth-file", str(auth_file)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return result.stdout.strip()


def set_env(container: dict, name: str, value: str) -> None:
    container["env"] = [item for item in container.get("env", []) if item["name"] != name]
    container["env"].append({"name": name, "value": value})


def test_gateway_deployment_and_training_pod_run_under_podman(gateway_image, fresh_database_url, monkeypatch):
    from mlflow import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="gateway-test-kube-"))
    kube = Kube(folder)
    suffix = unique_name("k").split("-")[1]
    try:
        # The credentials file, made as secret.yaml says, with a writer and a scraper.
        credentials_dir = folder / "credentials"
        credentials_dir.mkdir()
        credentials_dir.chmod(0o755)
        trainer_token = add_user(credentials_dir / "credentials", "trainer", "write")
        scrape_token = add_user(credentials_dir / "credentials", "prometheus", "read")
        (credentials_dir / "credentials").chmod(0o644)  # as a Secret volume's files are by default

        kinds = by_kind(documents("gateway.yaml") + documents("secret.yaml"))
        [deployment] = copy.deepcopy(kinds["Deployment"])
        gateway_secret = next(s for s in kinds["Secret"] if s["metadata"]["name"] == "mlflow-gateway")
        mounts, database_url = container_database(fresh_database_url)
        secret = copy.deepcopy(gateway_secret)
        secret["stringData"] = {"database-url": database_url,
                                "credentials": (credentials_dir / "credentials").read_text()}
        kube.secret(secret, f"mlflow-gateway-{suffix}")

        port = free_port()
        deployment["metadata"]["name"] = f"mlflow-gateway-{suffix}"
        deployment["spec"]["replicas"] = 1
        pod = deployment["spec"]["template"]["spec"]
        pod["hostNetwork"] = True
        [container] = pod["containers"]
        container["image"] = gateway_image
        set_env(container, "GATEWAY_HOST", "127.0.0.1")
        set_env(container, "GATEWAY_PORT", str(port))
        # On the host's network podman maps no ports: the named port goes, its probes name the number.
        container.pop("ports")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            container[probe]["httpGet"]["port"] = port
        for item in container["env"]:
            if "valueFrom" in item:
                item["valueFrom"]["secretKeyRef"]["name"] = f"mlflow-gateway-{suffix}"
        for volume in pod["volumes"]:
            if volume["name"] == "credentials":
                volume.pop("secret")
                volume["hostPath"] = {"path": str(credentials_dir), "type": "Directory"}
        if mounts:  # the tests' PostgreSQL listens on a unix socket: hand the socket over
            socket, inside = mounts[1].split(":")
            pod["volumes"].append({"name": "postgres-socket", "hostPath": {"path": socket, "type": "Socket"}})
            container["volumeMounts"].append({"name": "postgres-socket", "mountPath": inside})

        started = time.monotonic()
        kube.play(deployment)
        gateway_url = f"http://127.0.0.1:{port}"
        wait_healthy(gateway_url + "/health", timeout=90)
        print(f"Deployment pod healthy {time.monotonic() - started:.1f} s after podman play kube")
        pod_name = f"mlflow-gateway-{suffix}-pod-0"
        gateway_container = f"{pod_name}-gateway"
        assert podman("exec", gateway_container, "id", "-u").stdout.strip() == "10001"
        readonly = podman("exec", gateway_container, "touch", "/opt/gateway/x", check=False)
        assert readonly.returncode != 0 and "Read-only file system" in readonly.stderr

        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(gateway_url + "/metrics", timeout=10)
        assert refused.value.code == 401
        scrape = urllib.request.Request(gateway_url + "/metrics", headers={"Authorization": f"Bearer {scrape_token}"})
        with urllib.request.urlopen(scrape, timeout=10) as response:
            assert b"gateway_pending_entities_limit" in response.read()

        # The training pod: the relay (a native sidecar in Kubernetes 1.29+, an ordinary
        # container here) forwards the trainer's writes to the gateway above.
        [job] = documents("training-job-with-relay.yaml")
        relay_port = free_port()
        training = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"train-resnet-{suffix}"},
                    "spec": copy.deepcopy(job["spec"]["template"]["spec"])}
        spec = training["spec"]
        spec["hostNetwork"] = True
        [relay] = spec.pop("initContainers")
        relay.pop("restartPolicy")
        relay["image"] = gateway_image
        set_env(relay, "GATEWAY_RELAY_UPSTREAM", gateway_url)
        set_env(relay, "GATEWAY_RELAY_PORT", str(relay_port))
        for probe in ("startupProbe", "readinessProbe"):
            relay[probe]["httpGet"]["port"] = relay_port
        for item in relay["env"]:
            if "valueFrom" in item:
                item["valueFrom"]["secretKeyRef"]["name"] = f"mlflow-upstream-{suffix}"
        kube.secret({"stringData": {"token": trainer_token}}, f"mlflow-upstream-{suffix}")
        [trainer] = spec["containers"]
        trainer["image"] = gateway_image
        trainer.pop("resources")  # no GPU here
        set_env(trainer, "MLFLOW_TRACKING_URI", f"http://127.0.0.1:{relay_port}")
        # train.py from a host directory (a script in a manifest trips podman's YAML parser).
        trainer_dir = folder / "trainer"
        trainer_dir.mkdir()
        (trainer_dir / "train.py").write_text(TRAINER)
        trainer_dir.chmod(0o755)
        (trainer_dir / "train.py").chmod(0o644)
        trainer["command"] = ["python3", "/trainer/train.py"]
        trainer["volumeMounts"] = [{"name": "trainer", "mountPath": "/trainer", "readOnly": True}]
        spec["volumes"].append({"name": "trainer", "hostPath": {"path": str(trainer_dir), "type": "Directory"}})
        spec["containers"] = [relay, trainer]
        kube.play(training)

        trainer_name = f"train-resnet-{suffix}-trainer"
        deadline = time.monotonic() + 120
        while podman("inspect", "--format", "{{.State.Status}}", trainer_name).stdout.strip() != "exited":
            assert time.monotonic() < deadline, podman("logs", trainer_name, check=False).stderr
            time.sleep(1)
        logs = podman("logs", trainer_name, check=False)
        assert podman("inspect", "--format", "{{.State.ExitCode}}", trainer_name).stdout.strip() == "0", logs.stderr
        run_id = logs.stdout.strip().splitlines()[-1]

        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", trainer_token)
        upstream = MlflowClient(tracking_uri=gateway_url)
        deadline = time.monotonic() + 60
        while len(history := upstream.get_metric_history(run_id, "loss")) < 200:
            assert time.monotonic() < deadline, f"{len(history)} of 200 points reached the gateway"
            time.sleep(0.5)
        assert upstream.get_run(run_id).data.params == {"epochs": "2"}

        stopped = time.monotonic()
        podman("pod", "stop", "-t", "90", pod_name, timeout=150)
        print(f"Deployment pod stopped in {time.monotonic() - stopped:.1f} s")
        assert podman("inspect", "--format", "{{.State.ExitCode}}", gateway_container).stdout.strip() == "0"
    finally:
        kube.down()


# The trainer: the stock MLflow client logging through the relay at MLFLOW_TRACKING_URI.
TRAINER = """
import mlflow
mlflow.set_experiment("resnet")
with mlflow.start_run() as run:
    mlflow.log_param("epochs", 2)
    for step in range(200):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
print(run.info.run_id)
"""
