"""Request and response messages of the model registry (registered models, versions, aliases).

As in schemas.py: fields a client may send with the wrong JSON type are ``Any``
so handlers answer with MLflow's own messages; ``null`` means absent; unknown
fields are ignored.
"""

from __future__ import annotations

from typing import Any

from gateway.api.schemas import KeyValueIn, Request, Response
from gateway.model import ModelVersion, RegisteredModel


class RegisteredModelRef(Request):
    name: Any = None


class CreateRegisteredModel(RegisteredModelRef):
    tags: list[KeyValueIn] | None = None
    description: Any = None
    deployment_job_id: Any = None


class RenameRegisteredModel(RegisteredModelRef):
    new_name: Any = None


class UpdateRegisteredModel(RegisteredModelRef):
    description: Any = None
    deployment_job_id: Any = None


class SearchRegistry(Request):
    """registered-models/search and model-versions/search (both GET)."""

    filter: Any = None
    max_results: Any = None
    order_by: list[Any] | None = None
    page_token: Any = None


class GetLatestVersions(RegisteredModelRef):
    stages: list[Any] | None = None


class SetRegisteredModelTag(RegisteredModelRef):
    key: Any = None
    value: Any = None


class DeleteRegisteredModelTag(RegisteredModelRef):
    key: Any = None


class SetRegisteredModelAlias(RegisteredModelRef):
    alias: Any = None
    version: Any = None


class RegisteredModelAliasRef(RegisteredModelRef):
    alias: Any = None


class CreateModelVersion(RegisteredModelRef):
    source: Any = None
    run_id: Any = None
    tags: list[KeyValueIn] | None = None
    run_link: Any = None
    description: Any = None
    model_id: Any = None


class ModelVersionRef(RegisteredModelRef):
    version: Any = None


class UpdateModelVersion(ModelVersionRef):
    description: Any = None


class TransitionModelVersionStage(ModelVersionRef):
    stage: Any = None
    archive_existing_versions: Any = None


class SetModelVersionTag(ModelVersionRef):
    key: Any = None
    value: Any = None


class DeleteModelVersionTag(ModelVersionRef):
    key: Any = None


# ---- responses ------------------------------------------------------------------------


class RegisteredModelResponse(Response):
    registered_model: RegisteredModel


class SearchRegisteredModelsResponse(Response):
    registered_models: list[RegisteredModel] = []
    next_page_token: str | None = None


class ModelVersionResponse(Response):
    model_version: ModelVersion


class ModelVersionsResponse(Response):
    """get-latest-versions: one version per stage asked for."""

    model_versions: list[ModelVersion] = []


class SearchModelVersionsResponse(Response):
    model_versions: list[ModelVersion] = []
    next_page_token: str | None = None


class DownloadUriResponse(Response):
    artifact_uri: str
