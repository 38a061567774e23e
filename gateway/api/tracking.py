"""Handlers for every tracking REST path: decode, validate as MLflow does, call ingest or store, encode.

Every path is served under both /api/2.0/mlflow/ and /ajax-api/2.0/mlflow/.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from aiohttp import web

from gateway import __version__, telemetry
from gateway.api import decoding, schemas
from gateway.api.decoding import (
    enum_name,
    key_values,
    ok,
    optional_int,
    optional_str,
    read,
    required_str,
    run_id_of,
)
from gateway.api.openapi import operation
from gateway.api.routing import Route, under
from gateway.api.state import RUN_ANSWERS, STORE, WRITES
from gateway.errors import InvalidParameter
from gateway.mlflow import experiments, inputs, messages, numbers, searches
from gateway.mlflow.limits import (
    DEFAULT_SEARCH_RESULTS,
    MAX_BULK_INTERVAL_POINTS,
    MAX_BULK_INTERVAL_RUNS,
    MAX_DATASET_SEARCH_EXPERIMENTS,
    MAX_HISTORY_BULK_RUNS,
    MAX_HISTORY_PAGE,
    MAX_RUNS_PER_BULK_CALL,
)
from gateway.mlflow.wire import RUN_STATUSES, TRACKING_PREFIXES, UI_PREFIX, VIEW_TYPES
from gateway.model import DatasetInput, Dataset, Tag


# ---- run writes (through the accumulator) -------------------------------------------


@operation(schemas.LogMetric, schemas.Empty, summary="Log one metric point of a run.")
async def log_metric(request: web.Request) -> web.Response:
    message = await read(request, schemas.LogMetric)
    await request.app[WRITES].submit(decoding.log_metric_write(message, request.content_length))
    return ok()


@operation(schemas.LogParam, schemas.Empty, summary="Log a param of a run (write-once).")
async def log_param(request: web.Request) -> web.Response:
    message = await read(request, schemas.LogParam)
    await request.app[WRITES].submit(decoding.log_param_write(message, request.content_length))
    return ok()


@operation(schemas.SetTag, schemas.Empty, summary="Set a tag of a run.")
async def set_tag(request: web.Request) -> web.Response:
    message = await read(request, schemas.SetTag)
    await request.app[WRITES].submit(decoding.set_tag_write(message, request.content_length))
    return ok()


# The body bound is MLflow's own 1,000,000 bytes, answered here with MLflow's 400.
@operation(
    schemas.LogBatch, schemas.Empty, summary="Log metrics, params and tags of a run in one call.", max_body_bytes=None
)
async def log_batch(request: web.Request) -> web.Response:
    # The decoded message is not kept while the write waits for its flush: its objects (one a
    # point) are freed at once, while their memory is still in the cache for the next decode.
    write = decoding.log_batch_write(await decoding.read_log_batch(request), request.content_length)
    if not write.entity_count:
        await request.app[WRITES].check_run_active(write.run_id)
        return ok()
    await request.app[WRITES].submit(write)
    return ok()


# ---- runs ---------------------------------------------------------------------------


@operation(schemas.CreateRun, schemas.RunResponse, summary="Create a run.", max_body_bytes=None)
async def create_run(request: web.Request) -> web.Response:
    message = await read(request, schemas.CreateRun)
    experiment_id = message.experiment_id
    if experiment_id is None or experiment_id == "":
        experiment_id = "0"
    elif not isinstance(experiment_id, (str, int)) or isinstance(experiment_id, bool):
        raise messages.invalid_type("experiment_id", experiment_id)
    tags = key_values(message.tags, "tag")
    run = await request.app[STORE].create_run(
        experiment_id=experiment_id,
        user_id=message.user_id or "",
        run_name=optional_str(message.run_name, "run_name") or None,
        start_time=optional_int(message.start_time, "start_time"),
        tags=tags,
    )
    return ok(schemas.RunResponse(run=run))


@operation(schemas.GetRun, schemas.RunResponse, summary="Get a run with its latest metrics, params and tags.")
async def get_run(request: web.Request) -> web.Response:
    return ok(await answer_get_run(request.app, await read(request, schemas.GetRun)))


async def answer_get_run(app: web.Application, message: schemas.GetRun) -> schemas.RunResponse:
    """runs/get, also asked through GraphQL."""
    run_id = run_id_of(message)
    await app[WRITES].settle_run(run_id)
    return schemas.RunResponse(run=await app[STORE].get_run(run_id))


@operation(schemas.UpdateRun, schemas.UpdateRunResponse, summary="Update a run's status, end time or name.")
async def update_run(request: web.Request) -> web.Response:
    message = await read(request, schemas.UpdateRun)
    run_id = run_id_of(message)
    status = enum_name(message.status, RUN_STATUSES, "status")
    end_time = optional_int(message.end_time, "end_time")
    run_name = optional_str(message.run_name, "run_name")
    await request.app[WRITES].settle_run(run_id)
    info = await request.app[STORE].update_run(run_id, status=status, end_time=end_time, run_name=run_name)
    return ok(schemas.UpdateRunResponse(run_info=info))


@operation(schemas.RunRef, schemas.Empty, summary="Mark a run deleted.")
async def delete_run(request: web.Request) -> web.Response:
    message = await read(request, schemas.RunRef)
    run_id = run_id_of(message)
    await request.app[WRITES].settle_run(run_id)
    await request.app[STORE].set_run_lifecycle(run_id, "deleted")
    request.app[WRITES].forget_run(run_id)
    return ok()


@operation(schemas.RunRef, schemas.Empty, summary="Restore a deleted run.")
async def restore_run(request: web.Request) -> web.Response:
    message = await read(request, schemas.RunRef)
    run_id = run_id_of(message)
    await request.app[STORE].set_run_lifecycle(run_id, "active")
    request.app[WRITES].forget_run(run_id)
    return ok()


@operation(schemas.DeleteTag, schemas.Empty, summary="Delete a tag of a run.")
async def delete_tag(request: web.Request) -> web.Response:
    message = await read(request, schemas.DeleteTag)
    run_id = run_id_of(message)
    key = required_str(message.key, "key")
    await request.app[WRITES].settle_run(run_id)
    await request.app[STORE].delete_tag(run_id, key)
    return ok()


@operation(
    schemas.LogInputs, schemas.Empty, summary="Log dataset and model inputs of a run.", max_body_bytes=None,
)
async def log_inputs(request: web.Request) -> web.Response:
    message = await read(request, schemas.LogInputs)
    run_id = run_id_of(message, check_form=True)
    datasets = []
    for index, item in enumerate(message.datasets or ()):
        d = item.dataset
        if d is None:
            raise messages.missing_value(f"datasets[{index}].dataset")
        dataset = Dataset(
            name=required_str(d.name, f"datasets[{index}].dataset.name"),
            digest=required_str(d.digest, f"datasets[{index}].dataset.digest"),
            source_type=required_str(d.source_type, f"datasets[{index}].dataset.source_type"),
            source=required_str(d.source, f"datasets[{index}].dataset.source"),
            schema=d.schema,
            profile=d.profile,
        )
        tags = [
            Tag(required_str(t.key, f"datasets[{index}].tags.key"), required_str(t.value, f"datasets[{index}].tags.value"))
            for t in item.tags or ()
        ]
        datasets.append(DatasetInput(tags=tags, dataset=dataset))
    inputs.dataset_inputs(datasets)
    model_ids = [required_str(m.model_id, "models.model_id") for m in message.models or ()]
    await request.app[STORE].log_inputs(run_id, datasets, model_ids)
    return ok()


@operation(schemas.LogModel, schemas.Empty, summary="Record a logged model of a run.", max_body_bytes=None)
async def log_model(request: web.Request) -> web.Response:
    message = await read(request, schemas.LogModel)
    run_id = run_id_of(message)
    model_json = required_str(message.model_json, "model_json")
    try:
        model = json.loads(model_json)
    except ValueError:
        raise InvalidParameter("Malformed model info. Field 'model_json' must be valid JSON.") from None
    if not isinstance(model, dict) or not {"artifact_path", "flavors", "utc_time_created", "run_id"} <= set(model):
        raise InvalidParameter(
            "Model json is missing mandatory fields: artifact_path, flavors, utc_time_created, run_id"
        )
    await request.app[WRITES].settle_run(run_id)
    await request.app[STORE].append_logged_model(run_id, model)
    return ok()


@operation(
    schemas.SearchRuns, schemas.SearchRunsResponse, summary="Search runs with a filter, an order and pages.",
)
async def search_runs(request: web.Request) -> web.Response:
    app = request.app
    answers = app[RUN_ANSWERS]
    if not answers.max_bytes:
        return ok(await answer_search_runs(app, await read(request, schemas.SearchRuns)))
    kept: dict[str, bytes] = {}  # the answers known to the store, taken as it asks

    def known(run_id: str, version: int) -> bool:
        answer = answers.get(run_id, version)
        if answer is not None:
            kept[run_id] = answer
        return answer is not None

    page, token = await app[STORE].search_runs_by_version(
        **await _search_arguments(app, await read(request, schemas.SearchRuns)), known=known
    )
    runs = []
    for run_id, version, run in page:
        if run is None:
            answer = kept[run_id]
        else:
            answer = schemas.encoder.encode(run)
            answers.put(run_id, version, answer)
        runs.append(msgspec.Raw(answer))
    telemetry.SEARCH_RUNS.labels("read").inc(len(page) - len(kept))
    telemetry.SEARCH_RUNS.labels("kept").inc(len(kept))
    return ok(schemas.SearchRunsPage(runs=runs, next_page_token=token or None))


async def answer_search_runs(app: web.Application, message: schemas.SearchRuns) -> schemas.SearchRunsResponse:
    """runs/search, also asked through GraphQL."""
    runs, token = await app[STORE].search_runs(**await _search_arguments(app, message))
    return schemas.SearchRunsResponse(runs=runs, next_page_token=token or None)


async def _search_arguments(app: web.Application, message: schemas.SearchRuns) -> dict:
    """The store's arguments of a runs/search request, once the writes buffered before it have landed."""
    max_results = optional_int(message.max_results, "max_results")
    max_results = searches.max_results(DEFAULT_SEARCH_RESULTS if max_results is None else max_results)
    experiment_ids = [int(searches.experiment_id_field(e)) for e in message.experiment_ids or ()]
    order_by = [required_str(o, "order_by") for o in message.order_by or ()]
    view = enum_name(message.run_view_type, VIEW_TYPES, "run_view_type", "ACTIVE_ONLY")
    filter_string = optional_str(message.filter, "filter") or None
    await app[WRITES].settle_all()
    return dict(
        experiment_ids=experiment_ids,
        filter_string=filter_string,
        run_view_type=view,
        order_by=order_by,
        max_results=max_results,
        page_token=message.page_token or None,
    )


# ---- metrics ------------------------------------------------------------------------


@operation(
    schemas.GetMetricHistory, schemas.GetMetricHistoryResponse,
    summary="Get every point of one metric of a run, in pages.",
)
async def get_metric_history(request: web.Request) -> web.Response:
    message = await read(request, schemas.GetMetricHistory)
    run_id = run_id_of(message)
    key = required_str(message.metric_key, "metric_key")
    max_results = optional_int(message.max_results, "max_results")
    if max_results is not None and max_results <= 0:
        raise InvalidParameter(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be a positive integer."
        )
    if max_results is None or max_results > MAX_HISTORY_PAGE:
        max_results = MAX_HISTORY_PAGE
    await request.app[WRITES].settle_run(run_id)
    metrics, token = await request.app[STORE].get_metric_history(
        run_id, key, max_results=max_results, page_token=message.page_token or None
    )
    return ok(schemas.GetMetricHistoryResponse(metrics=metrics, next_page_token=token or None))


@operation(
    schemas.GetMetricHistoryBulkInterval, schemas.GetMetricHistoryBulkIntervalResponse,
    summary="Get sampled points of one metric of several runs.",
)
async def get_metric_history_bulk_interval(request: web.Request) -> web.Response:
    message = await read(request, schemas.GetMetricHistoryBulkInterval)
    return ok(await answer_get_metric_history_bulk_interval(request.app, message))


async def answer_get_metric_history_bulk_interval(
    app: web.Application, message: schemas.GetMetricHistoryBulkInterval
) -> schemas.GetMetricHistoryBulkIntervalResponse:
    """metrics/get-history-bulk-interval, also asked through GraphQL."""
    run_ids = message.run_ids or []
    if not run_ids:
        raise messages.missing_value("run_ids")
    if len(run_ids) > MAX_BULK_INTERVAL_RUNS:
        raise InvalidParameter(
            f"GetMetricHistoryBulkInterval request must specify at most {MAX_BULK_INTERVAL_RUNS} run_ids. "
            f"Received {len(run_ids)} run_ids. See the API docs for more information about request parameters."
        )
    run_ids = [required_str(r, "run_ids") for r in run_ids]
    key = required_str(message.metric_key, "metric_key")
    max_results = optional_int(message.max_results, "max_results")
    if max_results is None:
        max_results = MAX_BULK_INTERVAL_POINTS
    elif not 1 <= max_results <= MAX_BULK_INTERVAL_POINTS:
        raise InvalidParameter(
            f"max_results must be between 1 and {MAX_BULK_INTERVAL_POINTS}. "
            "See the API docs for more information about request parameters."
        )
    start_step = optional_int(message.start_step, "start_step")
    end_step = optional_int(message.end_step, "end_step")
    if (start_step is None) != (end_step is None):
        raise InvalidParameter(
            "If either start step or end step are specified, both must be specified."
        )
    if start_step is not None and start_step > end_step:
        raise InvalidParameter(
            f"end_step must be greater than start_step. Found start_step={start_step} and end_step={end_step}."
        )
    for run_id in run_ids:
        await app[WRITES].settle_run(run_id)
    metrics = await app[STORE].get_metric_history_sampled(
        run_ids, key, max_results=max_results, start_step=start_step, end_step=end_step
    )
    return schemas.GetMetricHistoryBulkIntervalResponse(metrics=metrics)


@operation(
    schemas.GetMetricHistoryBulk, schemas.GetMetricHistoryBulkResponse,
    summary="Get every point of one metric of several runs (the web UI's older chart call).",
)
async def get_metric_history_bulk(request: web.Request) -> web.Response:
    message = await read(request, schemas.GetMetricHistoryBulk)
    run_ids = [required_str(r, "run_id") for r in message.run_id or ()]
    searches.id_count("GetMetricHistoryBulk", "run_id", run_ids, MAX_HISTORY_BULK_RUNS)
    if message.metric_key is None:
        raise InvalidParameter("GetMetricHistoryBulk request must specify a metric_key.")
    key = required_str(message.metric_key, "metric_key")
    max_results = optional_int(message.max_results, "max_results")
    max_results = MAX_HISTORY_PAGE if max_results is None else min(max_results, MAX_HISTORY_PAGE)
    for run_id in run_ids:
        await request.app[WRITES].settle_run(run_id)
    metrics = await request.app[STORE].get_metric_history_bulk(run_ids, key, max(max_results, 0))
    return ok(schemas.GetMetricHistoryBulkResponse(metrics=metrics))


# ---- experiments --------------------------------------------------------------------


@operation(schemas.CreateExperiment, schemas.CreateExperimentResponse, summary="Create an experiment.")
async def create_experiment(request: web.Request) -> web.Response:
    message = await read(request, schemas.CreateExperiment)
    name = experiments.experiment_name(message.name)
    artifact_location = optional_str(message.artifact_location, "artifact_location") or None
    tags = key_values(message.tags, "experiment")
    experiment_id = await request.app[STORE].create_experiment(name, artifact_location, tags)
    return ok(schemas.CreateExperimentResponse(experiment_id=experiment_id))


@operation(schemas.ExperimentRef, schemas.GetExperimentResponse, summary="Get an experiment by id.")
async def get_experiment(request: web.Request) -> web.Response:
    return ok(await answer_get_experiment(request.app, await read(request, schemas.ExperimentRef)))


async def answer_get_experiment(app: web.Application, message: schemas.ExperimentRef) -> schemas.GetExperimentResponse:
    """experiments/get, also asked through GraphQL."""
    experiment_id = required_str(message.experiment_id, "experiment_id")
    return schemas.GetExperimentResponse(experiment=await app[STORE].get_experiment(experiment_id))


@operation(schemas.GetExperimentByName, schemas.GetExperimentResponse, summary="Get an experiment by name.")
async def get_experiment_by_name(request: web.Request) -> web.Response:
    message = await read(request, schemas.GetExperimentByName)
    name = required_str(message.experiment_name, "experiment_name")
    experiment = await request.app[STORE].get_experiment_by_name(name)
    return ok(schemas.GetExperimentResponse(experiment=experiment))


@operation(schemas.UpdateExperiment, schemas.Empty, summary="Rename an experiment.")
async def update_experiment(request: web.Request) -> web.Response:
    message = await read(request, schemas.UpdateExperiment)
    experiment_id = required_str(message.experiment_id, "experiment_id")
    new_name = optional_str(message.new_name, "new_name")
    if new_name:
        experiments.experiment_name(new_name)
        await request.app[STORE].rename_experiment(experiment_id, new_name)
    return ok()


@operation(schemas.ExperimentRef, schemas.Empty, summary="Mark an experiment deleted.")
async def delete_experiment(request: web.Request) -> web.Response:
    message = await read(request, schemas.ExperimentRef)
    experiment_id = required_str(message.experiment_id, "experiment_id")
    await request.app[WRITES].settle_all()
    await request.app[STORE].set_experiment_lifecycle(experiment_id, "deleted")
    request.app[WRITES].forget_all_runs()
    return ok()


@operation(schemas.ExperimentRef, schemas.Empty, summary="Restore a deleted experiment.")
async def restore_experiment(request: web.Request) -> web.Response:
    message = await read(request, schemas.ExperimentRef)
    experiment_id = required_str(message.experiment_id, "experiment_id")
    await request.app[STORE].set_experiment_lifecycle(experiment_id, "active")
    return ok()


@operation(schemas.SetExperimentTag, schemas.Empty, summary="Set a tag of an experiment.")
async def set_experiment_tag(request: web.Request) -> web.Response:
    message = await read(request, schemas.SetExperimentTag)
    experiment_id = required_str(message.experiment_id, "experiment_id")
    key = required_str(message.key, "key")
    value = experiments.experiment_tag(key, message.value if message.value is not None else "")
    await request.app[STORE].set_experiment_tag(experiment_id, key, value)
    return ok()


@operation(schemas.DeleteExperimentTag, schemas.Empty, summary="Delete a tag of an experiment.")
async def delete_experiment_tag(request: web.Request) -> web.Response:
    message = await read(request, schemas.DeleteExperimentTag)
    experiment_id = required_str(message.experiment_id, "experiment_id")
    key = required_str(message.key, "key")
    await request.app[STORE].delete_experiment_tag(experiment_id, key)
    return ok()


@operation(schemas.SearchExperiments, schemas.SearchExperimentsResponse, summary="Search experiments.")
async def search_experiments(request: web.Request) -> web.Response:
    message = await read(request, schemas.SearchExperiments)
    max_results = optional_int(message.max_results, "max_results")
    max_results = searches.page_size(DEFAULT_SEARCH_RESULTS if max_results is None else max_results)
    view = enum_name(message.view_type, VIEW_TYPES, "view_type", "ACTIVE_ONLY")
    order_by = [required_str(o, "order_by") for o in message.order_by or ()]
    experiments, token = await request.app[STORE].search_experiments(
        filter_string=optional_str(message.filter, "filter") or None,
        view_type=view,
        order_by=order_by,
        max_results=max_results,
        page_token=message.page_token or None,
    )
    return ok(schemas.SearchExperimentsResponse(experiments=experiments, next_page_token=token or None))


@operation(
    schemas.SearchDatasets, schemas.SearchDatasetsResponse,
    summary="List the datasets logged to the runs of experiments (the web UI's dataset filter).",
)
async def search_datasets(request: web.Request) -> web.Response:
    return ok(await answer_search_datasets(request.app, await read(request, schemas.SearchDatasets)))


async def answer_search_datasets(app: web.Application, message: schemas.SearchDatasets) -> schemas.SearchDatasetsResponse:
    """experiments/search-datasets, also asked through GraphQL."""
    experiment_ids = message.experiment_ids or []
    searches.id_count("SearchDatasets", "experiment_id", experiment_ids, MAX_DATASET_SEARCH_EXPERIMENTS)
    ids = [searches.experiment_id_field(e) for e in experiment_ids]
    return schemas.SearchDatasetsResponse(dataset_summaries=await app[STORE].search_datasets(ids))


# ---- Databricks bulk run operations --------------------------------------------------

def experiment_id_field(value: Any) -> str:
    """An experiment id given as a string or (MLFlowClient.jl, databricks-sdk) a number."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return required_str(value, "experiment_id")


def bulk_max_runs(value: Any) -> int:
    max_runs = optional_int(value, "max_runs")
    if max_runs is None:
        return MAX_RUNS_PER_BULK_CALL
    if not 1 <= max_runs <= MAX_RUNS_PER_BULK_CALL:
        raise InvalidParameter(
            f"Invalid value {max_runs} for parameter 'max_runs' supplied: "
            f"max_runs must be between 1 and {MAX_RUNS_PER_BULK_CALL}."
        )
    return max_runs


@operation(
    schemas.DeleteRuns, schemas.DeleteRunsResponse,
    summary="Delete the runs of an experiment created up to a time (admin).",
)
async def delete_runs(request: web.Request) -> web.Response:
    message = await read(request, schemas.DeleteRuns)
    experiment_id = experiment_id_field(message.experiment_id)
    if message.max_timestamp_millis is None:
        raise messages.missing_value("max_timestamp_millis")
    max_timestamp = numbers.int64_field(message.max_timestamp_millis, "max_timestamp_millis")
    max_runs = bulk_max_runs(message.max_runs)
    await request.app[WRITES].settle_all()
    deleted = await request.app[STORE].bulk_delete_runs(experiment_id, max_timestamp, max_runs)
    request.app[WRITES].forget_all_runs()
    return ok(schemas.DeleteRunsResponse(runs_deleted=deleted))


@operation(
    schemas.RestoreRuns, schemas.RestoreRunsResponse,
    summary="Restore the runs of an experiment deleted since a time (admin).",
)
async def restore_runs(request: web.Request) -> web.Response:
    message = await read(request, schemas.RestoreRuns)
    experiment_id = experiment_id_field(message.experiment_id)
    if message.min_timestamp_millis is None:
        raise messages.missing_value("min_timestamp_millis")
    min_timestamp = numbers.int64_field(message.min_timestamp_millis, "min_timestamp_millis")
    max_runs = bulk_max_runs(message.max_runs)
    restored = await request.app[STORE].bulk_restore_runs(experiment_id, min_timestamp, max_runs)
    request.app[WRITES].forget_all_runs()
    return ok(schemas.RestoreRunsResponse(runs_restored=restored))


# ---- service ------------------------------------------------------------------------


@operation(response=None, summary="Liveness: answers OK.", content_type="text/plain")
async def health(request: web.Request) -> web.Response:
    return web.Response(text="OK")


@operation(response=None, summary="The gateway's version.", content_type="text/plain")
async def version(request: web.Request) -> web.Response:
    return web.Response(text=__version__)


# Each handler is marked with @operation (its request and response structs) so that
# /openapi.json describes it; the scope a path needs is decided in gateway/api/auth.py.
_TRACKING_ROUTES = [
    Route("POST", "/experiments/create", create_experiment),
    Route("GET", "/experiments/get", get_experiment),
    Route("GET", "/experiments/get-by-name", get_experiment_by_name),
    Route("POST", "/experiments/search", search_experiments),
    Route("GET", "/experiments/search", search_experiments),
    Route("GET", "/experiments/list", search_experiments),
    Route("POST", "/experiments/update", update_experiment),
    Route("POST", "/experiments/delete", delete_experiment),
    Route("POST", "/experiments/restore", restore_experiment),
    Route("POST", "/experiments/set-experiment-tag", set_experiment_tag),
    Route("POST", "/experiments/delete-experiment-tag", delete_experiment_tag),
    Route("POST", "/runs/create", create_run),
    Route("GET", "/runs/get", get_run),
    Route("POST", "/runs/update", update_run),
    Route("POST", "/runs/delete", delete_run),
    Route("POST", "/runs/restore", restore_run),
    Route("POST", "/runs/log-metric", log_metric),
    Route("POST", "/runs/log-parameter", log_param),
    Route("POST", "/runs/set-tag", set_tag),
    Route("POST", "/runs/delete-tag", delete_tag),
    Route("POST", "/runs/log-batch", log_batch),
    Route("POST", "/runs/log-inputs", log_inputs),
    Route("POST", "/runs/log-model", log_model),
    Route("POST", "/runs/search", search_runs),
    Route("GET", "/runs/search", search_runs),
    Route("GET", "/metrics/get-history", get_metric_history),
    Route("GET", "/metrics/get-history-bulk-interval", get_metric_history_bulk_interval),
    Route("POST", "/databricks/runs/delete-runs", delete_runs),
    Route("POST", "/databricks/runs/restore-runs", restore_runs),
]


# Paths `mlflow server` serves for its web UI only, under /ajax-api/2.0/mlflow.
_UI_ROUTES = [
    Route("GET", "/metrics/get-history-bulk", get_metric_history_bulk),
    Route("POST", "/experiments/search-datasets", search_datasets),
]


# The run writes the accumulator buffers, which backpressure and outages refuse (429, 503).
BUFFERED_WRITES = ("/runs/log-metric", "/runs/log-parameter", "/runs/set-tag", "/runs/log-batch")

ROUTES = [
    *under(TRACKING_PREFIXES, _TRACKING_ROUTES),
    *under([UI_PREFIX], _UI_ROUTES),
    Route("GET", "/health", health),
    Route("GET", "/version", version),
]
