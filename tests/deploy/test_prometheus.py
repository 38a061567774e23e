"""The dashboard and the alert rules against a real Prometheus scraping a gateway under a flood.

promtool checks the rules and runs their unit tests; then Debian's prometheus scrapes a live
gateway every second while a short flood overruns its (deliberately small) buffers, and every
dashboard query, recording rule and alert expression is evaluated through the HTTP API.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time

import pytest

from tests.deploy.prometheus import DASHBOARD, RULES, PrometheusProcess, api, dashboard_queries, rules
from tests.e2e.flood import create_runs, flood
from tests.server import GatewayProcess

pytestmark = pytest.mark.timeout(300)


def promtool(*args: str) -> str:
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed (.ci/run installs it: apt-get install prometheus)"
    result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, cwd=RULES.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_promtool_checks_the_rules_and_runs_their_unit_tests():
    assert "SUCCESS: 11 rules found" in promtool("check", "rules", RULES.name)
    assert "SUCCESS" in promtool("test", "rules", "gateway-rules.test.yml")


def test_every_alert_has_a_runbook_and_every_dashboard_panel_a_query():
    alerts = [rule for rule in rules() if "alert" in rule]
    assert {rule["alert"] for rule in alerts} >= {
        "GatewayWritesRefused", "GatewayFlushLatencyHigh", "GatewayDatabaseUnreachable", "GatewayPendingNearBound",
    }
    for rule in alerts:
        assert len(rule["annotations"]["runbook"]) > 200, rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")
    assert all(query for _, query in dashboard_queries("1m"))


async def test_dashboard_queries_and_alerts_on_a_live_gateway_under_a_flood(fresh_database_url, tmp_path):
    from mlflow import MlflowClient

    # Small buffers and a short deadline, so that the flood is refused in part (429/503).
    gateway = GatewayProcess(
        fresh_database_url,
        "--max-points-per-flush", "1000", "--max-pending-points", "1000", "--request-deadline-s", "0.01",
        "--flush-concurrency", "1", "--pool-size", "3", "--compact-interval-s", "0.5",
        "--compact-min-chunks", "8",
    )
    prometheus = None
    try:
        prometheus = PrometheusProcess([f"127.0.0.1:{gateway.port}"])
        prometheus.wait_targets_up()
        client = MlflowClient(tracking_uri=gateway.url)
        experiment_id = client.create_experiment("dashboard")
        for index in range(3):
            run_id = client.create_run(experiment_id).info.run_id
            client.log_param(run_id, "lr", str(0.1 * (index + 1)))
            client.set_tag(run_id, "team", "vision")
        run_ids = await create_runs(gateway.url, 8, "dashboard-flood")
        flood_started = time.time()
        ledger = await flood(gateway.url, run_ids, writers=16, duration=12, batch_every=3, batch_points=1000)
        flood_ended = time.time()
        assert ledger.statuses.get(200, 0) > 100, ledger.statuses
        refused = ledger.statuses.get(429, 0) + ledger.statuses.get(503, 0)
        assert refused > 0, ledger.statuses
        time.sleep(3)  # the last scrapes and rule evaluations of the flood

        at = flood_ended - 1
        empty = []
        for title, query in dashboard_queries("20s"):
            result = api(prometheus.url, "query", query=query, time=at)["result"]
            values = [float(series["value"][1]) for series in result]
            if not any(math.isfinite(value) for value in values):
                empty.append(f"{title}: {query} -> {result}")
        assert not empty, "dashboard queries without data:\n" + "\n".join(empty)

        groups = api(prometheus.url, "rules")["groups"]
        evaluated = [rule for group in groups for rule in group["rules"]]
        assert len(evaluated) == len(rules())
        assert all(rule["health"] == "ok" for rule in evaluated), [r for r in evaluated if r["health"] != "ok"]
        for rule in rules():
            if "record" in rule:
                result = api(prometheus.url, "query", query=rule["record"], time=at)["result"]
                assert result, f"recording rule {rule['record']} has no data"
            else:
                api(prometheus.url, "query", query=rule["expr"], time=at)  # parses and evaluates
        alerts = {alert["labels"]["alertname"]: alert["state"] for alert in api(prometheus.url, "alerts")["alerts"]}
        # The flood's share of refusals depends on how busy the machine is; the alert must
        # follow its expression either way (the ratio no longer moves once the flood ended).
        refused_ratio = api(prometheus.url, "query", query="gateway:requests_refused:ratio_rate5m")["result"]
        assert refused_ratio and float(refused_ratio[0]["value"][1]) > 0, refused_ratio
        if float(refused_ratio[0]["value"][1]) > 0.05:
            assert alerts.get("GatewayWritesRefused") in ("pending", "firing"), (refused_ratio, alerts)
        else:
            assert "GatewayWritesRefused" not in alerts, (refused_ratio, alerts)
        assert "GatewayDatabaseUnreachable" not in alerts and "GatewayTargetDown" not in alerts, alerts

        import importlib.util

        spec = importlib.util.spec_from_file_location("render_dashboard", DASHBOARD.parents[2] / "render_dashboard.py")
        render_dashboard = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(render_dashboard)
        picture = tmp_path / "dashboard.png"
        drawn = render_dashboard.render(prometheus.url, flood_started - 5, flood_ended + 3, picture,
                                        rate_interval="5s")
        assert drawn >= len(dashboard_queries("1m")) and picture.stat().st_size > 50_000
    finally:
        if prometheus is not None:
            prometheus.stop()
        gateway.stop()
