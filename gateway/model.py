"""Domain values shared by the layers: what a write carries, independent of HTTP and SQL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import msgspec

# MLflow clamps infinite metric values to the largest finite double.
FLOAT_MAX = 1.7976931348623157e308


class MetricPoint(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One metric point as stored: value already clamped (NaN kept as NaN)."""

    key: str
    value: float
    timestamp: int
    step: int
    model_id: str | None = None
    dataset_name: str | None = None
    dataset_digest: str | None = None


class KeyValue(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """A param or a tag."""

    key: str
    value: str


class MetricColumns(Sequence[MetricPoint]):
    """A request's points that name no logged model or dataset, as columns per key.

    ``by_key`` maps a key to its points' (steps, timestamps, values) in the
    order they came. Read as a sequence it gives MetricPoints, key by key;
    the writer takes the columns as they are.
    """

    __slots__ = ("by_key", "_count")

    def __init__(self, by_key: dict[str, tuple[list[int], list[int], list[float]]]):
        self.by_key = by_key
        self._count = sum(len(columns[0]) for columns in by_key.values())

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[MetricPoint]:
        for key, (steps, timestamps, values) in self.by_key.items():
            for step, timestamp, value in zip(steps, timestamps, values):
                yield MetricPoint(key, value, timestamp, step)

    def __getitem__(self, index):
        return list(self)[index]


class RunWrite(msgspec.Struct, gc=False):
    """One client request's writes to one run; it commits or fails as a unit.

    ``size_bytes`` is an estimate of the memory it holds while buffered, used
    for the pending-bytes bound.
    """

    run_id: str
    metrics: list[MetricPoint] | MetricColumns = []
    params: list[KeyValue] = []
    tags: list[KeyValue] = []
    size_bytes: int = 0
    # log-batch words a param conflict differently from log-parameter
    is_batch: bool = False

    @property
    def entity_count(self) -> int:
        return len(self.metrics) + len(self.params) + len(self.tags)


# Entities as MLflow's API shows them. Fields left at their default are omitted
# on the wire, as protobuf's JSON omits unset fields.
class _Entity(msgspec.Struct, omit_defaults=True, gc=False):
    pass


class Tag(_Entity):
    key: str
    value: str = ""


class Metric(_Entity):
    key: str
    value: float | str  # NaN travels as the string "NaN", as protobuf JSON writes it
    timestamp: int
    step: int
    dataset_name: str | None = None
    dataset_digest: str | None = None
    model_id: str | None = None
    run_id: str | None = None


class Experiment(_Entity):
    experiment_id: str
    name: str
    artifact_location: str = ""
    lifecycle_stage: str = "active"
    last_update_time: int | None = None
    creation_time: int | None = None
    tags: list[Tag] = []


class RunInfo(_Entity, kw_only=True):
    run_uuid: str
    experiment_id: str
    run_name: str
    user_id: str
    status: str
    start_time: int
    end_time: int | None = None
    artifact_uri: str
    lifecycle_stage: str
    run_id: str


class RunData(_Entity):
    metrics: list[Metric] = []
    params: list[Tag] = []
    tags: list[Tag] = []


class Dataset(_Entity):
    name: str
    digest: str
    source_type: str = ""
    source: str = ""
    schema: str | None = None
    profile: str | None = None


class DatasetSummary(_Entity):
    """A dataset as experiments/search-datasets lists it: where it was logged, and in which context."""

    experiment_id: str
    name: str
    digest: str
    context: str | None = None


class DatasetInput(_Entity):
    tags: list[Tag] = []
    dataset: Dataset | None = None


class ModelInput(_Entity):
    model_id: str


class RunInputs(_Entity):
    dataset_inputs: list[DatasetInput] = []
    model_inputs: list[ModelInput] = []


class RunOutputs(_Entity):
    model_outputs: list[dict] = []


class Run(_Entity):
    info: RunInfo
    data: RunData
    inputs: RunInputs
    outputs: RunOutputs | None = None


def wire_float(value: float) -> float | str:
    """A stored metric value as MLflow's JSON shows it (NaN as the string "NaN")."""
    return "NaN" if value != value else value


class ModelOutput(_Entity):
    """A model a run produced (runs/outputs), at a step."""

    model_id: str
    step: int = 0


class LoggedModelInfo(_Entity, kw_only=True):
    model_id: str
    experiment_id: str
    name: str
    creation_timestamp_ms: int
    last_updated_timestamp_ms: int
    artifact_uri: str
    status: str
    model_type: str | None = None
    source_run_id: str | None = None
    status_message: str | None = None
    tags: list[Tag] = []


class LoggedModelData(_Entity):
    params: list[Tag] = []
    metrics: list[Metric] = []


class LoggedModel(_Entity):
    """An MLflow 3 logged model as logged-models/get shows it."""

    info: LoggedModelInfo
    data: LoggedModelData


# ---- the model registry ---------------------------------------------------------------


class RegistryTag(_Entity):
    """A registered model's or a model version's tag; the value is shown even when empty, as MLflow shows it."""

    key: str
    value: str


class ModelVersion(_Entity, kw_only=True):
    """A version of a registered model, as model-versions/get shows it.

    ``description``, ``run_id`` and ``run_link`` are shown even when empty, as
    MLflow's server shows what its request carried; ``status`` is always READY
    (a version is usable as soon as it is created). Aliases are filled only
    where MLflow fills them (not inside a registered model's latest_versions).
    """

    name: str
    version: str
    creation_timestamp: int
    last_updated_timestamp: int
    current_stage: str
    description: str | None = None
    source: str
    run_id: str | None = None
    status: str
    status_message: str | None = None
    tags: list[RegistryTag] = []
    run_link: str | None = None
    aliases: list[str] = []


class RegisteredModelAlias(_Entity):
    alias: str
    version: str


class RegisteredModel(_Entity, kw_only=True):
    """A registered model with the latest version of each stage, its tags and aliases."""

    name: str
    creation_timestamp: int
    last_updated_timestamp: int | None = None
    description: str | None = None
    latest_versions: list[ModelVersion] = []
    tags: list[RegistryTag] = []
    aliases: list[RegisteredModelAlias] = []
