"""One msgspec Struct per MLflow request message; decoders built once at import.

Scalar fields a client may send with the wrong JSON type are typed ``Any`` so
that the handler answers with MLflow's own "Invalid value ... Hint: Value was
of type ..." text rather than a decoder's. ``null`` means absent (clients such
as MLFlowClient.jl send null for every optional argument). Unknown fields are
ignored: newer clients send fields older servers do not know.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import msgspec

from gateway.mlflow.limits import INT64_MAX, INT64_MIN
from gateway.model import FLOAT_MAX, DatasetSummary, Experiment, Metric, Run, RunInfo


class Request(msgspec.Struct, kw_only=True):
    pass


class KeyValueIn(msgspec.Struct, kw_only=True):
    key: Any = None
    value: Any = None


class MetricIn(msgspec.Struct, kw_only=True, gc=False):
    key: Any = None
    value: Any = None
    timestamp: Any = None
    step: Any = None
    model_id: str | None = None
    dataset_name: str | None = None
    dataset_digest: str | None = None


class RunRef(Request):
    run_id: Any = None
    run_uuid: Any = None


# The shape of a log-batch whose metrics are all plainly valid: a key, a finite
# number, a timestamp and step that are int64 (the timestamp not negative), and
# no other field (no logged model or dataset, not even as null). Decoded in one
# pass with no per-field call in Python; a body of any other shape is decoded
# again as LogBatch and checked field by field.
class PlainMetricIn(msgspec.Struct, kw_only=True, gc=False, forbid_unknown_fields=True):
    key: str
    value: Annotated[float, msgspec.Meta(ge=-FLOAT_MAX, le=FLOAT_MAX)]
    timestamp: Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
    step: Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)] = 0
    # Read as MetricIn's by the full checks, which a batch with a key not yet seen takes.
    model_id: ClassVar[None] = None
    dataset_name: ClassVar[None] = None
    dataset_digest: ClassVar[None] = None


class LogMetric(RunRef):
    key: Any = None
    value: Any = None
    timestamp: Any = None
    step: Any = None
    model_id: str | None = None
    dataset_name: str | None = None
    dataset_digest: str | None = None


class LogParam(RunRef):
    key: Any = None
    value: Any = None


class SetTag(RunRef):
    key: Any = None
    value: Any = None


class DeleteTag(RunRef):
    key: Any = None


class LogBatch(RunRef):
    metrics: list[MetricIn] | None = None
    params: list[KeyValueIn] | None = None
    tags: list[KeyValueIn] | None = None


class PlainLogBatch(RunRef):
    metrics: list[PlainMetricIn] | None = None
    params: list[KeyValueIn] | None = None
    tags: list[KeyValueIn] | None = None


class CreateRun(Request):
    experiment_id: Any = None
    user_id: str | None = None
    run_name: Any = None
    start_time: Any = None
    tags: list[KeyValueIn] | None = None


class UpdateRun(RunRef):
    status: Any = None
    end_time: Any = None
    run_name: Any = None


class GetRun(RunRef):
    pass


class SearchRuns(Request):
    experiment_ids: list[Any] | None = None
    filter: Any = None
    run_view_type: Any = None
    max_results: Any = None
    order_by: list[Any] | None = None
    page_token: str | None = None


class GetMetricHistory(RunRef):
    metric_key: Any = None
    page_token: str | None = None
    max_results: Any = None


class GetMetricHistoryBulkInterval(Request):
    run_ids: list[Any] | None = None
    metric_key: Any = None
    start_step: Any = None
    end_step: Any = None
    max_results: Any = None


class GetMetricHistoryBulk(Request):
    run_id: list[Any] | None = None
    metric_key: Any = None
    max_results: Any = None


class SearchDatasets(Request):
    experiment_ids: list[Any] | None = None


class GraphQLRequest(Request):
    query: Any = None
    variables: Any = None
    operationName: Any = None  # noqa: N815 (the wire's name)


class DatasetIn(msgspec.Struct, kw_only=True):
    name: Any = None
    digest: Any = None
    source_type: Any = None
    source: Any = None
    schema: str | None = None
    profile: str | None = None


class DatasetInputIn(msgspec.Struct, kw_only=True):
    tags: list[KeyValueIn] | None = None
    dataset: DatasetIn | None = None


class ModelInputIn(msgspec.Struct, kw_only=True):
    model_id: Any = None


class LogInputs(RunRef):
    datasets: list[DatasetInputIn] | None = None
    models: list[ModelInputIn] | None = None


class LogModel(RunRef):
    model_json: Any = None


class CreateExperiment(Request):
    name: Any = None
    artifact_location: Any = None
    tags: list[KeyValueIn] | None = None


class ExperimentRef(Request):
    experiment_id: Any = None


class GetExperimentByName(Request):
    experiment_name: Any = None


class UpdateExperiment(ExperimentRef):
    new_name: Any = None


class SetExperimentTag(ExperimentRef):
    key: Any = None
    value: Any = None


class DeleteExperimentTag(ExperimentRef):
    key: Any = None


class DeleteRuns(Request):
    experiment_id: Any = None
    max_timestamp_millis: Any = None
    max_runs: Any = None


class RestoreRuns(Request):
    experiment_id: Any = None
    min_timestamp_millis: Any = None
    max_runs: Any = None


class SearchExperiments(Request):
    max_results: Any = None
    page_token: str | None = None
    filter: Any = None
    order_by: list[Any] | None = None
    view_type: Any = None


# ---- responses ------------------------------------------------------------------------
# Fields left at their default are omitted on the wire, as MLflow's protobuf JSON
# omits unset fields (an empty page has no "runs" and no "next_page_token").


class Response(msgspec.Struct, kw_only=True, omit_defaults=True):
    pass


class Empty(Response):
    """The answer of a write: ``{}``."""


class ErrorResponse(Response):
    """MLflow's error JSON, the body of every 4xx and 5xx."""

    error_code: str
    message: str


class CreateExperimentResponse(Response):
    experiment_id: str


class GetExperimentResponse(Response):
    experiment: Experiment


class SearchExperimentsResponse(Response):
    experiments: list[Experiment] = []
    next_page_token: str | None = None


class RunResponse(Response):
    run: Run


class UpdateRunResponse(Response):
    run_info: RunInfo


class SearchRunsResponse(Response):
    runs: list[Run] = []
    next_page_token: str | None = None


class SearchRunsPage(Response):
    """SearchRunsResponse with each run already encoded."""

    runs: list[msgspec.Raw] = []
    next_page_token: str | None = None


class GetMetricHistoryResponse(Response):
    metrics: list[Metric] = []
    next_page_token: str | None = None


class GetMetricHistoryBulkIntervalResponse(Response):
    metrics: list[Metric] = []


class GetMetricHistoryBulkResponse(msgspec.Struct, kw_only=True):
    metrics: list[Metric]  # present even when empty, as `mlflow server` answers


class GraphQLResponse(msgspec.Struct, kw_only=True):
    data: dict[str, Any] | None  # null when the request failed as a whole, as MLflow answers
    errors: list[str] | None


class SearchDatasetsResponse(Response):
    dataset_summaries: list[DatasetSummary] = []


class DeleteRunsResponse(Response):
    runs_deleted: int


class RestoreRunsResponse(Response):
    runs_restored: int


# Fields that are repeated (lists) in each request, for GET query strings where
# a single occurrence must still become a list.
def list_fields(struct_type: type[msgspec.Struct]) -> frozenset[str]:
    info = msgspec.inspect.type_info(struct_type)
    names = set()
    for field in info.fields:
        types = field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else (field.type,)
        if any(isinstance(t, msgspec.inspect.ListType) for t in types):
            names.add(field.name)
    return frozenset(names)


_decoders: dict[type, msgspec.json.Decoder] = {}
_list_fields: dict[type, frozenset[str]] = {}


def decoder(struct_type: type[msgspec.Struct]) -> msgspec.json.Decoder:
    """The (cached) JSON decoder for a request type."""
    found = _decoders.get(struct_type)
    if found is None:
        found = _decoders[struct_type] = msgspec.json.Decoder(struct_type)
    return found


def repeated_fields(struct_type: type[msgspec.Struct]) -> frozenset[str]:
    found = _list_fields.get(struct_type)
    if found is None:
        found = _list_fields[struct_type] = list_fields(struct_type)
    return found


encoder = msgspec.json.Encoder()
