"""The rules of log-inputs: the lengths of a dataset's fields and of its input tags."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.mlflow.limits import (
    MAX_DATASET_DIGEST_LENGTH,
    MAX_DATASET_NAME_LENGTH,
    MAX_DATASET_PROFILE_LENGTH,
    MAX_DATASET_SCHEMA_LENGTH,
    MAX_DATASET_SOURCE_LENGTH,
    MAX_INPUT_TAG_KEY_LENGTH,
    MAX_INPUT_TAG_VALUE_LENGTH,
)
from gateway.mlflow.messages import invalid_type, too_long


def _bounded(value: object, limit: int, name: str, request_field: str) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise invalid_type(request_field, value)
    if len(value) > limit:
        raise too_long(name, limit)


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
