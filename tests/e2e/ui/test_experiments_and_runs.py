"""MLflow's web UI in a real browser: the experiments list, an experiment's runs table
and a run's page, on the seeded story.

A page works when the seeded names and values are on screen, the browser console shows
no error and no call the page made was answered 4xx/5xx, except where a stock
`mlflow server` answers the same (ALLOWED_FAILURES). With UI_TESTS_AGAINST=mlflow the
same tests drive a stock `mlflow server`; the only difference they expect is that MLflow
rejects MIN/MAX/LATEST in a runs filter, which the gateway evaluates.
"""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType
from playwright.sync_api import expect

from tests.e2e.ui.browser import ALLOWED_FAILURES, Recording, assert_clean, eventually, screenshot, ui_page

# Each test's own steps; starting the server and seeding it are bounded by their fixtures.
pytestmark = pytest.mark.timeout(120, func_only=True)

AGAINST_MLFLOW = os.environ.get("UI_TESTS_AGAINST") == "mlflow"

RUNS_SEARCH = "/ajax-api/2.0/mlflow/runs/search"

SEARCH_BOX = 'metrics.rmse < 1 and params.model = "tree"'  # the runs search box's placeholder

# What the seeded runs of "ui-demo" show: latest metric values, params and tags.
SEEDED_VALUES = {
    "alpha": {"loss": "0.1", "accuracy": "0.86", "lr": "0.1", "batch": "32", "optimizer": "adam", "stage": "s0"},
    "beta": {
        "loss": "0.09090909090909091", "accuracy": "0.87", "lr": "0.2", "batch": "64", "optimizer": "adam", "stage": "s1",
    },
    "gamma": {
        "loss": "0.08333333333333333", "accuracy": "0.88", "lr": "0.30000000000000004", "batch": "96",
        "optimizer": "adam", "stage": "s2",
    },
}


def runs_table(page) -> list[dict[str, str]]:
    """The runs table as on screen, top to bottom: each row's cells by column id
    (``name``, ``metrics.`loss```, ``params.`lr```...). The grid renders a row in
    several parts (pinned and scrolled columns); they share the row index."""
    return page.evaluate(
        """() => {
          const rows = new Map();
          for (const part of document.querySelectorAll('.ag-row[row-index]')) {
            const index = Number(part.getAttribute('row-index'));
            const row = rows.get(index) || {};
            for (const cell of part.querySelectorAll('.ag-cell[col-id]')) {
              row[cell.getAttribute('col-id')] = cell.innerText.trim();
            }
            const name = part.querySelector('.ag-cell[col-id="attributes.`Run Name`"] a');
            if (name) row.name = name.innerText.trim();
            rows.set(index, row);
          }
          return [...rows.keys()].sort((a, b) => a - b).map(i => rows.get(i));
        }"""
    )


def run_names(page) -> list[str]:
    return [row.get("name") for row in runs_table(page)]


def row_of(page, run_id: str):
    """The pinned part of the run's row (its selection checkbox and name)."""
    return page.locator(f'.ag-pinned-left-cols-container .ag-row[row-id="{run_id}"]')


def table_rows(page) -> list[str]:
    """Every table row on the page, top to bottom, its cells joined by " | "."""
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('[role=row]'))
              .map(row => row.innerText.split('\\n').map(cell => cell.trim()).join(' | '))"""
    )


def runs_searches(recording: Recording) -> list[str]:
    return [call.body for call in recording.calls if call.path == RUNS_SEARCH]


# -- Experiments list ---------------------------------------------------------------


def experiment_link(page, name: str):
    """The experiment's name in the experiments list (a link to its page)."""
    return page.get_by_test_id("experiment-list-item-link").and_(page.get_by_title(name, exact=True))


def test_experiments_list_shows_the_seeded_experiments(ui_server, seeded, browser):
    with ui_page(browser, ui_server, "/experiments") as (page, recording):
        experiment_link(page, "ui-demo").wait_for()
        assert experiment_link(page, "ui-demo").get_attribute("href") == f"#/experiments/{seeded.experiment_id}"
        assert experiment_link(page, "ui-other").get_attribute("href") == f"#/experiments/{seeded.other_experiment_id}"
        demo = page.get_by_role("row").filter(has=experiment_link(page, "ui-demo"))
        assert " ".join(demo.get_by_role("status").inner_text().split()) == "team : vision"
        screenshot(page, "experiments")
        assert_clean(recording)


def test_an_experiment_is_created_renamed_and_deleted_through_the_ui(ui_server, seeded, browser):
    client = MlflowClient(ui_server.url)
    created, renamed = "ui-created-" + uuid.uuid4().hex[:8], "ui-renamed-" + uuid.uuid4().hex[:8]
    with ui_page(browser, ui_server, "/experiments") as (page, recording):
        page.get_by_test_id("create-experiment-button").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_label("Experiment Name").fill(created)
        dialog.get_by_role("button", name="Create").click()
        # The UI opens the new experiment's runs.
        page.get_by_role("heading", name="Runs").wait_for()
        experiment = client.get_experiment_by_name(created)
        assert experiment is not None and experiment.lifecycle_stage == "active"
        assert f"/experiments/{experiment.experiment_id}/runs" in page.url

        page.get_by_test_id("overflow-menu-trigger").click()
        page.get_by_role("menuitem", name="Edit experiment").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_label("Experiment name").fill(renamed)
        dialog.get_by_role("button", name="Save").click()
        dialog.wait_for(state="hidden")
        assert eventually(lambda: client.get_experiment(experiment.experiment_id).name, renamed) == renamed

        page.get_by_role("link", name="Experiments", exact=True).first.click()
        link = experiment_link(page, renamed)
        link.wait_for()
        assert experiment_link(page, created).count() == 0
        page.get_by_role("row").filter(has=link).get_by_role("checkbox").check()
        page.get_by_role("button", name="Delete", exact=True).click()
        dialog = page.get_by_role("dialog")
        assert f"{renamed} (ID: {experiment.experiment_id})" in dialog.inner_text()
        dialog.get_by_role("button", name="Delete", exact=True).click()
        link.wait_for(state="detached")
        assert client.get_experiment(experiment.experiment_id).lifecycle_stage == "deleted"
        expect(experiment_link(page, "ui-demo")).to_be_visible()
        assert_clean(recording)


# -- Runs table -----------------------------------------------------------------------


def show_metric_and_param_columns(page) -> None:
    page.get_by_role("button", name="Columns").click()
    tree = page.get_by_test_id("column-selector-tree")
    tree.get_by_title("Metrics (2)").click()
    tree.get_by_title("Parameters (3)").click()
    page.keyboard.press("Escape")


def test_runs_table_shows_params_and_metrics_of_the_seeded_runs(ui_server, seeded, browser):
    with ui_page(browser, ui_server, f"/experiments/{seeded.experiment_id}/runs") as (page, recording):
        page.set_viewport_size({"width": 2000, "height": 900})  # every column on screen
        page.get_by_role("link", name="alpha", exact=True).wait_for()
        show_metric_and_param_columns(page)

        def shown():
            return {
                row.get("name"): {
                    key: row.get(column)
                    for key, column in [
                        ("loss", "metrics.`loss`"),
                        ("accuracy", "metrics.`accuracy`"),
                        ("lr", "params.`lr`"),
                        ("batch", "params.`batch`"),
                        ("optimizer", "params.`optimizer`"),
                    ]
                }
                for row in runs_table(page)
            }

        expected = {name: {k: v for k, v in values.items() if k != "stage"} for name, values in SEEDED_VALUES.items()}
        assert eventually(shown, expected) == expected
        assert run_names(page) == ["gamma", "beta", "alpha"]  # newest first
        expect(page.get_by_text("3 matching runs")).to_be_visible()
        screenshot(page, "runs")
        assert_clean(recording)


def test_runs_table_sorts_by_a_metric(ui_server, seeded, browser):
    with ui_page(browser, ui_server, f"/experiments/{seeded.experiment_id}/runs") as (page, recording):
        page.get_by_role("link", name="alpha", exact=True).wait_for()
        page.get_by_test_id("sort-select-dropdown").click()
        page.get_by_role("menuitemcheckbox", name="loss", exact=True).click()
        assert eventually(lambda: run_names(page), ["alpha", "beta", "gamma"]) == ["alpha", "beta", "gamma"]
        assert page.get_by_test_id("sort-select-dropdown").inner_text() == "Sort: loss"

        page.get_by_test_id("sort-select-dropdown").click()
        page.get_by_test_id("sort-select-asc").click()
        page.keyboard.press("Escape")
        assert eventually(lambda: run_names(page), ["gamma", "beta", "alpha"]) == ["gamma", "beta", "alpha"]
        # The server sorts: the UI asks for the order.
        searches = runs_searches(recording)
        assert any('"order_by":["metrics.`loss` DESC"]' in body for body in searches)
        assert '"order_by":["metrics.`loss` ASC"]' in searches[-1]
        assert [row.get("metrics.`loss`") for row in runs_table(page)] == [
            SEEDED_VALUES[name]["loss"] for name in ("gamma", "beta", "alpha")
        ]
        assert_clean(recording)


# MIN/MAX/LATEST(metrics.k) are the gateway's; a stock `mlflow server` answers them 400.
AGGREGATE_FILTERS = [
    ("MIN(metrics.loss) < 0.2 AND MAX(metrics.loss) > 0.4", ["beta", "alpha"]),
    ("MIN(metrics.loss) < 0.09", ["gamma"]),
    ("max(metrics.loss) <= 0.5", ["gamma", "beta"]),
    ("LATEST(metrics.loss) > 0.095", ["alpha"]),
]


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ('params.lr = "0.2"', ["beta"]),
        ("metrics.accuracy > 0.865", ["gamma", "beta"]),
        ("attributes.run_name LIKE 'a%'", ["alpha"]),
        *AGGREGATE_FILTERS,
    ],
    ids=lambda value: value if isinstance(value, str) else "-".join(value),
)
def test_runs_table_search_box_filters_runs_on_the_server(ui_server, seeded, browser, search, expected):
    rejected = AGAINST_MLFLOW and (search, expected) in AGGREGATE_FILTERS
    with ui_page(browser, ui_server, f"/experiments/{seeded.experiment_id}/runs") as (page, recording):
        page.get_by_role("link", name="alpha", exact=True).wait_for()
        box = page.get_by_placeholder(SEARCH_BOX)
        box.fill(search)
        with page.expect_response(lambda response: response.url.endswith(RUNS_SEARCH)) as answer:
            box.press("Enter")
        assert f'"filter":{json.dumps(search)}' in answer.value.request.post_data
        if rejected:
            assert answer.value.status == 400
            page.get_by_text("Request error").wait_for()
            assert run_names(page) == []
            assert_clean(recording, allowed=ALLOWED_FAILURES | {RUNS_SEARCH})
        else:
            assert answer.value.status == 200
            assert eventually(lambda: run_names(page), expected) == expected
            noun = "run" if len(expected) == 1 else "runs"
            expect(page.get_by_text(f"{len(expected)} matching {noun}")).to_be_visible()
            assert_clean(recording)


@pytest.fixture
def lifecycle_experiment(ui_server):
    """An experiment of its own with three finished runs, for deleting and restoring;
    deleted afterwards, so the experiments list is left as seeded."""
    client = MlflowClient(ui_server.url)
    experiment_id = client.create_experiment("ui-lifecycle-" + uuid.uuid4().hex[:8])
    runs = {}
    for index, name in enumerate(["kept", "dropped-1", "dropped-2"]):
        run = client.create_run(experiment_id, run_name=name, start_time=1_700_000_000_000 + index)
        client.log_metric(run.info.run_id, "loss", 0.5 - 0.1 * index, step=0, timestamp=1_700_000_000_000)
        client.set_terminated(run.info.run_id)
        runs[name] = run.info.run_id
    yield experiment_id, runs
    client.delete_experiment(experiment_id)


def test_runs_are_deleted_and_restored_with_the_state_filter(ui_server, lifecycle_experiment, browser):
    client = MlflowClient(ui_server.url)
    experiment_id, runs = lifecycle_experiment
    dropped = [runs["dropped-1"], runs["dropped-2"]]

    def stages():
        return [client.get_run(run_id).info.lifecycle_stage for run_id in dropped]

    with ui_page(browser, ui_server, f"/experiments/{experiment_id}/runs") as (page, recording):
        page.get_by_role("link", name="dropped-1", exact=True).wait_for()
        assert run_names(page) == ["dropped-2", "dropped-1", "kept"]
        for run_id in dropped:
            row_of(page, run_id).locator(".ag-checkbox-input").check()
        page.get_by_test_id("runs-delete-button").click()
        dialog = page.get_by_role("dialog")
        assert "Selected 2 experiment runs." in dialog.inner_text()
        dialog.get_by_role("button", name="Delete selected").click()
        assert eventually(lambda: run_names(page), ["kept"]) == ["kept"]
        assert stages() == ["deleted", "deleted"]

        page.get_by_test_id("lifecycle-filter").click()
        page.get_by_role("option", name="Deleted").click()
        assert eventually(lambda: run_names(page), ["dropped-2", "dropped-1"]) == ["dropped-2", "dropped-1"]
        assert "lifecycleFilter=Deleted" in page.url
        for run_id in dropped:
            row_of(page, run_id).locator(".ag-checkbox-input").check()
        page.get_by_test_id("runs-restore-button").click()
        dialog = page.get_by_role("dialog")
        assert "2 experiment runs will be restored." in dialog.inner_text()
        dialog.get_by_role("button", name="Restore").click()
        assert eventually(lambda: run_names(page), []) == []
        assert stages() == ["active", "active"]

        page.get_by_test_id("lifecycle-filter").click()
        page.get_by_role("option", name="Active").click()
        expected = ["dropped-2", "dropped-1", "kept"]
        assert eventually(lambda: run_names(page), expected) == expected
        assert [r.info.run_name for r in client.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY)] == []
        assert_clean(recording)


def test_runs_table_downloads_the_runs_as_csv(ui_server, seeded, browser):
    with ui_page(browser, ui_server, f"/experiments/{seeded.experiment_id}/runs") as (page, recording):
        page.get_by_role("link", name="alpha", exact=True).wait_for()
        page.get_by_role("button", name="More options").click()
        with page.expect_download() as download:
            page.get_by_role("menuitem", name="Download 3 runs").click()
        assert download.value.suggested_filename == "runs.csv"
        text = Path(download.value.path()).read_text()

    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert list(rows[0]) == [
        "Start Time", "Duration", "Run ID", "Name", "Source Type", "Source Name", "User", "Status",
        "batch", "lr", "optimizer", "accuracy", "loss", "stage",
    ]
    assert [(row["Name"], row["Run ID"], row["Status"]) for row in rows] == [
        (name, seeded.runs[name], "FINISHED") for name in ("gamma", "beta", "alpha")
    ]
    for row in rows:
        values = SEEDED_VALUES[row["Name"]]
        assert {key: row[key] for key in values} == values
    assert_clean(recording)


# -- Run page -------------------------------------------------------------------------


def test_run_page_shows_the_description_params_metrics_and_tags(ui_server, seeded, browser):
    alpha = seeded.runs["alpha"]
    with ui_page(browser, ui_server, f"/experiments/{seeded.experiment_id}/runs/{alpha}") as (page, recording):
        page.get_by_role("heading", name="alpha").wait_for()
        page.get_by_text("Alpha run description", exact=True).wait_for()
        metrics = page.get_by_role("table").filter(has_text="Metric")
        params = page.get_by_role("table").filter(has_text="Parameter")
        expect(page.get_by_text("Metrics (2)")).to_be_visible()
        expect(page.get_by_text("Parameters (3)")).to_be_visible()
        for table, key, value in [
            (metrics, "loss", "0.1"),
            (metrics, "accuracy", "0.86"),
            (params, "lr", "0.1"),
            (params, "batch", "32"),
            (params, "optimizer", "adam"),
        ]:
            row = table.get_by_role("row").filter(has=page.get_by_text(key, exact=True))
            expect(row.get_by_text(value, exact=True).first).to_be_visible()
        tag = page.get_by_role("status").filter(has_text="stage")
        assert " ".join(tag.inner_text().split()) == "stage : s0"
        expect(page.get_by_text(alpha, exact=True)).to_be_visible()  # the run ID
        screenshot(page, "run")
        assert_clean(recording)


@pytest.fixture
def editable_run(ui_server):
    """A finished run with two tags, in an experiment of its own (deleted afterwards)."""
    client = MlflowClient(ui_server.url)
    experiment_id = client.create_experiment("ui-run-edits-" + uuid.uuid4().hex[:8])
    run = client.create_run(experiment_id, run_name="to-edit", tags={"owner": "ana", "scratch": "x"})
    client.log_param(run.info.run_id, "lr", "0.01")
    client.set_terminated(run.info.run_id)
    yield experiment_id, run.info.run_id
    client.delete_experiment(experiment_id)


def test_run_page_edits_tags_description_and_name(ui_server, editable_run, browser):
    client = MlflowClient(ui_server.url)
    experiment_id, run_id = editable_run

    def user_tags():
        return {k: v for k, v in client.get_run(run_id).data.tags.items() if not k.startswith("mlflow.")}

    def shown_tags(page):
        tags = page.locator("[data-component-id='mlflow.run_details.overview.tags.edit_button']").locator("..")
        return sorted(" ".join(chip.inner_text().split()) for chip in tags.get_by_role("status").all())

    def edit_tags(page, change):
        page.get_by_role("button", name="Edit tags").click()
        dialog = page.get_by_role("dialog")
        change(dialog)
        dialog.get_by_role("button", name="Save tags").click()
        dialog.wait_for(state="hidden")

    def set_tag(dialog, key, value):
        dialog.get_by_role("combobox").fill(key)
        dialog.get_by_role("combobox").press("Enter")
        dialog.get_by_placeholder("Type a value").fill(value)
        dialog.get_by_role("button", name="Add tag").click()

    def remove_tag(dialog, key):
        dialog.get_by_role("status").filter(has_text=key).get_by_role("button").click()

    with ui_page(browser, ui_server, f"/experiments/{experiment_id}/runs/{run_id}") as (page, recording):
        page.get_by_role("heading", name="to-edit").wait_for()
        assert shown_tags(page) == ["owner : ana", "scratch : x"]

        edit_tags(page, lambda dialog: set_tag(dialog, "reviewer", "bo"))
        expected = {"owner": "ana", "scratch": "x", "reviewer": "bo"}
        assert eventually(user_tags, expected) == expected
        shown = ["owner : ana", "reviewer : bo", "scratch : x"]
        assert eventually(lambda: shown_tags(page), shown) == shown

        edit_tags(page, lambda dialog: set_tag(dialog, "owner", "cy"))
        expected = {"owner": "cy", "scratch": "x", "reviewer": "bo"}
        assert eventually(user_tags, expected) == expected

        edit_tags(page, lambda dialog: remove_tag(dialog, "scratch"))
        expected = {"owner": "cy", "reviewer": "bo"}
        assert eventually(user_tags, expected) == expected
        shown = ["owner : cy", "reviewer : bo"]
        assert eventually(lambda: shown_tags(page), shown) == shown

        page.get_by_role("button", name="Edit description").click()
        page.locator("textarea").fill("Tuned **learning rate**")
        page.get_by_test_id("editable-note-save-button").click()
        page.locator("strong", has_text="learning rate").wait_for()  # rendered as Markdown
        note = eventually(lambda: client.get_run(run_id).data.tags.get("mlflow.note.content"), "Tuned **learning rate**")
        assert note == "Tuned **learning rate**"

        page.get_by_test_id("overflow-menu-trigger").click()
        page.get_by_role("menuitem", name="Rename").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_test_id("rename-modal-input").fill("edited")
        dialog.get_by_role("button", name="Save").click()
        page.get_by_role("heading", name="edited", exact=True).wait_for()
        assert eventually(lambda: client.get_run(run_id).info.run_name, "edited") == "edited"
        assert client.get_run(run_id).data.params == {"lr": "0.01"}
        assert_clean(recording)


def test_artifacts_tab_previews_text_and_image(ui_server, seeded, browser):
    alpha = seeded.runs["alpha"]
    path = f"/experiments/{seeded.experiment_id}/runs/{alpha}"
    with ui_page(browser, ui_server, path) as (page, recording):
        page.get_by_role("tab", name="Artifacts").click()
        page.wait_for_url(f"**#{path}/artifacts")
        page.get_by_text("notes.txt", exact=True).click()
        page.get_by_text("hello artifacts", exact=True).wait_for()
        location = f"mlflow-artifacts:/{seeded.experiment_id}/{alpha}/artifacts/notes.txt"
        expect(page.get_by_text(location)).to_be_visible()

        page.get_by_text("plot.png", exact=True).click()
        image = page.get_by_role("img", name="plot.png")
        image.wait_for()
        # Decoded, so the bytes arrived whole: the seeded image is 32 x 32.
        size = eventually(lambda: image.evaluate("img => [img.naturalWidth, img.naturalHeight]"), [32, 32])
        assert size == [32, 32]
        screenshot(page, "artifacts")
        assert_clean(recording)


def test_the_logged_model_of_a_run_shows_its_metrics_params_and_files(ui_server, seeded, browser):
    alpha = seeded.runs["alpha"]
    with ui_page(browser, ui_server, f"/experiments/{seeded.experiment_id}/runs/{alpha}") as (page, recording):
        page.get_by_text("Logged models (1)").wait_for()
        row = page.locator(".ag-row").filter(has=page.get_by_role("link", name="model", exact=True))
        cells = " ".join(row.inner_text().split())
        assert "Ready" in cells and "ui-model" in cells, cells
        row.get_by_role("link", name="model", exact=True).click()

        page.wait_for_url(f"**#/experiments/{seeded.experiment_id}/models/{seeded.logged_model_id}")
        page.get_by_text(seeded.logged_model_id, exact=True).wait_for()
        # log_model links the run's metrics at the model's step (0) to the model. The servers
        # list a model's metrics in orders of their own: the rows are compared as a set.
        expected = [
            "Metric | Dataset | Source run | Value", "loss | - | alpha | 1", "accuracy | - | alpha | 0.5",
            "Parameter | Value", "batch | 32", "lr | 0.1", "optimizer | adam",
            "Run | Input", "alpha | -",
        ]
        assert eventually(lambda: sorted(table_rows(page)), sorted(expected)) == sorted(expected)
        page.get_by_text("Artifacts", exact=True).click()
        for name in ("MLmodel", "conda.yaml", "python_env.yaml", "python_model.pkl", "requirements.txt"):
            page.get_by_text(name, exact=True).wait_for()
        page.get_by_text("MLmodel", exact=True).click()
        page.get_by_text(f"model_id: {seeded.logged_model_id}").wait_for()
        page.get_by_text("python_function:").wait_for()
        assert_clean(recording)
