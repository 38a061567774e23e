"""Request messages of the artifact listing, logged-model and run-output calls.

As in schemas.py: fields a client may send with the wrong JSON type are ``Any``
so handlers answer with MLflow's own messages; unknown fields are ignored.
"""

from __future__ import annotations

from typing import Any

from gateway.api.schemas import KeyValueIn, Request, RunRef


class ListArtifacts(RunRef):
    path: Any = None
    page_token: Any = None


class ListLoggedModelArtifacts(Request):
    artifact_directory_path: Any = None
    page_token: Any = None


class ListProxiedArtifacts(Request):
    path: Any = None


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
