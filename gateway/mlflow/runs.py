"""The rules of a run's writes: metric, param and tag keys and values, run ids, and log-batch.

The order MLflow checks a request in: the request checks of every field in
order (for log-batch: presence of each metric's key, value and timestamp, then
each param's and tag's key), then the run id's format, then each metric, param
and tag in turn, then :func:`batch_limits`, then :func:`param_keys_unique`.

Keys that passed once are remembered in a bounded set, so the hot path of a batch
that repeats the same thousand metric keys costs one set lookup per key.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from typing import Any

from gateway.errors import GatewayError, InvalidParameter, NotFound
from gateway.mlflow.limits import (
    INT64_MAX,
    INT64_MIN,
    MAX_BATCH_BODY_BYTES,
    MAX_ENTITIES_PER_BATCH,
    MAX_KEY_LENGTH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VALUE_LENGTH,
    MAX_PARAMS_PER_BATCH,
    MAX_RUN_TAG_VALUE_LENGTH,
    MAX_TAGS_PER_BATCH,
)
from gateway.mlflow.messages import BAD_CHARACTERS, BAD_PATH, invalid_type, invalid_value, join_path, missing_value, too_long
from gateway.model import FLOAT_MAX, KeyValue, MetricColumns, MetricPoint, RunWrite


# Bound on each cache of values already found valid; past it the cache starts over.
VALID_CACHE_LIMIT = 100_000

# ``match`` with a trailing ``$`` (not ``fullmatch``): MLflow's rule lets one
# trailing newline through, and a key it accepts must not be rejected here.
KEY_CHARACTERS = re.compile(r"[\w/. :-]*$")

_RUN_ID = re.compile(r"[a-zA-Z0-9][\w-]{0,255}$")

valid_keys: set[str] = set()

_valid_run_ids: set[str] = set()


def _remember(cache: set[str], value: str) -> None:
    if len(cache) >= VALID_CACHE_LIMIT:
        cache.clear()
    cache.add(value)


def plain_metric_points(items: Iterable[Any]) -> list[MetricPoint] | None:
    """The points of a batch's metrics when every field is plainly valid, else None.

    The common case (finite float values, integer timestamps and steps in
    range, keys seen before) costs no per-field call. On None the caller runs
    the full checks, which name the first problem exactly as MLflow does; for
    input both accept, both give the same points.
    """
    keys = valid_keys
    points: list[MetricPoint] = []
    append = points.append
    for item in items:
        key = item.key
        value = item.value
        timestamp = item.timestamp
        step = item.step
        if key.__class__ is not str or key not in keys:
            return None
        if value.__class__ is float:
            if not -FLOAT_MAX <= value <= FLOAT_MAX:
                return None
        elif value.__class__ is int and INT64_MIN <= value <= INT64_MAX:
            value = float(value)
        else:
            return None
        if timestamp.__class__ is not int or not 0 <= timestamp <= INT64_MAX:
            return None
        if step is None:
            step = 0
        elif step.__class__ is not int or not INT64_MIN <= step <= INT64_MAX:
            return None
        append(
            MetricPoint(
                key, value, timestamp, step, item.model_id or None, item.dataset_name or None, item.dataset_digest or None
            )
        )
    return points


def plain_metric_columns(items: Iterable[Any]) -> MetricColumns | None:
    """The points of a batch's metrics as columns per key, or None while a key is not yet known valid.

    ``items`` are metrics whose values, timestamps and steps the decoder already
    found plainly valid (gateway.api.schemas.PlainMetricIn); only the keys are left
    to check. On None the caller runs the full checks.
    """
    by_key: dict[str, tuple[list[int], list[int], list[float]]] = {}
    for item in items:
        columns = by_key.get(item.key)
        if columns is None:
            if item.key not in valid_keys:
                return None
            columns = by_key[item.key] = ([], [], [])
        columns[0].append(item.step)
        columns[1].append(item.timestamp)
        columns[2].append(item.value)
    return MetricColumns(by_key)


def metric_timestamp(timestamp: int, key: str, value: float, path: str = "") -> int:
    """Check that a metric's timestamp is not negative, as MLflow's store does.

    Args:
        timestamp: the timestamp, already read by :func:`int64_field`.
        key: the metric's key, quoted in the message.
        value: the metric's value, quoted in the message (MLflow quotes it
            before clamping, so ``inf`` for an infinite value).
        path: the metric's path in a batch, e.g. ``metrics[3]``; empty for log-metric.

    Returns:
        The timestamp.

    Raises:
        InvalidParameter: the timestamp is negative.
    """
    if timestamp >= 0:
        return timestamp
    raise InvalidParameter(
        invalid_value(
            join_path(path, "timestamp"),
            timestamp,
            f"metric '{key}' (value={value}). Timestamp must be a nonnegative long (64-bit integer) ",
        )
    )


def check_key(key: object, request_field: str, rule_path: str, length_name: str) -> str:
    """The key rules shared by metrics, params and tags, for a key not yet known valid."""
    if key is None or key == "":
        raise missing_value(request_field)
    if not isinstance(key, str):
        raise invalid_type(request_field, key)
    if KEY_CHARACTERS.match(key) is None:
        raise InvalidParameter(invalid_value(rule_path, key, BAD_CHARACTERS))
    normalized = posixpath.normpath(key)
    if normalized != key or normalized == "." or normalized.startswith(("..", "/")):
        raise InvalidParameter(invalid_value(rule_path, key, BAD_PATH.format(normalized)))
    if len(key) > MAX_KEY_LENGTH:
        raise too_long(length_name, MAX_KEY_LENGTH)
    _remember(valid_keys, key)
    return key


def check_value(value: object, limit: int, truncate: bool, request_field: str, length_name: str) -> str:
    if value.__class__ is str:
        if len(value) <= limit:
            return value
        if truncate:
            return value[:limit]
        raise too_long(length_name, limit)
    if value is None:
        return ""
    if isinstance(value, str):
        return check_value(str(value), limit, truncate, request_field, length_name)
    raise invalid_type(request_field, value)


def metric_key(key: object, path: str = "name") -> str:
    """Check a metric key by MLflow's rules.

    An absent or empty key is reported as the request field (``key``, or
    ``metrics[3].key`` for ``path="metrics[3].name"``) with the request-check
    suffix, as the server's request check does before the store sees it; the
    other rules name ``path`` as MLflow's store does. The rules: only
    alphanumerics, ``_ - . : /`` and spaces; a normalized relative path (no
    ``..`` prefix, no leading ``/``, not ``.``, no ``//`` or trailing ``/``);
    at most 250 characters. MLflow checks the length after the value and
    timestamp, so a long key with a bad value reports the value there.

    Args:
        key: the decoded key.
        path: the key's path in MLflow's store messages: ``name``, or ``metrics[3].name`` in a batch.

    Returns:
        The key.

    Raises:
        InvalidParameter: the key breaks a rule.
    """
    if key.__class__ is str and key in valid_keys:
        return key
    request_field = path[:-4] + "key" if path.endswith("name") else path
    return check_key(key, request_field, path, "Metric name")


def param(key: object, value: object, path: str = "", *, truncate: bool = True) -> str:
    """Check a param's key and value; return the value to store.

    MLflow's store cuts a value longer than 6000 characters to 6000 rather than
    rejecting it (its ``MLFLOW_TRUNCATE_LONG_VALUES``, on by default); with
    ``truncate=False`` the value is rejected as MLflow does with that setting off.

    Args:
        key: the decoded key.
        value: the decoded value; ``None`` (absent) stores the empty string.
        path: the param's path in a batch, e.g. ``params[3]``; empty for log-parameter.
        truncate: cut over-long values instead of rejecting them.

    Returns:
        The value, cut to 6000 characters if longer.

    Raises:
        InvalidParameter: the key breaks a rule of :func:`metric_key`, or the value is not a string.
    """
    if not (key.__class__ is str and key in valid_keys):
        key_path = join_path(path, "key")
        check_key(key, key_path, key_path, "Param key")
    if value.__class__ is str and len(value) <= MAX_PARAM_VALUE_LENGTH:
        return value
    return check_value(value, MAX_PARAM_VALUE_LENGTH, truncate, join_path(path, "value"), "Param value")


def run_tag(key: object, value: object, path: str = "", *, truncate: bool = True) -> str:
    """Check a run tag's key and value; return the value to store.

    The key rules are those of :func:`metric_key`. MLflow's store cuts a value
    longer than 8000 characters to 8000 (see :func:`param` on ``truncate``).
    MLflow does not check the tags given to runs/create at all.

    Args:
        key: the decoded key.
        value: the decoded value; ``None`` (absent) stores the empty string.
        path: the tag's path in a batch, e.g. ``tags[3]``; empty for set-tag.
        truncate: cut over-long values instead of rejecting them.

    Returns:
        The value, cut to 8000 characters if longer.

    Raises:
        InvalidParameter: the key breaks a rule, or the value is not a string.
    """
    if not (key.__class__ is str and key in valid_keys):
        key_path = join_path(path, "key")
        check_key(key, key_path, key_path, key_path)
    if value.__class__ is str and len(value) <= MAX_RUN_TAG_VALUE_LENGTH:
        return value
    value_path = join_path(path, "value")
    return check_value(value, MAX_RUN_TAG_VALUE_LENGTH, truncate, value_path, value_path)


def run_id(value: object, param: str = "run_id") -> str:
    """Check a run id's form: an ASCII letter or digit, then up to 255 word characters or dashes.

    MLflow checks the form on log-batch and log-inputs only; elsewhere a
    malformed id is simply not found (404).

    Args:
        value: the decoded id.
        param: the request field, for the message.

    Returns:
        The id.

    Raises:
        InvalidParameter: the id is absent, empty, not a string, or malformed.
    """
    if value.__class__ is str and value in _valid_run_ids:
        return value
    if value is None or value == "":
        raise missing_value(param)
    if not isinstance(value, str):
        raise invalid_type(param, value)
    if _RUN_ID.match(value) is None:
        raise InvalidParameter(invalid_value(param, value))
    _remember(_valid_run_ids, value)
    return value


def _batch_limit(entity: str, limit: int, count: int) -> None:
    if count > limit:
        raise InvalidParameter(
            f"A batch logging request can contain at most {limit} {entity}. Got {count} {entity}."
            f" Please split up {entity} across multiple requests and try again."
        )


def batch_limits(metric_count: int, param_count: int, tag_count: int) -> None:
    """Check a log-batch's counts: 1000 metrics, 100 params, 100 tags, 1000 in all.

    Checked in that order, as MLflow does.

    Args:
        metric_count: the number of metrics.
        param_count: the number of params.
        tag_count: the number of tags.

    Raises:
        InvalidParameter: a count is over its limit.
    """
    _batch_limit("metrics", MAX_METRICS_PER_BATCH, metric_count)
    _batch_limit("params", MAX_PARAMS_PER_BATCH, param_count)
    _batch_limit("tags", MAX_TAGS_PER_BATCH, tag_count)
    _batch_limit("metrics, params, and tags", MAX_ENTITIES_PER_BATCH, metric_count + param_count + tag_count)


def batch_body_too_large(size: int) -> InvalidParameter:
    """The error for a log-batch body over 1,000,000 bytes.

    MLflow measures the decoded JSON's ``len()``, which for an object is its
    number of fields, so in practice its check only fires for bodies sent as a
    double-encoded JSON string; the gateway applies it to the body's bytes.

    Args:
        size: the body's size in bytes.

    Returns:
        The error to raise.
    """
    return InvalidParameter(
        f"Batched logging API requests must be at most {MAX_BATCH_BODY_BYTES} bytes,"
        f" got a request of size {size}."
    )


def param_keys_unique(params: list[KeyValue]) -> None:
    """Check that no param key repeats within one log-batch.

    Args:
        params: the batch's params (anything with a ``key``).

    Raises:
        InvalidParameter: a key repeats; the message lists every repeat, in order.
    """
    if len({p.key for p in params}) == len(params):
        return
    seen: set[str] = set()
    repeats = []
    for p in params:
        if p.key in seen:
            repeats.append(p.key)
        else:
            seen.add(p.key)
    raise InvalidParameter(
        f"Duplicate parameter keys have been submitted: {repeats}. Please ensure the request"
        " contains only one param value per param key."
    )


def param_conflict_error(write: RunWrite, conflicts: list[tuple[str, str, str]]) -> InvalidParameter:
    """MLflow's message for changing logged params; conflicts are (key, old, new)."""
    if not write.is_batch:
        key, old, new = conflicts[0]
        return InvalidParameter(
            "Changing param values is not allowed. Param with key='{}' was already logged with value='{}' "
            "for run ID='{}'. Attempted logging new value '{}'.".format(key, old, write.run_id, new)
        )
    listed = ", ".join(
        "{{'key': {!r}, 'old_value': {!r}, 'new_value': {!r}}}".format(key, old, new) for key, old, new in conflicts
    )
    return InvalidParameter(
        "Changing param values is not allowed. Params were already logged='[{}]' for run ID='{}'.".format(
            listed, write.run_id
        )
    )


# ---- a run's state ----------------------------------------------------------------------


def run_not_found(run_id: str) -> NotFound:
    return NotFound(f"Run with id={run_id} not found")


def run_write_refused(run_id: str, stage: str | None) -> GatewayError | None:
    """MLflow's error for a write to a run that does not exist (stage None) or is not active; None if it may be written."""
    if stage is None:
        return run_not_found(run_id)
    if stage != "active":
        return InvalidParameter(f"The run {run_id} must be in the 'active' state. Current state is {stage}.")
    return None


def check_run_writable(run_id: str, stage: str | None) -> None:
    """Raise :func:`run_write_refused`'s error, if there is one."""
    if (error := run_write_refused(run_id, stage)) is not None:
        raise error
