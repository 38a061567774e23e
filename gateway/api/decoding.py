"""Decoding and MLflow validation of requests, shared by `gateway serve` and `gateway relay`.

Nothing here touches a store: a request becomes either MLflow's error or the
values a handler acts on (for the four run writes, a :class:`RunWrite`).
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

import msgspec
from aiohttp import web

from gateway.api import schemas
from gateway.errors import InvalidParameter
from gateway.mlflow import experiments, messages, numbers, runs
from gateway.mlflow.limits import MAX_BATCH_BODY_BYTES
from gateway.model import KeyValue, MetricPoint, RunWrite


_EMPTY = b"{}"


async def read(
    request: web.Request, struct_type: type[msgspec.Struct], plain: type[msgspec.Struct] | None = None
) -> Any:
    """Decode a request message: GET from the query string only, others from a JSON body.

    ``plain`` is a stricter form of ``struct_type`` tried first on a body: the
    message comes as ``plain`` when the body fits it, else as ``struct_type``.

    Raises:
        InvalidParameter: wrong content type, malformed JSON, or a field of the wrong shape
            (the message names the path, e.g. ``$.metrics[3]``).
    """
    if request.method == "GET":
        return read_query(request, struct_type)
    content_type = request.headers.get("Content-Type")
    if content_type is None:
        raise InvalidParameter("Bad Request. Content-Type header is missing.")
    if content_type.split(";")[0].strip() != "application/json":
        raise InvalidParameter("Bad Request. Content-Type must be one of ['application/json'].")
    body = await request.read()
    if plain is not None:
        # A body of another shape is decoded again as struct_type, which names what is wrong.
        with contextlib.suppress(msgspec.MsgspecError):
            return schemas.decoder(plain).decode(body)
    return decode_body(body, struct_type)


def read_query(request: web.Request, struct_type: type[msgspec.Struct]) -> Any:
    """Decode a request message from the query string (a list field takes every repeated value)."""
    repeated = schemas.repeated_fields(struct_type)
    data: dict[str, Any] = {}
    for name in set(request.query.keys()):
        data[name] = request.query.getall(name) if name in repeated else request.query.get(name)
    try:
        return msgspec.convert(data, struct_type, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidParameter(f"Invalid query parameter: {exc}") from None


def decode_body(body: bytes, struct_type: type[msgspec.Struct]) -> Any:
    if not body.strip():
        return struct_type()
    try:
        return schemas.decoder(struct_type).decode(body)
    except msgspec.ValidationError as exc:
        if body.lstrip()[:1] == b'"':
            # Older clients post their JSON double-encoded as a string.
            try:
                inner = json.loads(body)
            except ValueError:
                inner = None
            if isinstance(inner, str):
                return decode_body(inner.encode(), struct_type)
        raise _wrong_type(body, exc) from None
    except msgspec.DecodeError as exc:
        raise InvalidParameter(f"Malformed JSON in request body: {exc}") from None


_ERROR_PATH = re.compile(r"at `\$((?:\.\w+|\[\d+\])*)`$")
_PATH_STEP = re.compile(r"\.(\w+)|\[(\d+)\]")


def _wrong_type(body: bytes, error: msgspec.ValidationError) -> InvalidParameter:
    """MLflow's message for a field of the wrong JSON type, naming the field and quoting its value.

    The decoder's own text is kept only where the field cannot be found again.
    """
    match = _ERROR_PATH.search(str(error))
    if match and match.group(1):
        try:
            value: Any = json.loads(body)  # the standard library's reader also takes NaN and Infinity
        except ValueError:
            return InvalidParameter(f"Invalid request body: {error}")
        name = ""
        for field, index in _PATH_STEP.findall(match.group(1)):
            try:
                value = value[field] if field else value[int(index)]
            except (KeyError, IndexError, TypeError):
                break
            name = field or name
        else:
            return messages.invalid_type(name, value)
    return InvalidParameter(f"Invalid request body: {error}")


def ok(payload: Any = None) -> web.Response:
    body = _EMPTY if payload is None else schemas.encoder.encode(payload)
    return web.Response(body=body, content_type="application/json")


def required_str(value: Any, param: str) -> str:
    if value is None or value == "":
        raise messages.missing_value(param)
    if not isinstance(value, str):
        raise messages.invalid_type(param, value)
    return value


def optional_str(value: Any, param: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise messages.invalid_type(param, value)
    return value


def optional_int(value: Any, param: str) -> int | None:
    if value is None or value == "":
        return None
    return numbers.int64_field(value, param)


def run_id_of(message: Any, *, check_form: bool = False) -> str:
    """The run id of a request (run_id, or run_uuid as older clients send).

    MLflow checks the id's form only on log-batch and log-inputs; elsewhere a
    malformed id is simply not found.
    """
    value = message.run_id if message.run_id not in (None, "") else message.run_uuid
    value = required_str(value, "run_id")
    return runs.run_id(value) if check_form else value


def enum_name(value: Any, names: dict[int, str], param: str, default: str | None = None) -> str | None:
    """An enum given by name or by number (MLFlowClient.jl sends numbers)."""
    if value is None or value == "":
        return default
    if isinstance(value, str):
        if value in names.values():
            return value
        if value.isdigit() and int(value) in names:
            return names[int(value)]
    elif isinstance(value, int) and not isinstance(value, bool) and value in names:
        return names[value]
    raise messages.invalid_type(param, value)


def key_values(items: list[schemas.KeyValueIn] | None, kind: str) -> list[KeyValue]:
    out = []
    for index, item in enumerate(items or ()):
        if kind == "param":
            value = runs.param(item.key, item.value, path=f"params[{index}]")
        elif kind == "tag":
            value = runs.run_tag(item.key, item.value, path=f"tags[{index}]")
        else:
            value = experiments.experiment_tag(item.key, item.value)
        out.append(KeyValue(item.key, value))
    return out


def metric_point(message: Any, path: str = "") -> MetricPoint:
    """A metric of a request as stored; ``path`` is ``metrics[3]`` inside a log-batch."""
    prefix = path + "." if path else ""
    if message.value is None:
        raise messages.missing_value(f"{prefix}value")
    value = numbers.metric_value(message.value, f"{prefix}value")
    if message.timestamp is None:
        raise messages.missing_value(f"{prefix}timestamp")
    timestamp = numbers.int64_field(message.timestamp, f"{prefix}timestamp")
    step = 0 if message.step is None else numbers.int64_field(message.step, f"{prefix}step")
    key = runs.metric_key(message.key, f"{prefix}name")
    runs.metric_timestamp(timestamp, key, value, path)
    return MetricPoint(
        key,
        value,
        timestamp,
        step,
        message.model_id or None,
        message.dataset_name or None,
        message.dataset_digest or None,
    )


def _size_estimate(body_bytes: int, entities: int) -> int:
    # Python objects take several times their JSON size; a bound that is
    # generous keeps the pending-bytes limit honest about real memory.
    return 512 + 3 * body_bytes + 160 * entities


# ---- the four run writes -------------------------------------------------------------


def log_metric_write(message: schemas.LogMetric, content_length: int | None) -> RunWrite:
    """The write a runs/log-metric request carries.

    Raises:
        InvalidParameter: MLflow's error for the first invalid field.
    """
    run_id = run_id_of(message)
    if message.key is None or message.key == "":
        raise messages.missing_value("key")
    point = metric_point(message)
    return RunWrite(run_id, metrics=[point], size_bytes=_size_estimate(content_length or 0, 1))


def log_param_write(message: schemas.LogParam, content_length: int | None) -> RunWrite:
    """The write a runs/log-parameter request carries (the value truncated as MLflow does)."""
    run_id = run_id_of(message)
    required_str(message.key, "key")
    value = runs.param(message.key, message.value if message.value is not None else "")
    return RunWrite(run_id, params=[KeyValue(message.key, value)], size_bytes=_size_estimate(content_length or 0, 1))


def set_tag_write(message: schemas.SetTag, content_length: int | None) -> RunWrite:
    """The write a runs/set-tag request carries."""
    run_id = run_id_of(message)
    required_str(message.key, "key")
    value = runs.run_tag(message.key, message.value if message.value is not None else "")
    return RunWrite(run_id, tags=[KeyValue(message.key, value)], size_bytes=_size_estimate(content_length or 0, 1))


def log_batch_write(message: schemas.LogBatch | schemas.PlainLogBatch, content_length: int | None) -> RunWrite:
    """The write a runs/log-batch request carries, checked in MLflow's order.

    The result may be empty (no entities): MLflow then only checks the run.

    Raises:
        InvalidParameter: MLflow's error, including the batch limits and duplicate param keys.
    """
    run_id = run_id_of(message, check_form=True)
    metrics_in = message.metrics or []
    params_in = message.params or []
    tags_in = message.tags or []
    if isinstance(message, schemas.PlainLogBatch):
        metrics = runs.plain_metric_columns(metrics_in)
    else:
        metrics = runs.plain_metric_points(metrics_in)
    if metrics is None:
        for index, item in enumerate(metrics_in):
            for field in ("key", "value", "timestamp"):
                if getattr(item, field) in (None, ""):
                    raise messages.missing_value(f"metrics[{index}].{field}")
    for kind, items in (("params", params_in), ("tags", tags_in)):
        for index, item in enumerate(items):
            if item.key in (None, ""):
                raise messages.missing_value(f"{kind}[{index}].key")
    if metrics is None:
        metrics = [metric_point(item, f"metrics[{index}]") for index, item in enumerate(metrics_in)]
    params = key_values(params_in, "param")
    tags = key_values(tags_in, "tag")
    runs.batch_limits(len(metrics), len(params), len(tags))
    runs.param_keys_unique(params)
    size = _size_estimate(content_length or 0, len(metrics) + len(params) + len(tags))
    return RunWrite(run_id, metrics=metrics, params=params, tags=tags, size_bytes=size, is_batch=True)


async def read_log_batch(request: web.Request) -> schemas.LogBatch:
    """Decode a log-batch request, refusing a body over MLflow's 1 MB limit before reading it."""
    if request.content_length is not None and request.content_length > MAX_BATCH_BODY_BYTES:
        raise runs.batch_body_too_large(request.content_length)
    message = await read(request, plain=schemas.PlainLogBatch, struct_type=schemas.LogBatch)
    body_size = len(await request.read())  # already read: a chunked body is measured here
    if body_size > MAX_BATCH_BODY_BYTES:
        raise runs.batch_body_too_large(body_size)
    return message
