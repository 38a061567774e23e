"""The model registry's rules: model names, tags, versions, aliases, stages, and what a version's source may be."""

from __future__ import annotations

import posixpath
import re

from gateway.errors import InvalidParameter
from gateway.mlflow.limits import MAX_ALIAS_LENGTH, MAX_REGISTRY_TAG_KEY_LENGTH, MAX_REGISTRY_TAG_VALUE_LENGTH
from gateway.mlflow.messages import BAD_CHARACTERS, BAD_PATH, invalid_value, too_long
from gateway.mlflow.runs import KEY_CHARACTERS
from gateway.mlflow.wire import PROMPT_TEXT_TAG
from gateway.model import KeyValue


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
        raise InvalidParameter(invalid_value("name", name, BAD_PATH.format(normalized)))
    return name


def registry_tag_key(key: str) -> str:
    """Check the key of a registered model's or a version's tag (characters, path form)."""
    if KEY_CHARACTERS.match(key) is None:
        raise InvalidParameter(invalid_value("key", key, BAD_CHARACTERS))
    if (normalized := _path_not_unique(key)) is not None:
        raise InvalidParameter(invalid_value("key", key, BAD_PATH.format(normalized)))
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
        raise too_long("key", MAX_REGISTRY_TAG_KEY_LENGTH)
    if version_tag and key == PROMPT_TEXT_TAG and len(value) > MAX_REGISTRY_TAG_VALUE_LENGTH:
        raise InvalidParameter(f"Prompt text exceeds max length of {MAX_REGISTRY_TAG_VALUE_LENGTH} characters.")
    if len(value) > MAX_REGISTRY_TAG_VALUE_LENGTH:
        raise too_long("value", MAX_REGISTRY_TAG_VALUE_LENGTH)
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
        raise too_long("Registered model alias name", MAX_ALIAS_LENGTH)
    return alias


def alias_not_reserved(alias: str) -> str:
    """Refuse the aliases MLflow keeps for itself: ``latest`` (any case) and ``v<number>``."""
    if alias.lower() == "latest":
        raise InvalidParameter("'latest' alias name (case insensitive) is reserved.")
    if _VERSION_ALIAS.match(alias):
        raise InvalidParameter(f"Version alias name '{alias}' is reserved.")
    return alias
