"""Numbers as protobuf's JSON parser reads them, clamped and bounded as MLflow stores them."""

from __future__ import annotations

from gateway.errors import InvalidParameter
from gateway.mlflow.limits import INT64_MAX, INT64_MIN
from gateway.mlflow.messages import invalid_type, missing_value
from gateway.model import FLOAT_MAX


# The strings protobuf's JSON form uses for the non-finite doubles, already
# clamped the way MLflow stores them.
_SPECIAL_DOUBLES = {"NaN": float("nan"), "Infinity": FLOAT_MAX, "-Infinity": -FLOAT_MAX}


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


def experiment_id(value: object) -> int:
    """An experiment id, given as text or a number, as the integer MLflow stores it as.

    An id outside the int64 range is a valid integer that names no experiment:
    callers decide whether that is "not found" or simply no match.

    Raises:
        InvalidParameter: the value is not an integer (MLflow's message).
    """
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidParameter(
            f"Invalid experiment ID '{value}'. Experiment ID must be a valid integer."
        ) from None


def in_int64(value: int) -> bool:
    """Whether an integer fits the int64 columns MLflow keeps ids, steps and times in."""
    return INT64_MIN <= value <= INT64_MAX
