"""MLflow's model registry: registered models, model versions, their tags and aliases.

What ``mlflow.register_model``, ``log_model(registered_model_name=...)``,
``load_model("models:/name/1")`` / ``"models:/name@alias"`` and every
``MlflowClient`` registry method call. Each handler checks its request as
MLflow's server does, in the same order and words (the request checks first,
then the registry store's rules), then calls the registry store.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.api import registry_schemas
from gateway.api.decoding import ok, optional_str, read, required_str
from gateway.api.openapi import operation
from gateway.api.routing import Route, under
from gateway.api.schemas import Empty, KeyValueIn
from gateway.api.state import REGISTRY
from gateway.errors import InvalidParameter
from gateway.mlflow import messages
from gateway.mlflow import registry as rules
from gateway.mlflow.registry import canonical_stage
from gateway.mlflow.wire import ACTIVE_STAGES, TRACKING_PREFIXES
from gateway.model import KeyValue
from gateway.search.registry import (
    MODEL_VERSIONS_DEFAULT_MAX_RESULTS,
    MODEL_VERSIONS_MAX_RESULTS,
    PROMPT_TAG,
    REGISTERED_MODELS_DEFAULT_MAX_RESULTS,
    REGISTERED_MODELS_MAX_RESULTS,
    compile_model_version_search,
    compile_registered_model_search,
)


# ---- request values --------------------------------------------------------------------


def _name(value: Any, param: str = "name") -> str:
    """A required model name: the request check, then the registry's rules."""
    return rules.model_name(required_str(value, param), param)


def _text(value: Any, param: str) -> str:
    """An optional string field as protobuf reads it: absent is ``""``."""
    found = optional_str(value, param)
    return "" if found is None else found


def _raw_tags(items: list[KeyValueIn] | None) -> list[KeyValue]:
    """Tags as the request gave them (absent keys and values are ``""``), not yet checked."""
    tags = []
    for index, item in enumerate(items or ()):
        tags.append(KeyValue(_text(item.key, f"tags[{index}].key"), _text(item.value, f"tags[{index}].value")))
    return tags


def _checked_tags(tags: list[KeyValue], *, version_tag: bool) -> list[KeyValue]:
    return [rules.registry_tag(tag.key, tag.value, version_tag=version_tag) for tag in tags]


def _string_list(items: list[Any] | None, param: str) -> list[str]:
    for item in items or ():
        if not isinstance(item, str):
            raise messages.invalid_type(param, items)
    return list(items or ())


def _max_results(value: Any, default: int, limit: int) -> int:
    """max_results as MLflow's request check reads it: an integer (or its text) at most ``limit``."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise messages.invalid_type("max_results", value)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise messages.invalid_type("max_results", value) from None
    if number > limit:
        raise messages.invalid_type("max_results", value)
    return number


# ---- registered models -------------------------------------------------------------------


@operation(
    registry_schemas.CreateRegisteredModel,
    registry_schemas.RegisteredModelResponse,
    summary="Create a registered model.",
)
async def create_registered_model(request: web.Request) -> web.Response:
    message = await read(request, registry_schemas.CreateRegisteredModel)
    name = required_str(message.name, "name")
    tags = _raw_tags(message.tags)
    description = _text(message.description, "description")
    rules.model_name(name)
    model = await request.app[REGISTRY].create_registered_model(
        name, _checked_tags(tags, version_tag=False), description
    )
    return ok(registry_schemas.RegisteredModelResponse(registered_model=model))


@operation(
    registry_schemas.RegisteredModelRef,
    registry_schemas.RegisteredModelResponse,
    summary="Get a registered model with the latest version of each stage.",
)
async def get_registered_model(request: web.Request) -> web.Response:
    message = await read(request, registry_schemas.RegisteredModelRef)
    model = await request.app[REGISTRY].get_registered_model(_name(message.name))
    return ok(registry_schemas.RegisteredModelResponse(registered_model=model))


@operation(
    registry_schemas.UpdateRegisteredModel,
    registry_schemas.RegisteredModelResponse,
    summary="Set a registered model's description.",
)
async def update_registered_model(request: web.Request) -> web.Response:
    message = await read(request, registry_schemas.UpdateRegisteredModel)
    name = required_str(message.name, "name")
    description = _text(message.description, "description")
    model = await request.app[REGISTRY].update_registered_model(rules.model_name(name), description)
    return ok(registry_schemas.RegisteredModelResponse(registered_model=model))


@operation(
    registry_schemas.RenameRegisteredModel,
    registry_schemas.RegisteredModelResponse,
    summary="Rename a registered model (its versions follow).",
)
async def rename_registered_model(request: web.Request) -> web.Response:
    message = await read(request, registry_schemas.RenameRegisteredModel)
    name = required_str(message.name, "name")
    new_name = required_str(message.new_name, "new_name")
    rules.model_name(new_name, "new_name")
    model = await request.app[REGISTRY].rename_registered_model(rules.model_name(name), new_name)
    return ok(registry_schemas.RegisteredModelResponse(registered_model=model))


@operation(
    registry_schemas.RegisteredModelRef,
    Empty,
    summary="Delete a registered model with its versions, tags and aliases.",
)
async def delete_registered_model(request: web.Request) -> web.Response:
    message = await read(request, registry_schemas.RegisteredModelRef)
    await request.app[REGISTRY].delete_registered_model(_name(message.name))
    return ok()


@operation(
    registry_schemas.SearchRegistry,
    registry_schemas.SearchRegisteredModelsResponse,
    summary="Search registered models with a filter, an order and pages.",
)
async def search_registered_models(request: web.Request) -> web.Response:
    message = await read(request, registry_schemas.SearchRegistry)
    filter_string = optional_str(message.filter, "filter")
    max_results = _max_results(
        message.max_results, REGISTERED_MODELS_DEFAULT_MAX_RESULTS, REGISTERED_MODELS_MAX_RESULTS
    )
    order_by = _string_list(message.order_by, "order_by")
    page_token = optional_str(message.page_token, "page_token")
    query = compile_registered_model_search(
        filter_string=filter_string, order_by=order_by, max_results=max_results, page_token=page_token
    )
    models, token = await request.app[REGISTRY].search_registered_models(query)
    return ok(registry_schemas.SearchRegisteredModelsResponse(registered_models=models, next_page_token=token))


@operation(
    registry_schemas.GetLatestVersions,
    registry_schemas.ModelVersionsResponse,
    summary="Get the latest version of each stage of a registered model.",
)
async def get_latest_versions(request: web.Request) -> web.Response:
    message = await read(request, registry_schemas.GetLatestVersions)
    name = required_str(message.name, "name")
    stages = _string_list(message.stages, "stages")
    versions = await request.app[REGISTRY].get_latest_versions(rules.model_name(name), stages)
    return ok(registry_schemas.ModelVersionsResponse(model_versions=versions))


@operation(registry_schemas.SetRegisteredModelTag, Empty, summary="Set a tag of a registered model.")
async def set_registered_model_tag(request: web.Request) -> web.Response:
    message = await read(request, registry_schemas.SetRegisteredModelTag)
    name = required_str(message.name, "name")
    key = required_str(message.key, "key")
    value = _text(message.value, "value")
    rules.model_name(name)
    tag = rules.registry_tag(key, value, version_tag=False)
    await request.app[REGISTRY].set_registered_model_tag(name, tag.key, tag.value)
    return ok()


@operation(registry_schemas.DeleteRegisteredModelTag, Empty, summary="Delete a tag of a registered model.")
async def delete_registered_model_tag(request: web.Request) -> web.Response:
    message = await read(request, registry_schemas.DeleteRegisteredModelTag)
    name = required_str(message.name, "name")
    key = required_str(message.key, "key")
    rules.model_name(name)
    await request.app[REGISTRY].delete_registered_model_tag(name, rules.registry_tag_key(key))
    return ok()


# ---- aliases ---------------------------------------------------------------------------


@operation(registry_schemas.SetRegisteredModelAlias, Empty, summary="Point an alias of a model at a version.")
async def set_registered_model_alias(request: web.Request) -> web.Response:
    message = await read(request, registry_schemas.SetRegisteredModelAlias)
    name = required_str(message.name, "name")
    alias = required_str(message.alias, "alias")
    version = required_str(message.version, "version")
    rules.model_name(name)
    rules.alias_not_reserved(rules.alias_name(alias))
    await request.app[REGISTRY].set_alias(name, alias, rules.model_version(version))
    return ok()


@operation(registry_schemas.RegisteredModelAliasRef, Empty, summary="Delete an alias of a registered model.")
async def delete_registered_model_alias(request: web.Request) -> web.Response:
    message = await read(request, registry_schemas.RegisteredModelAliasRef)
    name = required_str(message.name, "name")
    alias = required_str(message.alias, "alias")
    rules.model_name(name)
    await request.app[REGISTRY].delete_alias(name, rules.alias_name(alias))
    return ok()


@operation(
    registry_schemas.RegisteredModelAliasRef,
    registry_schemas.ModelVersionResponse,
    summary="Get the model version an alias points at.",
)
async def get_model_version_by_alias(request: web.Request) -> web.Response:
    message = await read(request, registry_schemas.RegisteredModelAliasRef)
    name = required_str(message.name, "name")
    alias = required_str(message.alias, "alias")
    rules.model_name(name)
    version = await request.app[REGISTRY].get_model_version_by_alias(name, rules.alias_name(alias))
    return ok(registry_schemas.ModelVersionResponse(model_version=version))


# ---- model versions --------------------------------------------------------------------


@operation(
    registry_schemas.CreateModelVersion,
    registry_schemas.ModelVersionResponse,
    summary="Create the next version of a registered model from a run's or a logged model's files.",
)
async def create_model_version(request: web.Request) -> web.Response:
    message = await read(request, registry_schemas.CreateModelVersion)
    name = required_str(message.name, "name")
    source = required_str(message.source, "source")
    run_id = optional_str(message.run_id, "run_id")
    tags = _raw_tags(message.tags)
    run_link = _text(message.run_link, "run_link")
    description = _text(message.description, "description")
    model_id = optional_str(message.model_id, "model_id")
    is_prompt = {tag.key: tag.value for tag in tags}.get(PROMPT_TAG, "false").lower() == "true"
    registry = request.app[REGISTRY]
    resolved = await registry.resolve_source(
        source,
        "" if run_id is None else run_id,  # as protobuf reads an absent field; stored and shown as ""
        model_id,
        is_prompt=is_prompt,
        has_run_id=run_id is not None,
        has_model_id=model_id is not None,
    )
    rules.model_name(name)
    version = await registry.create_model_version(
        name,
        resolved,
        tags=_checked_tags(tags, version_tag=True),
        run_link=run_link,
        description=description,
        is_prompt=is_prompt,
    )
    return ok(registry_schemas.ModelVersionResponse(model_version=version))


@operation(registry_schemas.ModelVersionRef, registry_schemas.ModelVersionResponse, summary="Get a model version.")
async def get_model_version(request: web.Request) -> web.Response:
    message = await read(request, registry_schemas.ModelVersionRef)
    name = required_str(message.name, "name")
    version = required_str(message.version, "version")
    rules.model_name(name)
    found = await request.app[REGISTRY].get_model_version(name, rules.model_version(version))
    return ok(registry_schemas.ModelVersionResponse(model_version=found))


@operation(
    registry_schemas.UpdateModelVersion,
    registry_schemas.ModelVersionResponse,
    summary="Set (or clear) a model version's description.",
)
async def update_model_version(request: web.Request) -> web.Response:
    message = await read(request, registry_schemas.UpdateModelVersion)
    name = required_str(message.name, "name")
    version = required_str(message.version, "version")
    description = optional_str(message.description, "description")
    rules.model_name(name)
    found = await request.app[REGISTRY].update_model_version(name, rules.model_version(version), description)
    return ok(registry_schemas.ModelVersionResponse(model_version=found))


@operation(
    registry_schemas.TransitionModelVersionStage,
    registry_schemas.ModelVersionResponse,
    summary="Move a model version to a stage, optionally archiving the others in it.",
)
async def transition_model_version_stage(request: web.Request) -> web.Response:
    message = await read(request, registry_schemas.TransitionModelVersionStage)
    name = required_str(message.name, "name")
    version = required_str(message.version, "version")
    stage = required_str(message.stage, "stage")
    archive = message.archive_existing_versions
    if archive is None:
        archive = False
    elif not isinstance(archive, bool):
        raise messages.invalid_type("archive_existing_versions", archive)
    canonical = canonical_stage(stage)
    if archive and canonical not in ACTIVE_STAGES:
        # MLflow answers this with INTERNAL_ERROR (500); it is the caller's mistake, so 400 here.
        raise InvalidParameter(
            "Model version transition cannot archive existing model versions because "
            f"'{stage}' is not an Active stage. Valid stages are {list(ACTIVE_STAGES)}"
        )
    rules.model_name(name)
    found = await request.app[REGISTRY].transition_stage(name, rules.model_version(version), canonical, archive)
    return ok(registry_schemas.ModelVersionResponse(model_version=found))


@operation(registry_schemas.ModelVersionRef, Empty, summary="Delete a model version (its number is not reused).")
async def delete_model_version(request: web.Request) -> web.Response:
    message = await read(request, registry_schemas.ModelVersionRef)
    name = required_str(message.name, "name")
    version = rules.model_version(required_str(message.version, "version"))
    await request.app[REGISTRY].delete_model_version(rules.model_name(name), version)
    return ok()


@operation(
    registry_schemas.ModelVersionRef,
    registry_schemas.DownloadUriResponse,
    summary="Where a model version's files are read from.",
)
async def get_model_version_download_uri(request: web.Request) -> web.Response:
    message = await read(request, registry_schemas.ModelVersionRef)
    # MLflow checks no request fields here: absent ones reach the store's rules as "".
    name = rules.model_name(_text(message.name, "name"))
    version = rules.model_version(_text(message.version, "version"))
    uri = await request.app[REGISTRY].get_download_uri(name, version)
    return ok(registry_schemas.DownloadUriResponse(artifact_uri=uri))


@operation(
    registry_schemas.SearchRegistry,
    registry_schemas.SearchModelVersionsResponse,
    summary="Search model versions with a filter, an order and pages.",
)
async def search_model_versions(request: web.Request) -> web.Response:
    return ok(await answer_search_model_versions(request.app, await read(request, registry_schemas.SearchRegistry)))


async def answer_search_model_versions(
    app: web.Application, message: registry_schemas.SearchRegistry
) -> registry_schemas.SearchModelVersionsResponse:
    """model-versions/search, also asked through GraphQL."""
    filter_string = optional_str(message.filter, "filter")
    max_results = _max_results(message.max_results, MODEL_VERSIONS_DEFAULT_MAX_RESULTS, MODEL_VERSIONS_MAX_RESULTS)
    order_by = _string_list(message.order_by, "order_by")
    page_token = optional_str(message.page_token, "page_token")
    if max_results < 1:
        raise InvalidParameter(
            f"Invalid value for max_results. It must be a positive integer, but got {max_results}"
        )
    query = compile_model_version_search(
        filter_string=filter_string, order_by=order_by, max_results=max_results, page_token=page_token
    )
    versions, token = await app[REGISTRY].search_model_versions(query)
    return registry_schemas.SearchModelVersionsResponse(model_versions=versions, next_page_token=token)


@operation(registry_schemas.SetModelVersionTag, Empty, summary="Set a tag of a model version.")
async def set_model_version_tag(request: web.Request) -> web.Response:
    message = await read(request, registry_schemas.SetModelVersionTag)
    name = required_str(message.name, "name")
    version = required_str(message.version, "version")
    key = required_str(message.key, "key")
    value = _text(message.value, "value")
    rules.model_name(name)
    number = rules.model_version(version)
    tag = rules.registry_tag(key, value, version_tag=True)
    await request.app[REGISTRY].set_model_version_tag(name, number, tag.key, tag.value)
    return ok()


@operation(registry_schemas.DeleteModelVersionTag, Empty, summary="Delete a tag of a model version.")
async def delete_model_version_tag(request: web.Request) -> web.Response:
    message = await read(request, registry_schemas.DeleteModelVersionTag)
    name = required_str(message.name, "name")
    version = required_str(message.version, "version")
    key = required_str(message.key, "key")
    rules.model_name(name)
    number = rules.model_version(version)
    await request.app[REGISTRY].delete_model_version_tag(name, number, rules.registry_tag_key(key))
    return ok()


# The HTTP methods are those MLflow's protocol declares (the stock client's REST store uses them).
ROUTES = under(TRACKING_PREFIXES, [
    Route("POST", "/registered-models/create", create_registered_model),
    Route("POST", "/registered-models/rename", rename_registered_model),
    Route("PATCH", "/registered-models/update", update_registered_model),
    Route("DELETE", "/registered-models/delete", delete_registered_model),
    Route("GET", "/registered-models/get", get_registered_model),
    Route("GET", "/registered-models/search", search_registered_models),
    Route("POST", "/registered-models/get-latest-versions", get_latest_versions),
    Route("GET", "/registered-models/get-latest-versions", get_latest_versions),
    Route("POST", "/registered-models/set-tag", set_registered_model_tag),
    Route("DELETE", "/registered-models/delete-tag", delete_registered_model_tag),
    Route("POST", "/registered-models/alias", set_registered_model_alias),
    Route("DELETE", "/registered-models/alias", delete_registered_model_alias),
    Route("GET", "/registered-models/alias", get_model_version_by_alias),
    Route("POST", "/model-versions/create", create_model_version),
    Route("PATCH", "/model-versions/update", update_model_version),
    Route("POST", "/model-versions/transition-stage", transition_model_version_stage),
    Route("DELETE", "/model-versions/delete", delete_model_version),
    Route("GET", "/model-versions/get", get_model_version),
    Route("GET", "/model-versions/search", search_model_versions),
    Route("GET", "/model-versions/get-download-uri", get_model_version_download_uri),
    Route("POST", "/model-versions/set-tag", set_model_version_tag),
    Route("DELETE", "/model-versions/delete-tag", delete_model_version_tag),
])
