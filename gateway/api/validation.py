"""Checks on request values already decoded from JSON, failing with MLflow's own messages.

Every function here is pure: no I/O, no logging, no event loop. Each raises
:class:`~gateway.errors.InvalidParameter` with the text MLflow's tracking
server answers for the same input, so a stock client cannot tell the servers
apart.

MLflow words its errors in two ways, and the gateway keeps the distinction:

* The server's request checks (a required field is absent, a field has the
  wrong JSON type) end with " See the API docs for more information about
  request parameters." :func:`missing_value` and :func:`invalid_type` build
  those.
* The store's rules (key characters, lengths, batch limits, duplicate keys)
  carry no such suffix.

A value of ``None`` means the field was absent (``null`` is treated the same,
as protobuf's JSON parser does). Keys that passed once are remembered in a
bounded set, so the hot path of a batch that repeats the same thousand metric
keys costs one set lookup per key.

The order MLflow checks a request in: the request checks of every field in
order (for log-batch: presence of each metric's key, value and timestamp, then
each param's and tag's key), then the run id's format, then each metric, param
and tag in turn, then :func:`batch_limits`, then :func:`param_keys_unique`.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Collection, Iterable
from typing import Any

from gateway.errors import InvalidParameter
from gateway.model import FLOAT_MAX, KeyValue, MetricPoint

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
MAX_BATCH_BODY_BYTES = 1_000_000

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_RUN_TAG_VALUE_LENGTH = 8000
MAX_EXPERIMENT_TAG_VALUE_LENGTH = 20000
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_SEARCH_RESULTS = 50000

MAX_DATASET_NAME_LENGTH = 500
MAX_DATASET_DIGEST_LENGTH = 36
MAX_DATASET_SOURCE_LENGTH = 65535
MAX_DATASET_SCHEMA_LENGTH = 1048575
MAX_DATASET_PROFILE_LENGTH = 16777215
MAX_INPUT_TAG_KEY_LENGTH = 255
MAX_INPUT_TAG_VALUE_LENGTH = 500

MAX_CUSTOM_VIEWS_PER_EXPERIMENT = 50
CUSTOM_VIEW_TAG_PREFIX = "mlflow.customView.view"
TRACE_ARCHIVAL_RETENTION_TAG = "mlflow.trace.archivalRetention"
TRACE_ARCHIVE_NOW_TAG = "mlflow.trace.archiveNow"

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# Bound on each cache of values already found valid; past it the cache starts over.
VALID_CACHE_LIMIT = 100_000

_REQUEST_SUFFIX = " See the API docs for more information about request parameters."
_BAD_CHARACTERS = (
    "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.),"
    " spaces ( ), colon(:) and slashes (/)."
)
_BAD_PATH = (
    "Names may be treated as files in certain cases, and must not resolve to other"
    " names when treated as such. This name would resolve to {!r}"
)
_ARCHIVAL_NOT_OBJECT = "Trace archival config must be encoded as a JSON object."
_ARCHIVAL_FORM = (
    "Trace archival retention must be in the form `<int><unit>`, "
    "where unit is one of 'm', 'h', or 'd'."
)

# ``match`` with a trailing ``$`` (not ``fullmatch``): MLflow's rule lets one
# trailing newline through, and a key it accepts must not be rejected here.
_KEY_CHARACTERS = re.compile(r"[\w/. :-]*$")
_RUN_ID = re.compile(r"[a-zA-Z0-9][\w-]{0,255}$")
_ARCHIVAL_DURATION = re.compile(r"[1-9][0-9]*[mhd]")

# The strings protobuf's JSON form uses for the non-finite doubles, already
# clamped the way MLflow stores them.
_SPECIAL_DOUBLES = {"NaN": float("nan"), "Infinity": FLOAT_MAX, "-Infinity": -FLOAT_MAX}

_valid_keys: set[str] = set()
_valid_run_ids: set[str] = set()


def _remember(cache: set[str], value: str) -> None:
    if len(cache) >= VALID_CACHE_LIMIT:
        cache.clear()
    cache.add(value)


def _render(value: object) -> str:
    """A value as MLflow quotes it in messages: compact JSON with sorted keys."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return json.dumps(str(value))


def _invalid_value(param: str, value: object, detail: str | None = None) -> str:
    if detail:
        return f"Invalid value {_render(value)} for parameter '{param}' supplied: {detail}"
    return f"Invalid value {_render(value)} for parameter '{param}' supplied."


def _too_long(name: str, limit: int) -> InvalidParameter:
    return InvalidParameter(f"'{name}' exceeds the maximum length of {limit} characters")


def _join(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field


# ---- request checks -----------------------------------------------------------------


def missing_value(param: str) -> InvalidParameter:
    """The error for a required request field that is absent, null or empty.

    Args:
        param: the field's path in the request, e.g. ``run_id`` or ``metrics[3].value``.

    Returns:
        The error to raise.
    """
    return InvalidParameter(f"Missing value for required parameter '{param}'.{_REQUEST_SUFFIX}")


def invalid_type(param: str, value: object) -> InvalidParameter:
    """The error for a request field whose JSON value has the wrong type.

    The value is quoted as compact JSON (``"abc"``, ``12``, ``true``, ``null``,
    ``[1,2]``, ``{"a":1}``) and its Python type named (``str``, ``bool``,
    ``NoneType``...). MLflow puts two spaces after "supplied:"; so does this.

    Args:
        param: the field's path in the request.
        value: the decoded JSON value.

    Returns:
        The error to raise.
    """
    detail = f" Hint: Value was of type '{type(value).__name__}'."
    return InvalidParameter(_invalid_value(param, value, detail) + _REQUEST_SUFFIX)


def required(value: Any, param: str) -> Any:
    """Check that a required request field is present and not empty.

    Args:
        value: the decoded value; ``None`` when the field was absent or null.
        param: the field's path in the request.

    Returns:
        ``value``, unchanged.

    Raises:
        InvalidParameter: ``value`` is ``None`` or the empty string.
    """
    if value is None or value == "":
        raise missing_value(param)
    return value


# ---- numbers ------------------------------------------------------------------------


def metric_value(raw: object, param: str = "value") -> float:
    """Read a metric value as protobuf's JSON parser reads a double, clamped as MLflow stores it.

    Accepted: JSON numbers (not ``true``/``false``) and every string Python's
    ``float()`` parses except exactly ``"nan"``; this covers protobuf's
    ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` and also ``"1.5"``, ``"1e3"``
    or ``" 2 "``. Infinite values become +/-``FLOAT_MAX``; NaN stays NaN.

    MLflow itself stores ``true`` as 1.0, and stores 0 for a value its parser
    rejected inside a log-batch; the gateway rejects both instead.

    Args:
        raw: the decoded JSON value.
        param: the field's path in the request, for the message.

    Returns:
        The value to store.

    Raises:
        InvalidParameter: the value is absent or empty (missing), or not a number.
    """
    cls = raw.__class__
    if cls is float:
        if -FLOAT_MAX <= raw <= FLOAT_MAX or raw != raw:
            return raw
        return FLOAT_MAX if raw > 0 else -FLOAT_MAX
    if cls is int:
        try:
            return float(raw)
        except OverflowError:
            raise invalid_type(param, raw) from None
    if cls is str:
        special = _SPECIAL_DOUBLES.get(raw)
        if special is not None:
            return special
        if raw == "":
            raise missing_value(param)
        if raw == "nan":
            raise invalid_type(param, raw)
        try:
            value = float(raw)
        except ValueError:
            raise invalid_type(param, raw) from None
        if -FLOAT_MAX <= value <= FLOAT_MAX or value != value:
            return value
        return FLOAT_MAX if value > 0 else -FLOAT_MAX
    if raw is None:
        raise missing_value(param)
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        try:
            return metric_value(float(raw), param)
        except OverflowError:
            raise invalid_type(param, raw) from None
    raise invalid_type(param, raw)


def int64_field(raw: object, param: str) -> int:
    """Read an int64 request field (timestamp, step) as protobuf's JSON parser does.

    Accepted: JSON integers, floats with no fraction (``5.0``), and strings
    without spaces that ``int()`` parses (``"123"``, ``"-4"``) or that
    ``float()`` parses to a whole number (``"1e3"``); the result must fit in
    64 bits. ``true``/``false`` are rejected.

    MLflow silently stores 0 (and drops the fields after it) where protobuf
    rejects a value its own type check lets through (``1.5``, ``true``, an
    out-of-range number); the gateway rejects those instead.

    Args:
        raw: the decoded JSON value. The caller substitutes the default for an
            absent optional field before calling.
        param: the field's path in the request, for the message.

    Returns:
        The integer.

    Raises:
        InvalidParameter: the value is absent (missing), or not a 64-bit integer.
    """
    cls = raw.__class__
    if cls is int:
        if INT64_MIN <= raw <= INT64_MAX:
            return raw
        raise invalid_type(param, raw)
    if cls is str:
        value = _parse_int64_string(raw)
    elif cls is float:
        value = int(raw) if raw.is_integer() else None
    elif raw is None:
        raise missing_value(param)
    elif isinstance(raw, int) and not isinstance(raw, bool):
        value = int(raw)
    else:
        value = None
    if value is None or not INT64_MIN <= value <= INT64_MAX:
        raise invalid_type(param, raw)
    return value


def _parse_int64_string(raw: str) -> int | None:
    if " " in raw:
        return None
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        number = float(raw)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def plain_metric_points(items: Iterable[Any]) -> list[MetricPoint] | None:
    """The points of a batch's metrics when every field is plainly valid, else None.

    The common case (finite float values, integer timestamps and steps in
    range, keys seen before) costs no per-field call. On None the caller runs
    the full checks, which name the first problem exactly as MLflow does; for
    input both accept, both give the same points.
    """
    keys = _valid_keys
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
        _invalid_value(
            _join(path, "timestamp"),
            timestamp,
            f"metric '{key}' (value={value}). Timestamp must be a nonnegative long (64-bit integer) ",
        )
    )


# ---- keys and values ----------------------------------------------------------------


def _check_key(key: object, request_field: str, rule_path: str, length_name: str) -> str:
    """The key rules shared by metrics, params and tags, for a key not yet known valid."""
    if key is None or key == "":
        raise missing_value(request_field)
    if not isinstance(key, str):
        raise invalid_type(request_field, key)
    if _KEY_CHARACTERS.match(key) is None:
        raise InvalidParameter(_invalid_value(rule_path, key, _BAD_CHARACTERS))
    normalized = posixpath.normpath(key)
    if normalized != key or normalized == "." or normalized.startswith(("..", "/")):
        raise InvalidParameter(_invalid_value(rule_path, key, _BAD_PATH.format(normalized)))
    if len(key) > MAX_KEY_LENGTH:
        raise _too_long(length_name, MAX_KEY_LENGTH)
    _remember(_valid_keys, key)
    return key


def _check_value(value: object, limit: int, truncate: bool, request_field: str, length_name: str) -> str:
    if value.__class__ is str:
        if len(value) <= limit:
            return value
        if truncate:
            return value[:limit]
        raise _too_long(length_name, limit)
    if value is None:
        return ""
    if isinstance(value, str):
        return _check_value(str(value), limit, truncate, request_field, length_name)
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
    if key.__class__ is str and key in _valid_keys:
        return key
    request_field = path[:-4] + "key" if path.endswith("name") else path
    return _check_key(key, request_field, path, "Metric name")


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
    if not (key.__class__ is str and key in _valid_keys):
        key_path = _join(path, "key")
        _check_key(key, key_path, key_path, "Param key")
    if value.__class__ is str and len(value) <= MAX_PARAM_VALUE_LENGTH:
        return value
    return _check_value(value, MAX_PARAM_VALUE_LENGTH, truncate, _join(path, "value"), "Param value")


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
    if not (key.__class__ is str and key in _valid_keys):
        key_path = _join(path, "key")
        _check_key(key, key_path, key_path, key_path)
    if value.__class__ is str and len(value) <= MAX_RUN_TAG_VALUE_LENGTH:
        return value
    value_path = _join(path, "value")
    return _check_value(value, MAX_RUN_TAG_VALUE_LENGTH, truncate, value_path, value_path)


def experiment_tag(key: object, value: object) -> str:
    """Check an experiment tag's key and value; return the value to store.

    Key rules as :func:`metric_key`. The value may have 20000 characters and is
    never cut. The trace-archival tags must hold MLflow's JSON config:
    ``mlflow.trace.archivalRetention`` a ``{"type": "duration", "value": "30d"}``
    object, ``mlflow.trace.archiveNow`` an object with an optional
    ``"older_than"`` duration.

    MLflow's create-experiment has no request check on tag keys, so there an
    empty key gets the store's "would resolve to '.'" message, not "Missing value".

    Args:
        key: the decoded key.
        value: the decoded value; ``None`` (absent) stores the empty string.

    Returns:
        The value.

    Raises:
        InvalidParameter: the key or value breaks a rule.
    """
    if not (key.__class__ is str and key in _valid_keys):
        _check_key(key, "key", "key", "key")
    if not (value.__class__ is str and len(value) <= MAX_EXPERIMENT_TAG_VALUE_LENGTH):
        value = _check_value(value, MAX_EXPERIMENT_TAG_VALUE_LENGTH, False, "value", "value")
    if key == TRACE_ARCHIVAL_RETENTION_TAG:
        _archival_config(value, "value", "duration", allow_missing=False)
    elif key == TRACE_ARCHIVE_NOW_TAG:
        _archival_config(value, "older_than", None, allow_missing=True)
    return value


def _archival_config(text: str, duration_field: str, expected_type: str | None, allow_missing: bool) -> None:
    try:
        config = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidParameter(_ARCHIVAL_NOT_OBJECT) from None
    if not isinstance(config, dict):
        raise InvalidParameter(_ARCHIVAL_NOT_OBJECT)
    if expected_type is not None and config.get("type") != expected_type:
        raise InvalidParameter(f"Trace archival config must use type '{expected_type}'.")
    duration = config.get(duration_field)
    if duration is None and allow_missing:
        return
    if not isinstance(duration, str):
        raise InvalidParameter(_ARCHIVAL_FORM)
    duration = duration.strip()
    if len(duration) > 32:
        raise InvalidParameter("Trace archival duration must be at most 32 characters.")
    if _ARCHIVAL_DURATION.fullmatch(duration) is None:
        raise InvalidParameter(_ARCHIVAL_FORM)


def experiment_name(name: object, *, param: str = "name") -> str:
    """Check an experiment name: required, a string, at most 500 characters.

    Args:
        name: the decoded name.
        param: the request field, for the missing and type messages (``new_name`` on rename).

    Returns:
        The name.

    Raises:
        InvalidParameter: the name is absent, empty, not a string, or too long.
    """
    if name is None or name == "":
        raise missing_value(param)
    if not isinstance(name, str):
        raise invalid_type(param, name)
    if len(name) > MAX_EXPERIMENT_NAME_LENGTH:
        # MLflow names the field 'name' here even for a rename's new_name.
        raise _too_long("name", MAX_EXPERIMENT_NAME_LENGTH)
    return name


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
        raise InvalidParameter(_invalid_value(param, value))
    _remember(_valid_run_ids, value)
    return value


# ---- batches ------------------------------------------------------------------------


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


# ---- search -------------------------------------------------------------------------


def max_results(value: int, limit: int = MAX_SEARCH_RESULTS, param: str = "max_results") -> int:
    """Check runs/search's page size, with MLflow's messages.

    Over the limit is a request check (with the type hint MLflow adds, although
    the type is right); below 1 is the store's "positive integer" message.

    Args:
        value: the page size, already read by :func:`int64_field`.
        limit: the largest page size allowed.
        param: the request field, for the message.

    Returns:
        The page size.

    Raises:
        InvalidParameter: the page size is over ``limit`` or below 1.
    """
    if 1 <= value <= limit:
        return value
    if value > limit:
        raise invalid_type(param, value)
    raise InvalidParameter(f"Invalid value {value} for parameter '{param}' supplied. It must be a positive integer")


def experiments_max_results(value: int) -> int:
    """Check experiments/search's page size; MLflow words its upper bound differently there.

    Args:
        value: the page size, already read by :func:`int64_field`.

    Returns:
        The page size.

    Raises:
        InvalidParameter: the page size is over 50000 or below 1.
    """
    if 1 <= value <= MAX_SEARCH_RESULTS:
        return value
    if value < 1:
        detail = "It must be a positive integer"
    else:
        detail = f"It must be at most {MAX_SEARCH_RESULTS}"
    raise InvalidParameter(f"Invalid value {value} for parameter 'max_results' supplied. {detail}")


# ---- log-inputs ---------------------------------------------------------------------


def _bounded(value: object, limit: int, name: str, request_field: str) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise invalid_type(request_field, value)
    if len(value) > limit:
        raise _too_long(name, limit)


def dataset(
    name: object,
    digest: object,
    source_type: object,
    source: object,
    schema: object = None,
    profile: object = None,
    path: str = "dataset",
) -> None:
    """Check a logged dataset's field lengths, as MLflow's store does.

    Absent fields (``None``) pass: over HTTP MLflow reads them as empty strings.

    Args:
        name: at most 500 characters.
        digest: at most 36 characters.
        source_type: any string.
        source: at most 65535 characters.
        schema: at most 1048575 characters.
        profile: at most 16777215 characters.
        path: the dataset's path in the request, for type errors.

    Raises:
        InvalidParameter: a field is too long or not a string.
    """
    _bounded(name, MAX_DATASET_NAME_LENGTH, "name", f"{path}.name")
    _bounded(digest, MAX_DATASET_DIGEST_LENGTH, "digest", f"{path}.digest")
    if source_type is not None and not isinstance(source_type, str):
        raise invalid_type(f"{path}.source_type", source_type)
    _bounded(source, MAX_DATASET_SOURCE_LENGTH, "source", f"{path}.source")
    _bounded(schema, MAX_DATASET_SCHEMA_LENGTH, "schema", f"{path}.schema")
    _bounded(profile, MAX_DATASET_PROFILE_LENGTH, "profile", f"{path}.profile")


def input_tag(key: object, value: object, path: str = "tags") -> None:
    """Check a dataset input tag: key at most 255 characters, value at most 500.

    Args:
        key: the decoded key; ``None`` passes (MLflow reads it as empty).
        value: the decoded value; ``None`` passes likewise.
        path: the tag's path in the request, for type errors.

    Raises:
        InvalidParameter: the key or value is too long or not a string.
    """
    _bounded(key, MAX_INPUT_TAG_KEY_LENGTH, "key", f"{path}.key")
    _bounded(value, MAX_INPUT_TAG_VALUE_LENGTH, "value", f"{path}.value")


def dataset_inputs(inputs: Iterable[Any]) -> None:
    """Check every dataset input of a log-inputs request, in order: the dataset, then its tags.

    Args:
        inputs: objects with ``dataset`` (``name``, ``digest``, ``source_type``,
            ``source``, ``schema``, ``profile``) and ``tags`` (``key``, ``value``).

    Raises:
        InvalidParameter: a field is too long or not a string.
    """
    for index, item in enumerate(inputs):
        d = item.dataset
        if d is not None:
            dataset(d.name, d.digest, d.source_type, d.source, d.schema, d.profile, f"datasets[{index}].dataset")
        for tag in item.tags or ():
            input_tag(tag.key, tag.value, f"datasets[{index}].tags")


# ---- experiment custom views --------------------------------------------------------


def _custom_view_limit(experiment_id: str | None) -> InvalidParameter:
    where = f" for experiment {experiment_id}" if experiment_id else ""
    return InvalidParameter(
        f"Unable to create another custom view{where}; the maximum number of custom views per"
        f" experiment is {MAX_CUSTOM_VIEWS_PER_EXPERIMENT}. Delete an existing custom view before"
        " creating a new one."
    )


def custom_views(tag_keys: Iterable[str]) -> None:
    """Check the number of custom-view tags given to create-experiment (at most 50).

    Args:
        tag_keys: the keys of the new experiment's tags.

    Raises:
        InvalidParameter: more than 50 keys start with ``mlflow.customView.view``.
    """
    if sum(1 for key in tag_keys if key.startswith(CUSTOM_VIEW_TAG_PREFIX)) > MAX_CUSTOM_VIEWS_PER_EXPERIMENT:
        raise _custom_view_limit(None)


def custom_view_added(existing_keys: Collection[str], key: str, experiment_id: str) -> None:
    """Check that set-experiment-tag may add a custom-view tag to an experiment.

    Overwriting an existing custom-view tag is always allowed.

    Args:
        existing_keys: the experiment's current tag keys.
        key: the key being set.
        experiment_id: the experiment's id, quoted in the message.

    Raises:
        InvalidParameter: ``key`` is a new custom view and the experiment already has 50.
    """
    if not key.startswith(CUSTOM_VIEW_TAG_PREFIX) or key in existing_keys:
        return
    if sum(1 for k in existing_keys if k.startswith(CUSTOM_VIEW_TAG_PREFIX)) >= MAX_CUSTOM_VIEWS_PER_EXPERIMENT:
        raise _custom_view_limit(experiment_id)


# ---- the model registry -------------------------------------------------------------

MAX_REGISTRY_TAG_KEY_LENGTH = 250
MAX_REGISTRY_TAG_VALUE_LENGTH = 100_000
MAX_ALIAS_LENGTH = 255
PROMPT_TEXT_TAG = "mlflow.prompt.text"
_ALIAS_CHARACTERS = re.compile(r"^[\w\-]*$")
_VERSION_ALIAS = re.compile(r"^[vV]\d+$")


def _path_not_unique(name: str) -> str | None:
    """The normalised form of ``name`` when a file path would read it as another name, else None."""
    normalized = posixpath.normpath(name)
    if normalized != name or normalized == "." or normalized.startswith(("..", "/")):
        return normalized
    return None


def model_name(name: str, param: str = "name") -> str:
    """Check a registered model's name as MLflow's registry store does (after the request check).

    A name of spaces only is reported missing (without the request-check suffix);
    ``/`` and ``:`` are refused, and so is a name a file path would read as another.

    Args:
        name: the name, already known to be a non-empty string.
        param: the request field reported missing (``new_name`` for a rename).

    Raises:
        InvalidParameter: MLflow's message.
    """
    if name.strip() == "":
        raise InvalidParameter(f"Missing value for required parameter '{param}'.")
    if "/" in name or ":" in name:
        raise InvalidParameter(f"Invalid model name '{name}'. Names cannot contain '/' or ':'.")
    if (normalized := _path_not_unique(name)) is not None:
        raise InvalidParameter(_invalid_value("name", name, _BAD_PATH.format(normalized)))
    return name


def registry_tag_key(key: str) -> str:
    """Check the key of a registered model's or a version's tag (characters, path form)."""
    if _KEY_CHARACTERS.match(key) is None:
        raise InvalidParameter(_invalid_value("key", key, _BAD_CHARACTERS))
    if (normalized := _path_not_unique(key)) is not None:
        raise InvalidParameter(_invalid_value("key", key, _BAD_PATH.format(normalized)))
    return key


def registry_tag(key: str, value: str, *, version_tag: bool) -> KeyValue:
    """Check a registered model's or a model version's tag, in MLflow's order.

    Keys follow the run-key rules and are at most 250 characters; values at most
    100,000 (a prompt's text says so in its own words).

    Raises:
        InvalidParameter: MLflow's message.
    """
    registry_tag_key(key)
    if len(key) > MAX_REGISTRY_TAG_KEY_LENGTH:
        raise _too_long("key", MAX_REGISTRY_TAG_KEY_LENGTH)
    if version_tag and key == PROMPT_TEXT_TAG and len(value) > MAX_REGISTRY_TAG_VALUE_LENGTH:
        raise InvalidParameter(f"Prompt text exceeds max length of {MAX_REGISTRY_TAG_VALUE_LENGTH} characters.")
    if len(value) > MAX_REGISTRY_TAG_VALUE_LENGTH:
        raise _too_long("value", MAX_REGISTRY_TAG_VALUE_LENGTH)
    return KeyValue(key, value)


def model_version(value: str) -> int:
    """A version number given as text (``"3"``), as MLflow converts it.

    Raises:
        InvalidParameter: the text is not an integer.
    """
    try:
        return int(value)
    except ValueError:
        raise InvalidParameter(f"Parameter 'version' must be an integer, got '{value}'.") from None


def alias_name(alias: str | None) -> str:
    """Check a registered model alias: letters, digits, ``_`` and ``-``, at most 255 characters."""
    if alias is None or alias == "":
        raise InvalidParameter("Registered model alias name cannot be empty.")
    if _ALIAS_CHARACTERS.match(alias) is None:
        raise InvalidParameter(
            f"Invalid alias name: '{alias}'. Names may only contain alphanumerics, underscores (_), and dashes (-)."
        )
    if len(alias) > MAX_ALIAS_LENGTH:
        raise _too_long("Registered model alias name", MAX_ALIAS_LENGTH)
    return alias


def alias_not_reserved(alias: str) -> str:
    """Refuse the aliases MLflow keeps for itself: ``latest`` (any case) and ``v<number>``."""
    if alias.lower() == "latest":
        raise InvalidParameter("'latest' alias name (case insensitive) is reserved.")
    if _VERSION_ALIAS.match(alias):
        raise InvalidParameter(f"Version alias name '{alias}' is reserved.")
    return alias
