"""The rules of experiments: names, tags (with the trace-archival configs) and custom views."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable

from gateway.errors import InvalidParameter, NotFound
from gateway.mlflow.limits import (
    MAX_CUSTOM_VIEWS_PER_EXPERIMENT,
    MAX_EXPERIMENT_NAME_LENGTH,
    MAX_EXPERIMENT_TAG_VALUE_LENGTH,
)
from gateway.mlflow.messages import invalid_type, missing_value, too_long
from gateway.mlflow.runs import check_key, check_value, valid_keys
from gateway.mlflow.wire import CUSTOM_VIEW_TAG_PREFIX, TRACE_ARCHIVAL_RETENTION_TAG, TRACE_ARCHIVE_NOW_TAG


_ARCHIVAL_NOT_OBJECT = "Trace archival config must be encoded as a JSON object."

_ARCHIVAL_FORM = (
    "Trace archival retention must be in the form `<int><unit>`, "
    "where unit is one of 'm', 'h', or 'd'."
)

_ARCHIVAL_DURATION = re.compile(r"[1-9][0-9]*[mhd]")


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
    if not (key.__class__ is str and key in valid_keys):
        check_key(key, "key", "key", "key")
    if not (value.__class__ is str and len(value) <= MAX_EXPERIMENT_TAG_VALUE_LENGTH):
        value = check_value(value, MAX_EXPERIMENT_TAG_VALUE_LENGTH, False, "value", "value")
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
        raise too_long("name", MAX_EXPERIMENT_NAME_LENGTH)
    return name


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


# ---- an experiment's state ------------------------------------------------------------


def experiment_not_found(experiment_id: object) -> NotFound:
    return NotFound(f"No Experiment with id={experiment_id} exists")


def check_experiment_active(experiment_id: object, stage: str) -> None:
    """Refuse a change to an experiment (or to what it holds) once it is deleted, as MLflow does."""
    if stage != "active":
        raise InvalidParameter(f"The experiment {experiment_id} must be in the 'active' state. Current state is {stage}.")
