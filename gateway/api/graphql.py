"""POST /graphql: MLflow's GraphQL API, as MLflow's web UI calls it.

The schema (mlflow.graphql beside this file) is parsed and executed by
graphql-core. Each root field decodes its input into the same request struct
as the REST path of the same name and calls the same answer function, so both
validate and answer alike. The answer structs are read as GraphQL objects by
field name (``runUuid`` reads ``run_uuid``); what a struct leaves unset reads
as protobuf's default, as on `mlflow server`: "" for text, "0" for a number,
[] for a list, an empty object for a message.

Like `mlflow server`, the endpoint answers ``{"data": ..., "errors": [messages]}``
with status 200; a field whose call failed is null and its MLflow message is in
``errors``.
"""

from __future__ import annotations

import inspect
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    build_schema,
    execute,
    parse,
    validate,
)

from gateway.api import model_schemas, registry_schemas, schemas
from gateway.api.artifacts import answer_list_run_artifacts
from gateway.api.decoding import ok, read
from gateway.api.openapi import operation
from gateway.api.routing import Route
from gateway.api.registry import answer_search_model_versions
from gateway.api.tracking import (
    answer_get_experiment,
    answer_get_metric_history_bulk_interval,
    answer_get_run,
    answer_search_datasets,
    answer_search_runs,
)
from gateway.api.state import REGISTRY, STORE
from gateway.errors import GatewayError, InvalidParameter
from gateway.search.registry import compile_model_version_search

# What one query may ask, as `mlflow server` bounds it.
MAX_DEPTH = 10
MAX_SELECTIONS = 1000
MAX_ROOT_FIELDS = 10
MAX_ALIASES = 10


# ---- the schema --------------------------------------------------------------------


def _parse_long(node: Any, _variables: Any = None) -> int | None:
    if isinstance(node, (IntValueNode, StringValueNode)):
        try:
            return int(node.value)
        except ValueError:
            return None
    return None


def _build_schema() -> GraphQLSchema:
    schema = build_schema((Path(__file__).with_name("mlflow.graphql")).read_text())
    long_string = schema.type_map["LongString"]
    assert isinstance(long_string, GraphQLScalarType)
    long_string.serialize = str
    long_string.parse_value = int
    long_string.parse_literal = _parse_long
    return schema


SCHEMA = _build_schema()


@lru_cache(maxsize=512)
def _snake(field_name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", field_name).lower()


def _default_of(return_type: Any) -> Any:
    """What protobuf reads for a field the message leaves unset."""
    if isinstance(return_type, GraphQLNonNull):
        return_type = return_type.of_type
    if isinstance(return_type, GraphQLList):
        return []
    if isinstance(return_type, GraphQLObjectType):
        return _EMPTY
    if return_type.name == "Boolean":
        return False
    if return_type.name in ("Float", "Int", "LongString"):
        return 0
    if return_type.name == "String":
        return ""
    return None  # an enum left unset


_EMPTY: dict[str, Any] = {}


def _read_field(source: Any, info: GraphQLResolveInfo, **_args: Any) -> Any:
    """Every non-root field: the attribute (or key) of the same name in snake case."""
    name = _snake(info.field_name)
    value = source.get(name) if isinstance(source, dict) else getattr(source, name, None)
    if value is None:
        return None if info.field_name == "apiError" else _default_of(info.return_type)
    if (value == "NaN" or value != value) and _is_float(info.return_type):
        return None  # GraphQL's Float has no NaN; MLflow answers null
    return value


def _is_float(return_type: Any) -> bool:
    return getattr(return_type, "name", None) == "Float"


# ---- root fields -------------------------------------------------------------------


def _input(info: GraphQLResolveInfo, raw: dict[str, Any] | None, struct_type: type) -> Any:
    """The GraphQL input as the REST path's request struct (``experimentId`` -> ``experiment_id``)."""
    data = {_snake(key): value for key, value in (raw or {}).items() if value is not None}
    try:
        return msgspec.convert(data, struct_type, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidParameter(f"Invalid input: {exc}") from None


class _Root:
    """The root value: one method per root field (named in snake case), each answering like its REST path."""

    def __init__(self, app: web.Application):
        self.app = app
        self._experiments: dict[str, Any] = {}

    async def mlflow_get_experiment(self, info: GraphQLResolveInfo, input: Any = None) -> Any:  # noqa: A002 (the field's argument)
        return await answer_get_experiment(self.app, _input(info, input, schemas.ExperimentRef))

    async def mlflow_get_run(self, info: GraphQLResolveInfo, input: Any = None) -> Any:  # noqa: A002 (the field's argument)
        answer = await answer_get_run(self.app, _input(info, input, schemas.GetRun))
        return {"run": _RunWithLinks(self, answer.run)}

    async def mlflow_search_runs(self, info: GraphQLResolveInfo, input: Any = None) -> Any:  # noqa: A002 (the field's argument)
        answer = await answer_search_runs(self.app, _input(info, input, schemas.SearchRuns))
        versions = await self._versions_of([run.info.run_id for run in answer.runs]) if _asks(
            info, "runs", "modelVersions"
        ) else {}
        runs = [_RunWithLinks(self, run, versions.get(run.info.run_id, [])) for run in answer.runs]
        return {"runs": runs, "next_page_token": answer.next_page_token}

    async def mlflow_get_metric_history_bulk_interval(self, info: GraphQLResolveInfo, input: Any = None) -> Any:  # noqa: A002 (the field's argument)
        message = _input(info, input, schemas.GetMetricHistoryBulkInterval)
        return await answer_get_metric_history_bulk_interval(self.app, message)

    async def mlflow_list_artifacts(self, info: GraphQLResolveInfo, input: Any = None) -> Any:  # noqa: A002 (the field's argument)
        return await answer_list_run_artifacts(self.app, _input(info, input, model_schemas.ListArtifacts))

    async def mlflow_search_model_versions(self, info: GraphQLResolveInfo, input: Any = None) -> Any:  # noqa: A002 (the field's argument)
        return await answer_search_model_versions(self.app, _input(info, input, registry_schemas.SearchRegistry))

    async def mlflow_search_datasets(self, info: GraphQLResolveInfo, input: Any = None) -> Any:  # noqa: A002 (the field's argument)
        return await answer_search_datasets(self.app, _input(info, input, schemas.SearchDatasets))

    def test(self, info: GraphQLResolveInfo, **args: Any) -> Any:
        return {"output": args.get("inputString")}

    test_mutation = test

    async def experiment(self, experiment_id: str) -> Any:
        """An experiment, read once per query however many runs name it."""
        if experiment_id not in self._experiments:
            self._experiments[experiment_id] = (await self.app[STORE].get_experiment(experiment_id))
        return self._experiments[experiment_id]

    async def _versions_of(self, run_ids: list[str]) -> dict[str, list[Any]]:
        """The model versions registered from each of these runs, in one search."""
        if not run_ids:
            return {}
        quoted = ", ".join(f"'{run_id}'" for run_id in run_ids)
        query = compile_model_version_search(
            filter_string=f"run_id IN ({quoted})", order_by=[], max_results=200_000, page_token=None
        )
        versions, _ = await self.app[REGISTRY].search_model_versions(query)
        found: dict[str, list[Any]] = {}
        for version in versions:
            found.setdefault(version.run_id, []).append(version)
        return found


class _RunWithLinks:
    """A run as MlflowRunExtension shows it: the run's fields, its experiment and its model versions."""

    __slots__ = ("_root", "_run", "_versions")

    def __init__(self, root: _Root, run: Any, versions: list[Any] | None = None):
        self._root = root
        self._run = run
        self._versions = versions

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run, name)

    async def experiment(self, info: GraphQLResolveInfo) -> Any:
        return await self._root.experiment(self._run.info.experiment_id)

    async def model_versions(self, info: GraphQLResolveInfo) -> Any:
        if self._versions is None:
            self._versions = (await self._root._versions_of([self._run.info.run_id])).get(self._run.info.run_id, [])
        return self._versions


def _asks(info: GraphQLResolveInfo, *path: str) -> bool:
    """Whether the query selects ``path`` below the current root field (fragments included)."""
    selections = [node.selection_set for node in info.field_nodes]
    for name in path:
        found = []
        for selection_set in selections:
            for field in _fields(selection_set, info.fragments):
                if field.name.value == name and field.selection_set is not None:
                    found.append(field.selection_set)
        if not found:
            return False
        selections = found
    return True


def _fields(selection_set: SelectionSetNode | None, fragments: dict[str, FragmentDefinitionNode]) -> list[FieldNode]:
    fields: list[FieldNode] = []
    pending = list(selection_set.selections) if selection_set else []
    while pending:
        selection = pending.pop()
        if isinstance(selection, FieldNode):
            fields.append(selection)
        elif isinstance(selection, InlineFragmentNode):
            pending.extend(selection.selection_set.selections)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value in fragments:
            pending.extend(fragments[selection.name.value].selection_set.selections)
    return fields


def _resolve(source: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
    """Root fields call the root value's method; a run's links call the run's; the rest read a field."""
    if info.parent_type.name in ("Query", "Mutation"):
        return getattr(source, _snake(info.field_name))(info, **args)
    if isinstance(source, _RunWithLinks) and info.field_name in ("experiment", "modelVersions"):
        return getattr(source, _snake(info.field_name))(info)
    return _read_field(source, info, **args)


# ---- bounds ------------------------------------------------------------------------


def check_bounds(document: DocumentNode) -> str | None:
    """MLflow's bounds on one query's shape: depth, selections, root fields, aliases; the message if over."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    root_fields = 0
    most_aliases = 0
    selections = 0
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        pending = [(definition.selection_set, 1)]
        while pending:
            selection_set, depth = pending.pop()
            if depth > MAX_DEPTH:
                return f"Query exceeds maximum depth of {MAX_DEPTH}"
            fields = _fields(selection_set, fragments)
            most_aliases = max(most_aliases, sum(1 for f in fields if f.alias is not None))
            for field in fields:
                selections += 1
                if selections > MAX_SELECTIONS:
                    return f"Query exceeds maximum total selections of {MAX_SELECTIONS}"
                if depth == 1:
                    root_fields += 1
                if field.selection_set is not None:
                    pending.append((field.selection_set, depth + 1))
    for what, count, limit in (("root fields", root_fields, MAX_ROOT_FIELDS), ("aliases", most_aliases, MAX_ALIASES)):
        if count > limit:
            return f"GraphQL queries should have at most {limit} {what}, got {count} {what}."
    return None


# ---- the endpoint ------------------------------------------------------------------

def _error_message(error: GraphQLError) -> str:
    original = error.original_error
    if isinstance(original, GatewayError):
        return original.message
    if original is not None and not isinstance(original, GraphQLError):
        raise original  # not a client's fault: the error middleware answers it
    return error.message


async def _run(app: web.Application, message: schemas.GraphQLRequest) -> tuple[dict[str, Any] | None, list[str]]:
    """Parse, bound, validate and execute one request: its data and its error messages."""
    if not isinstance(message.query, str) or not message.query.strip():
        raise InvalidParameter("Missing value for required parameter 'query'.")
    variables = message.variables
    if isinstance(variables, str) and variables:
        try:
            variables = msgspec.json.decode(variables)
        except msgspec.DecodeError:
            raise InvalidParameter("Malformed GraphQL request: 'variables' is not JSON.") from None
    if variables is not None and not isinstance(variables, dict):
        raise InvalidParameter("Malformed GraphQL request: 'variables' must be an object.")
    try:
        document = parse(message.query)
    except GraphQLError as exc:
        return None, [exc.message]
    too_big = check_bounds(document)
    if too_big:
        return None, [too_big]
    invalid = validate(SCHEMA, document)
    if invalid:
        return None, [error.message for error in invalid]
    result = execute(
        SCHEMA,
        document,
        root_value=_Root(app),
        variable_values=variables or None,
        operation_name=message.operationName if isinstance(message.operationName, str) else None,
        field_resolver=_resolve,
    )
    if inspect.isawaitable(result):
        result = await result
    return result.data, [_error_message(e) for e in result.errors or ()]


@operation(
    schemas.GraphQLRequest, schemas.GraphQLResponse, summary="MLflow's GraphQL API (the web UI's reads).",
    max_body_bytes=None,
)
async def graphql_endpoint(request: web.Request) -> web.Response:
    """POST (or GET) /graphql: ``{data, errors}`` with status 200, as `mlflow server` answers."""
    message = await read(request, schemas.GraphQLRequest)
    data, errors = await _run(request.app, message)
    return ok(schemas.GraphQLResponse(data=data, errors=errors or None))


ROUTES = [Route("POST", "/graphql", graphql_endpoint), Route("GET", "/graphql", graphql_endpoint)]
