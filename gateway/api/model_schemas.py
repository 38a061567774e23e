"""Request and response messages of the artifact, logged-model, run-output and server-info calls.

As in schemas.py: fields a client may send with the wrong JSON type are ``Any``
so handlers answer with MLflow's own messages; unknown fields are ignored.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.api.schemas import KeyValueIn, Request, Response, RunRef
from gateway.model import LoggedModel


class ListArtifacts(RunRef):
    path: Any = None
    page_token: Any = None


class ListLoggedModelArtifacts(Request):
    artifact_directory_path: Any = None
    page_token: Any = None


class ListProxiedArtifacts(Request):
    path: Any = None


class GetLoggedModel(Request):
    allow_deleted: Any = None


class GetRunArtifact(RunRef):
    path: Any = None


class GetModelVersionArtifact(Request):
    name: Any = None
    version: Any = None
    path: Any = None


class UploadRunArtifact(Request):
    run_uuid: Any = None
    path: Any = None


class GetLoggedModelArtifact(Request):
    artifact_file_path: Any = None


class CreateLoggedModel(Request):
    experiment_id: Any = None
    name: Any = None
    model_type: Any = None
    source_run_id: Any = None
    params: list[KeyValueIn] | None = None
    tags: list[KeyValueIn] | None = None


class FinalizeLoggedModel(Request):
    model_id: Any = None
    status: Any = None


class LoggedModelKeyValues(Request):
    model_id: Any = None
    params: list[KeyValueIn] | None = None
    tags: list[KeyValueIn] | None = None


class SearchDataset(Request):
    dataset_name: Any = None
    dataset_digest: Any = None


class SearchOrderBy(Request):
    field_name: Any = None
    ascending: Any = True
    dataset_name: Any = None
    dataset_digest: Any = None


class SearchLoggedModels(Request):
    experiment_ids: list[Any] | None = None
    filter: Any = None
    datasets: list[SearchDataset] | None = None
    max_results: Any = None
    order_by: list[SearchOrderBy] | None = None
    page_token: Any = None


class ModelOutputIn(Request):
    model_id: Any = None
    step: Any = None


class LogOutputs(RunRef):
    models: list[ModelOutputIn] | None = None


# ---- responses ------------------------------------------------------------------------


class FileInfo(msgspec.Struct, omit_defaults=True, gc=False):
    """One entry of an artifact listing; ``file_size`` is given for files only."""

    path: str
    is_dir: bool
    file_size: int | None = None


class ListArtifactsResponse(Response):
    """artifacts/list and a logged model's artifacts/directories: paths are relative to ``root_uri``."""

    root_uri: str
    files: list[FileInfo] = []


class ListProxiedArtifactsResponse(Response):
    """The artifact proxy's listing: entries of the folder, by name."""

    files: list[FileInfo] = []


class LoggedModelResponse(Response):
    model: LoggedModel


class SearchLoggedModelsResponse(Response):
    models: list[LoggedModel] = []
    next_page_token: str | None = None


class ServerInfoResponse(Response):
    """What a client may use on this server."""

    store_type: str
    workspaces_enabled: bool
    trace_archival_enabled: bool
    multipart_uploads_enabled: bool
    multipart_downloads_enabled: bool
    presigned_upload_run_id_supported: bool
    presigned_upload_model_id_supported: bool
    features_enabled: dict[str, bool]
