"""Debian's Prometheus for the tests: a server of the test's own, and its HTTP API."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from tests.deploy.podman import DEPLOY
from tests.server import free_port, stop_process

RULES = DEPLOY / "prometheus" / "gateway-rules.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "mlflow-gateway.json"


def api(base_url: str, path: str, **params) -> dict:
    """GET ``/api/v1/<path>``; the answer's ``data``, or AssertionError with Prometheus's error."""
    query = urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(f"{base_url}/api/v1/{path}?{query}", timeout=30) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as exc:
        answer = json.load(exc)
    assert answer.get("status") == "success", f"{path} {params}: {answer.get('errorType')}: {answer.get('error')}"
    return answer["data"]


def dashboard_queries(rate_interval: str) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of the dashboard, ``$__rate_interval`` filled in."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"].replace("$__rate_interval", rate_interval))
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def rules() -> list[dict]:
    import yaml

    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


class PrometheusProcess:
    """``prometheus`` scraping ``targets`` every second with the gateway's rules, on 127.0.0.1."""

    def __init__(self, targets: list[str], job: str = "mlflow-gateway"):
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed (.ci/run installs it: apt-get install prometheus)"
        self.dir = Path(tempfile.mkdtemp(prefix="gateway-test-prometheus-"))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}],
        }
        (self.dir / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(self.dir / "prometheus.log", "wb")
        self.process = subprocess.Popen(
            [binary, f"--config.file={self.dir / 'prometheus.yml'}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        self._wait_ready(timeout=60)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"prometheus exited:\n{self.output()}"
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"prometheus was not ready within {timeout} s:\n{self.output()}")

    def wait_targets_up(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            active = api(self.url, "targets")["activeTargets"]
            if active and all(target["health"] == "up" for target in active):
                return
            time.sleep(0.5)
        raise AssertionError(f"targets not up: {api(self.url, 'targets')['activeTargets']}")

    def output(self) -> str:
        self.log.flush()
        return (self.dir / "prometheus.log").read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
