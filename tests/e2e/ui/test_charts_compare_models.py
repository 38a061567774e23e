"""MLflow's web UI in a real browser: metric charts, compared runs and the model registry.

Each page is checked three ways: the seeded names and values are on screen, no call the page
made was answered 4xx/5xx (except the few `mlflow server` answers the same way), and the
browser console showed no error (except the named ones MLflow's UI shows on `mlflow server` too).
Run with UI_TESTS_AGAINST=mlflow to drive a stock `mlflow server` instead of the gateway.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.ui.browser import assert_clean, eventually, screenshot, ui_page
from tests.e2e.ui.seed import RUN_NAMES, START_MS

# Each test takes seconds; the first and the last also start, seed and stop the session's servers.
pytestmark = pytest.mark.timeout(300)

# The compare page lists each run's artifacts and intersects the lists. When the listing of a
# run with artifacts (alpha) is answered before that of a run without any, MLflow's UI reads
# the absent "files" of the latter and throws; the section then says "Something went wrong".
# `mlflow server` leaves "files" out of an empty listing, so it shows this whenever the answers
# arrive in that order.
COMPARE_ARTIFACTS_TYPE_ERROR = "TypeError: Cannot read properties of undefined (reading 'includes')"

HISTORY_PATH = "/ajax-api/2.0/mlflow/metrics/get-history"  # also .../get-history-bulk-interval

# Every trace of every plotly chart on the page, as [name, x values, y values].
PLOTLY_TRACES = """() => [...document.querySelectorAll('.js-plotly-plot')].flatMap(
    plot => (plot.data || []).map(trace => [trace.name, Array.from(trace.x || []), Array.from(trace.y || [])]))"""

# The dimensions of the parallel coordinates chart, as [label, values].
PARALLEL_COORDINATES = """() => [...document.querySelectorAll('.js-plotly-plot')].flatMap(
    plot => (plot.data || []).filter(trace => trace.type === 'parcoords').flatMap(
        trace => trace.dimensions.map(dimension => [dimension.label, Array.from(dimension.values)])))"""

# The plotly charts on the page with their trace types, as [type, ...].
PLOTLY_TYPES = """() => [...document.querySelectorAll('.js-plotly-plot')].map(
    plot => (plot.data || []).map(trace => trace.type))"""


def seeded_history(run_name: str, key: str) -> list[tuple[int, float, int]]:
    """(step, value, timestamp) of a metric as seed.py logs it."""
    index = RUN_NAMES.index(run_name)
    if key == "loss":
        values = [1.0 / (step + 1 + index) for step in range(10)]
    else:
        values = [0.5 + 0.04 * step + 0.01 * index for step in range(10)]
    return [(step, values[step], START_MS + step * 1000) for step in range(10)]


def seeded_trace(run_name: str, key: str, x: str = "step") -> tuple[str, tuple, tuple]:
    """The plotly trace of a seeded metric: steps, wall time (ms) or relative time (s) on x."""
    history = seeded_history(run_name, key)
    xs = {
        "step": [step for step, _, _ in history],
        "wall": [timestamp for _, _, timestamp in history],
        "relative": [(timestamp - START_MS) / 1000 for _, _, timestamp in history],
    }[x]
    return run_name, tuple(xs), tuple(value for _, value, _ in history)


def rendered_traces(page: Any) -> set[tuple[str, tuple, tuple]]:
    return {(name, tuple(x), tuple(y)) for name, x, y in page.evaluate(PLOTLY_TRACES)}


def record_histories(page: Any) -> list[Any]:
    """The metric-history responses the page gets from now on."""
    responses: list[Any] = []
    page.on("response", lambda response: responses.append(response) if HISTORY_PATH in response.url else None)
    return responses


def history_points(responses: list[Any]) -> dict[tuple[str, str], list[tuple[int, float, int]]]:
    """(run id, key) -> the distinct (step, value, timestamp) points the history calls answered."""
    points: dict[tuple[str, str], set[tuple[int, float, int]]] = {}
    for response in list(responses):
        assert response.status == 200, (response.url, response.status, response.text())
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(response.url).query)
        for metric in response.json().get("metrics", []):
            run_id = metric.get("run_id") or query["run_uuid"][0]
            points.setdefault((run_id, metric["key"]), set()).add((metric["step"], metric["value"], metric["timestamp"]))
    return {key: sorted(found) for key, found in points.items()}


def metric_page(run_ids: list[str], key: str, experiment_ids: list[str]) -> str:
    """The single-metric page as the UI links to it (the metric names on the compare page)."""
    compact = {"separators": (",", ":")}
    return (
        f"#/metric?runs={json.dumps(run_ids, **compact)}&metric={urllib.parse.quote(json.dumps(key), safe='')}"
        f"&experiments={json.dumps(experiment_ids, **compact)}"
        f"&plot_metric_keys={urllib.parse.quote(json.dumps([key], **compact), safe='')}"
        "&plot_layout={}&x_axis=step&y_axis_scale=linear&line_smoothness=1&show_point=false"
        "&deselected_curves=[]&last_linear_y_axis_range=[]"
    )


def table_rows(section: Any) -> list[list[str]]:
    return section.locator("tr").evaluate_all(
        "rows => rows.map(row => [...row.cells].map(cell => cell.innerText.trim()))"
    )


def compare_section(page: Any, title: str) -> Any:
    """A section of the compare page (Parameters, Metrics, Tags) by its "Show diff only" switch."""
    return page.get_by_role("switch", name=f"{title} - Show diff only").locator("xpath=../..")


def compared_metrics(page: Any) -> tuple[list[str], list[str]]:
    """The compare page's metric names, and their values row by row."""
    section = compare_section(page, "Metrics")
    names = section.locator("a[title='Plot chart']").all_inner_texts()
    values = section.get_by_role("grid").nth(1).locator("[role=rowgroup] > div").all_inner_texts()
    return names, values


def select_runs(page: Any, *names: str) -> None:
    """Tick runs in the runs table, in this order (the compare page lists them in it)."""
    for name in names:
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))
        row.get_by_role("checkbox", name="Press Space to toggle row selection").click()


def test_run_page_model_metrics_tab(ui_server, seeded, browser):
    alpha = seeded.runs["alpha"]
    with ui_page(browser, ui_server) as (page, recording):
        histories = record_histories(page)
        page.goto(f"{ui_server.url}/#/experiments/{seeded.experiment_id}/runs/{alpha}")

        # The metric names on the run's overview lead to its charts.
        page.get_by_role("link", name="loss", exact=True).click()
        assert page.url.endswith(f"#/experiments/{seeded.experiment_id}/runs/{alpha}/model-metrics")
        expect(page.get_by_text("alpha (loss)")).to_be_visible()
        expect(page.get_by_text("alpha (accuracy)")).to_be_visible()

        expected = {seeded_trace("alpha", "loss"), seeded_trace("alpha", "accuracy")}
        assert eventually(lambda: rendered_traces(page), expected) == expected
        screenshot(page, "run-metrics")
        assert history_points(histories) == {
            (alpha, "loss"): seeded_history("alpha", "loss"),
            (alpha, "accuracy"): seeded_history("alpha", "accuracy"),
        }
        assert_clean(recording)


def test_metric_page_switches_x_axis(ui_server, seeded, browser):
    alpha = seeded.runs["alpha"]
    with ui_page(browser, ui_server) as (page, recording):
        histories = record_histories(page)
        page.goto(f"{ui_server.url}/" + metric_page([alpha], "loss", [seeded.experiment_id]))

        expect(page.get_by_role("heading", name="loss", exact=True)).to_have_count(2)  # the page's and the chart's
        expect(page.get_by_role("link", name="alpha", exact=True)).to_be_visible()
        summary = page.get_by_role("row").filter(has_text="step=")
        expect(summary.get_by_role("cell")).to_have_text(["loss", "0.1 (step=9)", "0.1 (step=9)", "1 (step=0)"])
        expected = {seeded_trace("alpha", "loss")}
        assert eventually(lambda: rendered_traces(page), expected) == expected
        expect(page.locator(".xtitle")).to_have_text("Step")

        page.get_by_label("Time (Wall)").check()
        expected = {seeded_trace("alpha", "loss", x="wall")}
        assert eventually(lambda: rendered_traces(page), expected) == expected
        expect(page.locator(".xtitle")).to_have_text("Time")
        assert "x_axis=wall" in page.url

        page.get_by_label("Time (Relative)").check()
        expected = {seeded_trace("alpha", "loss", x="relative")}
        assert eventually(lambda: rendered_traces(page), expected) == expected
        expect(page.locator(".xtitle")).to_have_text("Relative Time")
        assert "x_axis=relative" in page.url
        screenshot(page, "metric-charts")

        assert history_points(histories) == {(alpha, "loss"): seeded_history("alpha", "loss")}
        assert {call.path.split("?")[0] for call in recording.calls if HISTORY_PATH in call.path} == {
            "/ajax-api/2.0/mlflow/metrics/get-history",
            "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval",
        }
        assert_clean(recording)


def test_runs_chart_view_switches_x_axis(ui_server, seeded, browser):
    with ui_page(browser, ui_server) as (page, recording):
        histories = record_histories(page)
        page.goto(f"{ui_server.url}/#/experiments/{seeded.experiment_id}/runs")
        expect(page.get_by_role("link", name="gamma", exact=True)).to_be_visible()

        page.locator("label:has(input[value=CHART])").click()
        assert "compareRunsMode=CHART" in page.url
        for name in RUN_NAMES:
            expect(page.get_by_text(f"{name} (loss)")).to_be_visible()
            expect(page.get_by_text(f"{name} (accuracy)")).to_be_visible()
        expected = {seeded_trace(name, key) for name in RUN_NAMES for key in ("loss", "accuracy")}
        assert eventually(lambda: rendered_traces(page), expected) == expected
        expect(page.locator(".xtitle")).to_have_text(["Step", "Step"])
        assert history_points(histories) == {
            (seeded.runs[name], key): seeded_history(name, key) for name in RUN_NAMES for key in ("loss", "accuracy")
        }

        for option, x, title in [("Time (wall)", "wall", "Time"), ("Time (relative)", "relative", "Relative Time")]:
            page.get_by_role("button", name="Configure charts").click()
            page.get_by_role("menuitemcheckbox", name=option).click()
            page.keyboard.press("Escape")
            expected = {seeded_trace(name, key, x=x) for name in RUN_NAMES for key in ("loss", "accuracy")}
            assert eventually(lambda: rendered_traces(page), expected) == expected
            expect(page.locator(".xtitle")).to_have_text([title, title])
        screenshot(page, "run-charts")
        assert_clean(recording)


def test_compare_runs_of_one_experiment(ui_server, seeded, browser):
    alpha, beta = seeded.runs["alpha"], seeded.runs["beta"]
    with ui_page(browser, ui_server, f"/experiments/{seeded.experiment_id}/runs") as (page, recording):
        select_runs(page, "beta", "alpha")
        page.get_by_role("button", name="Compare", exact=True).click()

        expect(page.get_by_role("heading", name="Comparing 2 Runs from 1 Experiment")).to_be_visible()
        assert urllib.parse.unquote(page.url).endswith(
            f'#/compare-runs?runs=["{beta}","{alpha}"]&experiments=["{seeded.experiment_id}"]'
        )
        details = page.get_by_role("table").filter(has_text="Run ID:")
        assert table_rows(details)[:2] == [["Run ID:", beta, alpha], ["Run Name:", "beta", "alpha"]]

        parameters = compare_section(page, "Parameters")
        assert table_rows(parameters) == [["batch", "64", "32"], ["lr", "0.2", "0.1"], ["optimizer", "adam", "adam"]]
        assert compared_metrics(page) == (["accuracy", "loss"], ["0.87", "0.86", "0.091", "0.1"])
        assert table_rows(compare_section(page, "Tags")) == [["stage", "s1", "s0"]]

        # The parameter both runs share is hidden; the metrics all differ and stay.
        page.get_by_role("switch", name="Parameters - Show diff only").click()
        expect(parameters.locator("tr")).to_have_count(2)
        assert table_rows(parameters) == [["batch", "64", "32"], ["lr", "0.2", "0.1"]]
        page.get_by_role("switch", name="Metrics - Show diff only").click()
        assert compared_metrics(page) == (["accuracy", "loss"], ["0.87", "0.86", "0.091", "0.1"])

        # Parallel coordinates: the numeric parameters and a metric, one value per run. The chart
        # starts with the first metric the server lists for the runs, an order the API leaves open
        # (`mlflow server` lists them as logged, loss first), so either metric may be the one drawn.
        page.wait_for_function(f"() => ({PARALLEL_COORDINATES})().length === 3")
        batch, lr, metric = page.evaluate(PARALLEL_COORDINATES)
        assert [batch, lr] == [["batch", [64, 32]], ["lr", [0.2, 0.1]]]
        assert metric in (["loss", [1 / 11, 0.1]], ["accuracy", [0.87, 0.86]])
        screenshot(page, "compare-runs")

        page.get_by_role("tab", name="Scatter Plot").click()
        assert eventually(lambda: page.evaluate(PLOTLY_TYPES), [["scattergl"]]) == [["scattergl"]]
        scatter = page.evaluate(PLOTLY_TRACES)
        assert [(x, y) for _, x, y in scatter] == [(["64", "32"], [0.87, 0.86])]  # batch against accuracy
        page.get_by_role("tab", name="Contour Plot").click()
        assert eventually(lambda: page.evaluate(PLOTLY_TYPES), [["contour", "scattergl"]]) == [
            ["contour", "scattergl"]
        ]
        contour = page.evaluate("() => document.querySelector('.js-plotly-plot').data[0]")
        assert (contour["x"], contour["y"], contour["z"]) == ([64, 32], [0.2, 0.1], [0.87, 0.86])  # batch, lr, accuracy

        # A metric's name opens its chart for the compared runs.
        loss_link = page.get_by_role("link", name="loss", exact=True)
        assert loss_link.get_attribute("href") == metric_page([beta, alpha], "loss", [seeded.experiment_id])
        loss_link.click()
        expected = {seeded_trace("beta", "loss"), seeded_trace("alpha", "loss")}
        assert eventually(lambda: rendered_traces(page), expected) == expected
        assert_clean(recording, COMPARE_ARTIFACTS_TYPE_ERROR)


def test_compare_runs_across_experiments(ui_server, seeded, browser):
    alpha, delta = seeded.runs["alpha"], seeded.runs["delta"]
    with ui_page(browser, ui_server, "/experiments") as (page, recording):
        for name in ("ui-other", "ui-demo"):
            row = page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))
            row.get_by_role("checkbox").click()
        page.get_by_role("button", name="Compare", exact=True).click()
        expect(page.get_by_text("Displaying Runs from 2 Experiments")).to_be_visible()
        select_runs(page, "delta", "alpha")
        page.get_by_role("button", name="Compare", exact=True).click()

        expect(page.get_by_role("heading", name="Comparing 2 Runs from 2 Experiments")).to_be_visible()
        experiments = json.dumps([seeded.experiment_id, seeded.other_experiment_id], separators=(",", ":"))
        assert urllib.parse.unquote(page.url).endswith(f'#/compare-runs?runs=["{delta}","{alpha}"]&experiments={experiments}')
        details = table_rows(page.get_by_role("table").filter(has_text="Run ID:"))
        assert [details[0], details[1], details[-1]] == [
            ["Run ID:", delta, alpha], ["Run Name:", "delta", "alpha"], ["Experiment Name:", "ui-other", "ui-demo"]
        ]
        parameters = compare_section(page, "Parameters")
        assert table_rows(parameters) == [["batch", "", "32"], ["lr", "0.5", "0.1"], ["optimizer", "adam", "adam"]]
        # delta has no accuracy.
        assert compared_metrics(page) == (["accuracy", "loss"], ["NaN", "0.86", "0.7", "0.1"])

        page.get_by_role("switch", name="Parameters - Show diff only").click()
        expect(parameters.locator("tr")).to_have_count(2)
        assert table_rows(parameters) == [["batch", "", "32"], ["lr", "0.5", "0.1"]]

        # delta has no batch; the chart draws it just above the others.
        dimensions = [["batch", [32.01, 32]], ["lr", [0.5, 0.1]], ["loss", [0.7, 0.1]]]
        rendered = eventually(lambda: page.evaluate(PARALLEL_COORDINATES), dimensions)
        screenshot(page, "compare-experiments")
        assert rendered == dimensions
        # batch against accuracy: delta has neither, so only alpha's point; and too few for a contour.
        page.get_by_role("tab", name="Scatter Plot").click()
        scatter = [[["32"], [0.86]]]
        assert eventually(lambda: [[x, y] for _, x, y in page.evaluate(PLOTLY_TRACES)], scatter) == scatter
        page.get_by_role("tab", name="Contour Plot").click()
        expect(page.get_by_role("tabpanel")).to_contain_text(
            "The X and Y axes don't have enough unique data points to render the contour plot."
        )
        assert page.evaluate(PLOTLY_TYPES) == []
        assert_clean(recording, COMPARE_ARTIFACTS_TYPE_ERROR)


def test_registered_models_list(ui_server, seeded, browser):
    with ui_page(browser, ui_server, "/") as (page, recording):
        page.get_by_role("link", name="Model registry").first.click()
        assert page.url.endswith("#/models")

        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=seeded.model_name, exact=True))
        expect(row).to_have_count(1)
        expect(row.get_by_role("link", name="Version 2", exact=True)).to_have_attribute(
            "href", "#/models/ui-model/versions/2"
        )
        expect(row.get_by_role("link", name="champion")).to_have_attribute("href", "#/models/ui-model/versions/1")
        expect(row.get_by_role("link", name="champion")).to_have_text("@\xa0champion: Version 1")
        screenshot(page, "models")
        assert_clean(recording)


def test_registered_model_page_lists_versions_aliases_and_stages(ui_server, seeded, browser):
    with ui_page(browser, ui_server, "/models") as (page, recording):
        page.get_by_role("link", name=seeded.model_name, exact=True).click()

        expect(page.get_by_role("heading", name="ui-model")).to_be_visible()
        versions = page.get_by_role("row").filter(has=page.get_by_role("link", name="Version"))
        expect(versions.get_by_role("link")).to_have_text(["Version 2", "Version 1"])
        expect(versions.nth(1).get_by_text("champion")).to_be_visible()
        expect(versions.nth(0).get_by_text("champion")).to_have_count(0)
        screenshot(page, "model")

        # Stages show in the registry's former layout.
        page.get_by_role("switch", name="New model registry UI").click()
        page.get_by_role("dialog").get_by_role("button", name="Disable").click()
        expect(page.get_by_role("columnheader", name="Stage")).to_be_visible()
        expect(versions.get_by_role("link")).to_have_text(["Version 2", "Version 1"])
        expect(versions.get_by_role("status")).to_have_text(["Staging", "None"])
        assert_clean(recording)


def test_model_version_page_reads_the_mlmodel_file(ui_server, seeded, browser):
    with ui_page(browser, ui_server, "/models/ui-model") as (page, recording):
        with page.expect_response(lambda response: "/model-versions/get-artifact" in response.url) as mlmodel:
            page.get_by_role("link", name="Version 2", exact=True).click()

        assert page.url.endswith("#/models/ui-model/versions/2")
        assert mlmodel.value.status == 200
        assert urllib.parse.parse_qs(urllib.parse.urlsplit(mlmodel.value.url).query) == {
            "path": ["MLmodel"], "name": ["ui-model"], "version": ["2"]
        }
        expect(page.get_by_role("heading", name="Version 2")).to_be_visible()
        expect(page.get_by_text("Staging", exact=True)).to_be_visible()
        expect(page.get_by_role("link", name="alpha", exact=True)).to_have_attribute(
            "href", f"#/experiments/{seeded.experiment_id}/runs/{seeded.runs['alpha']}"
        )
        expect(page.get_by_role("link", name="model", exact=True)).to_have_attribute(
            "href", f"#/experiments/{seeded.experiment_id}/models/{seeded.logged_model_id}"
        )

        # The signature comes from the MLmodel file only.
        page.get_by_role("cell", name="Inputs (1)").click()
        page.get_by_role("cell", name="Outputs (1)").click()
        expect(page.get_by_role("row", name="pixels (required) double")).to_be_visible()
        expect(page.get_by_role("row", name="label (required) double")).to_be_visible()
        screenshot(page, "model-version")
        assert_clean(recording)


def test_experiment_logged_models_page(ui_server, seeded, browser):
    with ui_page(browser, ui_server, f"/experiments/{seeded.experiment_id}/models") as (page, recording):
        expect(page.get_by_role("heading", name="Models", exact=True)).to_be_visible()
        model = page.get_by_role("link", name="model", exact=True)
        expect(model).to_have_attribute("href", f"#/experiments/{seeded.experiment_id}/models/{seeded.logged_model_id}")
        rows = page.get_by_role("row").filter(has=page.get_by_role("link", name="alpha", exact=True))
        expect(rows).to_have_count(1)
        expect(rows.get_by_role("link", name="alpha", exact=True)).to_have_attribute(
            "href", f"#/experiments/{seeded.experiment_id}/runs/{seeded.runs['alpha']}"
        )
        expect(rows.get_by_role("link", name="ui-model")).to_have_attribute("href", "#/models/ui-model/versions/1")
        expect(page.get_by_role("row").filter(has=model).get_by_text("Ready")).to_be_visible()
        screenshot(page, "logged-models")
        assert_clean(recording)
