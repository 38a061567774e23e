"""MLflow 3's logged models, runs/outputs and server-info: what log_model and load_model call.

``mlflow.<flavor>.log_model`` creates a logged model (PENDING), records it as an
output of the run, uploads its files under the model's artifact location
through the artifact proxy, then finalizes it READY. ``load_model`` reads it
back with logged-models/<id> and downloads the files.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.api import model_schemas
from gateway.api.openapi import operation
from gateway.api.routing import Route, under
from gateway.api.decoding import ok, optional_int, optional_str, read, required_str, run_id_of
from gateway.api.schemas import Empty
from gateway.api.state import LOGGED_MODELS, WRITES
from gateway.errors import InvalidParameter
from gateway.mlflow import messages, searches
from gateway.mlflow.limits import MAX_SEARCH_RESULTS
from gateway.mlflow.wire import (
    LOGGED_MODEL_STATUS_BY_NUMBER,
    LOGGED_MODEL_STATUS_BY_WIRE,
    SERVER_INFO_PATHS,
    TRACKING_PREFIXES,
)
from gateway.model import KeyValue, ModelOutput
from gateway.search.logged_models import DEFAULT_MAX_RESULTS, DatasetFilter, LoggedModelOrder

_BAD_NAME_CHARACTERS = ("/", ":", ".", "%", '"', "'")


def _key_values(items: list | None, field: str) -> list[KeyValue]:
    out = []
    for index, item in enumerate(items or ()):
        key = required_str(item.key, f"{field}[{index}].key")
        value = item.value if item.value is not None else ""
        if not isinstance(value, str):
            raise messages.invalid_type(f"{field}[{index}].value", value)
        out.append(KeyValue(key, value))
    return out


def _model_id(request: web.Request) -> str:
    return request.match_info["model_id"]


@operation(
    model_schemas.CreateLoggedModel, model_schemas.LoggedModelResponse, summary="Create a logged model (PENDING)."
)
async def create_logged_model(request: web.Request) -> web.Response:
    message = await read(request, model_schemas.CreateLoggedModel)
    experiment_id = message.experiment_id
    if isinstance(experiment_id, int) and not isinstance(experiment_id, bool):
        experiment_id = str(experiment_id)
    experiment_id = required_str(experiment_id, "experiment_id")
    name = optional_str(message.name, "name")
    # The handler reads an empty name as "no name", as MLflow's does.
    if name and any(c in name for c in _BAD_NAME_CHARACTERS):
        raise InvalidParameter(
            f"Invalid model name ({name!r}) provided. Model name must be a non-empty string "
            f"and cannot contain the following characters: {_BAD_NAME_CHARACTERS}"
        )
    model = await request.app[LOGGED_MODELS].create(
        experiment_id=experiment_id,
        name=name or None,
        model_type=optional_str(message.model_type, "model_type"),
        source_run_id=optional_str(message.source_run_id, "source_run_id"),
        params=_key_values(message.params, "params"),
        tags=_key_values(message.tags, "tags"),
    )
    return ok(model_schemas.LoggedModelResponse(model=model))


@operation(model_schemas.GetLoggedModel, model_schemas.LoggedModelResponse, summary="Get a logged model.")
async def get_logged_model(request: web.Request) -> web.Response:
    message = await read(request, model_schemas.GetLoggedModel)
    allow_deleted = str(message.allow_deleted or "false").lower() == "true"
    model = await request.app[LOGGED_MODELS].get(_model_id(request), allow_deleted=allow_deleted)
    return ok(model_schemas.LoggedModelResponse(model=model))


def _status(value: Any) -> str:
    if value is None or value == "":
        raise messages.missing_value("status")
    if isinstance(value, bool):
        raise messages.invalid_type("status", value)
    if isinstance(value, int) and value in LOGGED_MODEL_STATUS_BY_NUMBER:
        return LOGGED_MODEL_STATUS_BY_NUMBER[value]
    if isinstance(value, str):
        if value in LOGGED_MODEL_STATUS_BY_WIRE:
            return LOGGED_MODEL_STATUS_BY_WIRE[value]
        if value.isdigit() and int(value) in LOGGED_MODEL_STATUS_BY_NUMBER:
            return LOGGED_MODEL_STATUS_BY_NUMBER[int(value)]
    raise messages.invalid_type("status", value)


@operation(
    model_schemas.FinalizeLoggedModel,
    model_schemas.LoggedModelResponse,
    summary="Finalize a logged model: READY once its files are uploaded, or FAILED.",
)
async def finalize_logged_model(request: web.Request) -> web.Response:
    message = await read(request, model_schemas.FinalizeLoggedModel)
    model = await request.app[LOGGED_MODELS].finalize(_model_id(request), _status(message.status))
    return ok(model_schemas.LoggedModelResponse(model=model))


@operation(response=Empty, summary="Mark a logged model deleted.")
async def delete_logged_model(request: web.Request) -> web.Response:
    await request.app[LOGGED_MODELS].delete(_model_id(request))
    return ok()


@operation(model_schemas.LoggedModelKeyValues, Empty, summary="Set tags of a logged model.")
async def set_logged_model_tags(request: web.Request) -> web.Response:
    message = await read(request, model_schemas.LoggedModelKeyValues)
    await request.app[LOGGED_MODELS].set_tags(_model_id(request), _key_values(message.tags, "tags"))
    return ok()


@operation(response=Empty, summary="Delete a tag of a logged model.")
async def delete_logged_model_tag(request: web.Request) -> web.Response:
    await request.app[LOGGED_MODELS].delete_tag(_model_id(request), request.match_info["tag_key"])
    return ok()


@operation(model_schemas.LoggedModelKeyValues, Empty, summary="Log params of a logged model.")
async def log_logged_model_params(request: web.Request) -> web.Response:
    message = await read(request, model_schemas.LoggedModelKeyValues)
    await request.app[LOGGED_MODELS].log_params(_model_id(request), _key_values(message.params, "params"))
    return ok()


@operation(
    model_schemas.SearchLoggedModels,
    model_schemas.SearchLoggedModelsResponse,
    summary="Search logged models of experiments.",
)
async def search_logged_models(request: web.Request) -> web.Response:
    message = await read(request, model_schemas.SearchLoggedModels)
    if not message.experiment_ids:
        raise messages.missing_value("experiment_ids")
    experiment_ids = [int(searches.experiment_id_field(e)) for e in message.experiment_ids]
    max_results = optional_int(message.max_results, "max_results") or DEFAULT_MAX_RESULTS
    if not 0 < max_results <= MAX_SEARCH_RESULTS:
        raise InvalidParameter(
            f"Invalid value {max_results} for parameter 'max_results' supplied: "
            f"it must be between 1 and {MAX_SEARCH_RESULTS}."
        )
    datasets = []
    for index, item in enumerate(message.datasets or ()):
        name = optional_str(item.dataset_name, f"datasets[{index}].dataset_name")
        if not name:
            raise InvalidParameter("`dataset_name` in the `datasets` clause must be specified.")
        digest = optional_str(item.dataset_digest, f"datasets[{index}].dataset_digest")
        datasets.append(DatasetFilter(name, digest or None))
    order_by = []
    for index, item in enumerate(message.order_by or ()):
        field_name = required_str(item.field_name, f"order_by[{index}].field_name")
        if not isinstance(item.ascending, bool):
            raise messages.invalid_type(f"order_by[{index}].ascending", item.ascending)
        order_by.append(
            LoggedModelOrder(
                field_name,
                item.ascending,
                optional_str(item.dataset_name, f"order_by[{index}].dataset_name") or None,
                optional_str(item.dataset_digest, f"order_by[{index}].dataset_digest") or None,
            )
        )
    models, token = await request.app[LOGGED_MODELS].search(
        experiment_ids=experiment_ids,
        filter_string=optional_str(message.filter, "filter") or None,
        order_by=order_by,
        max_results=max_results,
        page_token=optional_str(message.page_token, "page_token") or None,
        datasets=datasets,
    )
    return ok(model_schemas.SearchLoggedModelsResponse(models=models, next_page_token=token or None))


@operation(model_schemas.LogOutputs, Empty, summary="Record logged models as outputs of a run.")
async def log_outputs(request: web.Request) -> web.Response:
    message = await read(request, model_schemas.LogOutputs)
    run_id = run_id_of(message)
    if message.models is None:
        raise messages.missing_value("models")
    outputs = []
    for index, item in enumerate(message.models):
        model_id = required_str(item.model_id, f"models[{index}].model_id")
        step = optional_int(item.step, f"models[{index}].step") or 0
        outputs.append(ModelOutput(model_id, step))
    await request.app[WRITES].settle_run(run_id)
    await request.app[LOGGED_MODELS].log_outputs(run_id, outputs)
    return ok()


@operation(response=model_schemas.ServerInfoResponse, summary="What a client may use on this server.")
async def server_info(request: web.Request) -> web.Response:
    """What a client may use on this server: no multipart or presigned transfers, no workspaces."""
    return ok(
        model_schemas.ServerInfoResponse(
            store_type="SqlStore",
            workspaces_enabled=False,
            trace_archival_enabled=False,
            multipart_uploads_enabled=False,
            multipart_downloads_enabled=False,
            presigned_upload_run_id_supported=False,
            presigned_upload_model_id_supported=False,
            features_enabled={"gateway": False},
        )
    )


ROUTES = [
    *under(TRACKING_PREFIXES, [
        Route("POST", "/logged-models", create_logged_model),
        Route("POST", "/logged-models/search", search_logged_models),
        Route("GET", "/logged-models/{model_id}", get_logged_model),
        Route("PATCH", "/logged-models/{model_id}", finalize_logged_model),
        Route("DELETE", "/logged-models/{model_id}", delete_logged_model),
        Route("PATCH", "/logged-models/{model_id}/tags", set_logged_model_tags),
        Route("DELETE", "/logged-models/{model_id}/tags/{tag_key}", delete_logged_model_tag),
        Route("POST", "/logged-models/{model_id}/params", log_logged_model_params),
        Route("POST", "/runs/outputs", log_outputs),
    ]),
    *(Route("GET", path, server_info) for path in SERVER_INFO_PATHS),
]
