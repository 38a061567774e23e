"""The model registry's rules: model names, tags, versions, aliases, stages, and what a version's source may be."""

from __future__ import annotations

import posixpath
import re
import urllib.parse
from dataclasses import dataclass

from gateway.errors import InvalidParameter, NotFound
from gateway.mlflow.limits import MAX_ALIAS_LENGTH, MAX_REGISTRY_TAG_KEY_LENGTH, MAX_REGISTRY_TAG_VALUE_LENGTH
from gateway.mlflow.messages import BAD_CHARACTERS, BAD_PATH, invalid_value, too_long
from gateway.mlflow.runs import KEY_CHARACTERS
from gateway.mlflow.wire import MODEL_STAGES, PROMPT_TEXT_TAG
from gateway.model import KeyValue


_ALIAS_CHARACTERS = re.compile(r"^[\w\-]*$")

_VERSION_ALIAS = re.compile(r"^[vV]\d+$")
_STAGE_BY_LOWER = {stage.lower(): stage for stage in MODEL_STAGES}


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


def canonical_stage(stage: str) -> str:
    """A stage in MLflow's spelling (``staging`` is ``Staging``).

    Raises:
        InvalidParameter: not one of None, Staging, Production, Archived.
    """
    found = _STAGE_BY_LOWER.get(stage.lower())
    if found is None:
        raise InvalidParameter(
            f"Invalid Model Version stage: {stage}. Value must be one of {', '.join(MODEL_STAGES)}."
        )
    return found


def model_not_found(name: str) -> NotFound:
    return NotFound(f"Registered Model with name={name} not found")


def version_not_found(name: str, version: int) -> NotFound:
    return NotFound(f"Model Version (name={name}, version={version}) not found")


@dataclass(frozen=True)
class ResolvedSource:
    """What a new version records: its source, run, logged model and where its files are read from."""

    source: str
    run_id: str | None
    model_id: str | None
    storage_location: str


def invalid_source(source: str, id_name: str) -> InvalidParameter:
    return InvalidParameter(
        f"Invalid model version source: '{source}'. The {id_name} request parameter must "
        "identify the resource that contains the source."
    )


def host_addressed_scheme(uri: str) -> str | None:
    """The scheme of a URI naming a host the server would have to connect to, else None."""
    parsed = urllib.parse.urlparse(uri)
    scheme = parsed.scheme
    if scheme not in _HOST_ADDRESSED_SCHEMES:
        return None
    if scheme == "mlflow-artifacts" and not parsed.netloc:
        return None  # served by this server itself
    return scheme


def check_source_scheme(source: str) -> None:
    """Refuse a source that names another host, with MLflow's message."""
    scheme = host_addressed_scheme(source)
    if scheme is not None:
        raise InvalidParameter(
            f"'source' cannot use the '{scheme}' scheme: the '{scheme}' scheme addresses a host other than "
            "the tracking server's configured artifact storage, so the server would connect to the host named "
            "in the URI. Set the MLFLOW_ALLOWED_HOST_ADDRESSED_ARTIFACT_SCHEMES environment variable on the "
            "server to allow it."
        )


def is_local(uri: str) -> bool:
    scheme = urllib.parse.urlparse(uri).scheme
    return scheme in ("", "file")


def local_path(uri: str) -> str:
    path = urllib.parse.urlparse(uri).path if uri.startswith("file:") else uri
    return posixpath.normpath(posixpath.join("/", urllib.parse.unquote(path)))


def _unquoted(value: str, unquote=urllib.parse.unquote) -> str:
    while (once := unquote(value)) != value:
        value = once
    return value


def check_no_relative_parts(source: str) -> None:
    """Refuse a source whose path steps out of itself (``..``, NUL, ``.``), as MLflow does."""
    message = (
        f"Invalid model version source: '{source}'. If supplying a source as an http, https, "
        "local file path, ftp, objectstore, or mlflow-artifacts uri, an absolute path must be "
        "provided without relative path references present. "
        "Please provide an absolute path."
    )
    unquoted = _unquoted(source, urllib.parse.unquote_plus)
    path = re.sub(r"/+", "/", urllib.parse.urlparse(unquoted).path.rstrip("/"))
    if "\x00" in path or any(part == ".." for part in unquoted.split("/")):
        raise InvalidParameter(message)
    if not path.startswith("/") or posixpath.normpath(path) != path:
        raise InvalidParameter(message)


def _uri_parts(uri: str) -> tuple[str, str, tuple[str, ...]]:
    parsed = urllib.parse.urlsplit(uri)
    parts = tuple(_unquoted(part) for part in parsed.path.split("/") if part)
    return parsed.scheme.lower(), parsed.netloc.lower(), parts


def within(source: str, root: str) -> bool:
    scheme, authority, parts = _uri_parts(source)
    root_scheme, root_authority, root_parts = _uri_parts(root)
    return (
        scheme == root_scheme
        and authority == root_authority
        and bool(root_parts)
        and parts[: len(root_parts)] == root_parts
    )


def is_proxied_artifact(source: str) -> bool:
    scheme, _, parts = _uri_parts(source)
    if scheme == "mlflow-artifacts":
        return True
    size = len(_MLFLOW_ARTIFACTS_ROUTE)
    return scheme in ("http", "https") and any(
        parts[i : i + size] == _MLFLOW_ARTIFACTS_ROUTE for i in range(len(parts) - size + 1)
    )


@dataclass(frozen=True)
class ModelsUri:
    model_id: str | None = None
    name: str | None = None
    version: str | None = None
    stage: str | None = None
    alias: str | None = None


def parse_models_uri(uri: str) -> ModelsUri | None:
    """A ``models:/`` URI's parts, as MLflow reads them; None when it is malformed."""
    parsed = urllib.parse.urlparse(uri, allow_fragments=False)
    path = parsed.path
    if parsed.scheme != "models" or not path.startswith("/") or len(path) <= 1:
        return None
    parts = path.lstrip("/").split("/")
    if len(parts) > 2 or parts[0].strip() == "":
        return None
    if len(parts) == 2:
        name, suffix = parts
        if suffix.strip() == "":
            return None
        if suffix.isdigit():
            return ModelsUri(name=name, version=suffix)
        if suffix.lower() == "latest":
            return ModelsUri(name=name)
        return ModelsUri(name=name, stage=suffix)
    if "@" in path:
        name, _, alias = parts[0].rpartition("@")
        if alias.strip() == "":
            return None
        return ModelsUri(name=name, alias=alias)
    return ModelsUri(model_id=parts[0])


def runs_uri_run_id(uri: str) -> str:
    path = urllib.parse.urlparse(uri).path
    if not path.startswith("/") or len(path) <= 1 or path[1:].split("/")[0] == "":
        raise InvalidParameter(
            f"Not a proper runs:/ URI: {uri}. "
            "Runs URIs must be of the form 'runs:/<run_id>/run-relative/path/to/artifact'"
        )
    return path[1:].split("/")[0]


# The only sources a prompt version may have (MLflow's placeholders).
PROMPT_SOURCES = frozenset({"dummy-source", "prompt-template"})

# Schemes whose URIs name a host the server would connect to.
_HOST_ADDRESSED_SCHEMES = frozenset(
    {"ftp", "sftp", "hdfs", "viewfs", "http", "https", "mlflow-artifacts", "r2", "b2", "abfss"}
)

_MLFLOW_ARTIFACTS_ROUTE = ("api", "2.0", "mlflow-artifacts", "artifacts")
