"""MLflow's model registry in PostgreSQL: registered models, versions, tags and aliases.

Behaviour follows MLflow's SQL registry store: versions of a model are numbered
from 1 and a number is never given twice (a deleted version's number stays
used until the model itself is deleted); a version is READY when created; a
registered model shows the latest version of each stage; deleting a model
deletes its versions, tags and aliases. What a version may point at (its
``source``) is checked as MLflow's server checks it, which needs the runs and
logged models, so that check lives here too (:meth:`RegistryStore.resolve_source`).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Sequence

import asyncpg

from gateway.errors import AlreadyExists, GatewayError, InvalidParameter, NotFound
from gateway.mlflow.registry import (
    PROMPT_SOURCES,
    ModelsUri,
    ResolvedSource,
    canonical_stage,
    check_no_relative_parts,
    check_source_scheme,
    invalid_source,
    is_local,
    is_proxied_artifact,
    local_path,
    model_not_found,
    parse_models_uri,
    runs_uri_run_id,
    version_not_found,
    within,
)
from gateway.mlflow.limits import INT32_MAX
from gateway.mlflow.wire import MODEL_STAGES, MODEL_VERSIONS_TAG, PROMPT_TAG
from gateway.model import KeyValue, ModelVersion, RegisteredModel, RegisteredModelAlias, RegistryTag
from gateway.search.registry import RegistryQuery
from gateway.store.columns import RUN_ID, now_ms
from gateway.store.connections import connection, transaction
from gateway.store.replicas import ReadRouter


_FORBIDDEN_CHARACTER = re.compile(r"[\x00\ud800-\udfff]")


def _check_storable(*values: str | None) -> None:
    """PostgreSQL text cannot hold NUL and a lone surrogate cannot be encoded: refuse them up front."""
    for value in values:
        if value is not None and (found := _FORBIDDEN_CHARACTER.search(value)):
            raise InvalidParameter(
                f"Invalid value: the character U+{ord(found.group()):04X} cannot be stored "
                f"(at position {found.start()})"
            )


def _check_storable_tags(tags: Sequence[KeyValue], value_limit: int | None = None) -> None:
    for tag in tags:
        _check_storable(tag.key, tag.value)
        if value_limit is not None:
            _check_column("value", tag.value, value_limit)


# The widths of MLflow's registry columns. Past them MLflow's SQL store fails on
# PostgreSQL with BAD_REQUEST (and the database's text); here with the same code
# and a plain message.
NAME_WIDTH = 256
DESCRIPTION_WIDTH = 5000
SOURCE_WIDTH = 500
RUN_LINK_WIDTH = 500
RUN_ID_WIDTH = 32
MODEL_TAG_VALUE_WIDTH = 5000


def _check_column(field: str, value: str | None, width: int) -> None:
    if value is not None and len(value) > width:
        raise GatewayError(f"'{field}' is too long to store: at most {width} characters, got {len(value)}.",
                           "BAD_REQUEST")


def _last_per_key(tags: Sequence[KeyValue]) -> dict[str, str]:
    return {tag.key: tag.value for tag in tags}  # a repeated key keeps its last value


# ---- sources ---------------------------------------------------------------------------


# ---- rows to entities -------------------------------------------------------------------


def _version_entity(row, name: str, tags: list[RegistryTag], aliases: list[str]) -> ModelVersion:
    return ModelVersion(
        name=name,
        version=str(row["version"]),
        creation_timestamp=row["creation_time"],
        last_updated_timestamp=row["last_updated_time"],
        current_stage=row["current_stage"],
        description=row["description"],
        source=row["source"],
        run_id=row["source_run_id"],
        status="READY",
        tags=tags,
        run_link=row["run_link"],
        aliases=aliases,
    )


class RegistryStore:
    """The model registry: registered models, their versions, tags and aliases.

    Args:
        pool: the asyncpg pool on the primary.
        reads: where the searches run (a replica that has caught up, else the primary); by default on ``pool``.
    """

    def __init__(self, pool: asyncpg.Pool, *, reads: ReadRouter | None = None):
        self._pool = pool
        self._reads = reads or ReadRouter(pool)

    # -- reading --------------------------------------------------------------------

    @staticmethod
    async def _model(conn, name: str, *, lock: bool = False, of_version: int | None = None):
        """The model's row; asked for on behalf of ``of_version``, a missing model is that version missing.

        (MLflow looks such a version up directly, so it answers "Model Version ... not found".)
        """
        _check_storable(name)
        row = await conn.fetchrow(
            "SELECT * FROM registered_models WHERE name = $1" + (" FOR UPDATE" if lock else ""), name
        )
        if row is None:
            raise model_not_found(name) if of_version is None else version_not_found(name, of_version)
        return row

    @staticmethod
    async def _version(conn, model, version: int, *, lock: bool = False):
        if not 0 < version <= INT32_MAX:
            raise version_not_found(model["name"], version)
        row = await conn.fetchrow(
            "SELECT * FROM model_versions WHERE model_key = $1 AND version = $2" + (" FOR UPDATE" if lock else ""),
            model["model_key"],
            version,
        )
        if row is None:
            raise version_not_found(model["name"], version)
        return row

    @staticmethod
    async def _versions_of(conn, rows, names: dict[int, str], *, with_aliases: bool) -> list[ModelVersion]:
        """Version entities of ``rows`` in their order, with their tags (and aliases when asked)."""
        if not rows:
            return []
        keys = [row["model_key"] for row in rows]
        numbers = [row["version"] for row in rows]
        tag_rows = await conn.fetch(
            """SELECT t.model_key, t.version, t.key, t.value FROM model_version_tags t
               JOIN unnest($1::bigint[], $2::integer[]) AS v(model_key, version)
                 ON v.model_key = t.model_key AND v.version = t.version
               ORDER BY t.key""",
            keys,
            numbers,
        )
        tags: dict[tuple[int, int], list[RegistryTag]] = {}
        for row in tag_rows:
            tags.setdefault((row["model_key"], row["version"]), []).append(RegistryTag(row["key"], row["value"]))
        aliases: dict[tuple[int, int], list[str]] = {}
        if with_aliases:
            alias_rows = await conn.fetch(
                "SELECT model_key, version, alias FROM registered_model_aliases "
                "WHERE model_key = ANY($1::bigint[]) ORDER BY alias",
                list(set(keys)),
            )
            for row in alias_rows:
                aliases.setdefault((row["model_key"], row["version"]), []).append(row["alias"])
        return [
            _version_entity(
                row,
                names[row["model_key"]],
                tags.get((row["model_key"], row["version"]), []),
                aliases.get((row["model_key"], row["version"]), []),
            )
            for row in rows
        ]

    @staticmethod
    async def _latest_rows(conn, model_keys: list[int], *, by_stage_name: bool = False):
        """The latest version of each stage of each model.

        The stages come in the order MLflow lists them: in the order they first appear
        among the versions for a single model, by stage name in a search.
        """
        order = "current_stage" if by_stage_name else "first_version"
        return await conn.fetch(
            f"""SELECT * FROM (
                   SELECT mv.*,
                          row_number() OVER (PARTITION BY model_key, current_stage ORDER BY version DESC) AS rank,
                          min(version) OVER (PARTITION BY model_key, current_stage) AS first_version
                   FROM model_versions mv WHERE model_key = ANY($1::bigint[])) ranked
               WHERE rank = 1 ORDER BY model_key, {order}""",
            model_keys,
        )

    async def _models_of(self, conn, rows, *, searched: bool = False) -> list[RegisteredModel]:
        """Registered model entities of ``rows`` in their order, with latest versions, tags and aliases."""
        if not rows:
            return []
        keys = [row["model_key"] for row in rows]
        names = {row["model_key"]: row["name"] for row in rows}
        tag_rows = await conn.fetch(
            "SELECT model_key, key, value FROM registered_model_tags WHERE model_key = ANY($1::bigint[]) "
            "ORDER BY key",
            keys,
        )
        alias_rows = await conn.fetch(
            "SELECT model_key, alias, version FROM registered_model_aliases WHERE model_key = ANY($1::bigint[]) "
            "ORDER BY alias",
            keys,
        )
        latest_rows = await self._latest_rows(conn, keys, by_stage_name=searched)
        latest = await self._versions_of(conn, latest_rows, names, with_aliases=False)
        tags: dict[int, list[RegistryTag]] = {}
        for row in tag_rows:
            tags.setdefault(row["model_key"], []).append(RegistryTag(row["key"], row["value"]))
        aliases: dict[int, list[RegisteredModelAlias]] = {}
        for row in alias_rows:
            aliases.setdefault(row["model_key"], []).append(RegisteredModelAlias(row["alias"], str(row["version"])))
        latest_of: dict[str, list[ModelVersion]] = {}
        for version in latest:
            latest_of.setdefault(version.name, []).append(version)
        return [
            RegisteredModel(
                name=row["name"],
                creation_timestamp=row["creation_time"],
                last_updated_timestamp=row["last_updated_time"] or None,
                description=row["description"] or None,
                latest_versions=latest_of.get(row["name"], []),
                tags=tags.get(row["model_key"], []),
                aliases=aliases.get(row["model_key"], []),
            )
            for row in rows
        ]

    async def _one_version(self, conn, model, version_row) -> ModelVersion:
        return (await self._versions_of(conn, [version_row], {model["model_key"]: model["name"]}, with_aliases=True))[0]

    async def get_registered_model(self, name: str) -> RegisteredModel:
        """A registered model with the latest version of each stage, its tags and aliases."""
        async with connection(self._pool) as conn:
            return (await self._models_of(conn, [await self._model(conn, name)]))[0]

    async def get_model_version(self, name: str, version: int) -> ModelVersion:
        async with connection(self._pool) as conn:
            model = await self._model(conn, name, of_version=version)
            return await self._one_version(conn, model, await self._version(conn, model, version))

    async def get_download_uri(self, name: str, version: int) -> str:
        """Where the version's files are read from (the logged model's location for a ``models:/<id>`` source)."""
        async with connection(self._pool) as conn:
            model = await self._model(conn, name, of_version=version)
            row = await self._version(conn, model, version)
        return row["storage_location"] or row["source"]

    async def get_latest_versions(self, name: str, stages: Sequence[str] | None) -> list[ModelVersion]:
        """The latest version of each of ``stages`` (every stage when empty), with aliases.

        Raises:
            NotFound: no such model (checked before the stages, as MLflow does).
            InvalidParameter: a stage that is not one of MLflow's.
        """
        async with connection(self._pool) as conn:
            model = await self._model(conn, name)
            wanted = {canonical_stage(stage) for stage in stages} if stages else set(MODEL_STAGES)
            rows = [row for row in await self._latest_rows(conn, [model["model_key"]])
                    if row["current_stage"] in wanted]
            return await self._versions_of(conn, rows, {model["model_key"]: name}, with_aliases=True)

    async def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        """The version an alias points at; ``latest`` (any case) is the highest version.

        Raises:
            NotFound: no such model, or ``latest`` of a model without versions.
            InvalidParameter: no such alias (MLflow answers INVALID_PARAMETER_VALUE).
        """
        _check_storable(alias)
        if alias.lower() == "latest":
            versions = await self.get_latest_versions(name, None)
            if not versions:
                raise NotFound(f"Latest version not found for model {name}.")
            return max(versions, key=lambda version: int(version.version))
        async with connection(self._pool) as conn:
            model = await self._model(conn, name)
            number = await conn.fetchval(
                "SELECT version FROM registered_model_aliases WHERE model_key = $1 AND alias = $2",
                model["model_key"],
                alias,
            )
            if number is None:
                raise InvalidParameter(f"Registered model alias {alias} not found.")
            return await self._one_version(conn, model, await self._version(conn, model, number))

    async def search_registered_models(self, query: RegistryQuery) -> tuple[list[RegisteredModel], str | None]:
        """One page of registered models and the next page's token."""
        return await self._reads.run(lambda pool: self._search_registered_models(pool, query))

    async def _search_registered_models(
        self, pool: asyncpg.Pool, query: RegistryQuery
    ) -> tuple[list[RegisteredModel], str | None]:
        async with transaction(pool, readonly=True) as conn:
            keys = [row["model_key"] for row in await conn.fetch(query.sql, *query.args)]
            token = query.next_token(len(keys))
            keys = keys[: max(query.max_results, 0)]
            rows = await conn.fetch(
                "SELECT rm.* FROM registered_models rm "
                "JOIN unnest($1::bigint[]) WITH ORDINALITY AS k(model_key, n) ON k.model_key = rm.model_key "
                "ORDER BY k.n",
                keys,
            )
            return await self._models_of(conn, rows, searched=True), token

    async def search_model_versions(self, query: RegistryQuery) -> tuple[list[ModelVersion], str | None]:
        """One page of model versions (with tags; MLflow lists no aliases here) and the next page's token."""
        return await self._reads.run(lambda pool: self._search_model_versions(pool, query))

    async def _search_model_versions(
        self, pool: asyncpg.Pool, query: RegistryQuery
    ) -> tuple[list[ModelVersion], str | None]:
        async with transaction(pool, readonly=True) as conn:
            found = await conn.fetch(query.sql, *query.args)
            token = query.next_token(len(found))
            found = found[: max(query.max_results, 0)]
            rows = await conn.fetch(
                """SELECT mv.*, rm.name
                   FROM unnest($1::bigint[], $2::integer[]) WITH ORDINALITY AS k(model_key, version, n)
                   JOIN model_versions mv ON mv.model_key = k.model_key AND mv.version = k.version
                   JOIN registered_models rm ON rm.model_key = mv.model_key
                   ORDER BY k.n""",
                [row["model_key"] for row in found],
                [row["version"] for row in found],
            )
            names = {row["model_key"]: row["name"] for row in rows}
            return await self._versions_of(conn, rows, names, with_aliases=False), token

    # -- registered models ---------------------------------------------------------------

    async def create_registered_model(
        self, name: str, tags: Sequence[KeyValue], description: str
    ) -> RegisteredModel:
        """Create a model; RESOURCE_ALREADY_EXISTS (worded for models and prompts) when the name is taken."""
        _check_storable(name, description)
        _check_column("name", name, NAME_WIDTH)
        _check_column("description", description, DESCRIPTION_WIDTH)
        _check_storable_tags(tags, MODEL_TAG_VALUE_WIDTH)
        created = now_ms()
        async with connection(self._pool) as conn:
            async with conn.transaction():
                key = await conn.fetchval(
                    """INSERT INTO registered_models (name, creation_time, last_updated_time, description)
                       VALUES ($1, $2, $2, $3) ON CONFLICT (name) DO NOTHING RETURNING model_key""",
                    name,
                    created,
                    description,
                )
                if key is not None:
                    await conn.executemany(
                        "INSERT INTO registered_model_tags (model_key, key, value) VALUES ($1, $2, $3)",
                        [(key, k, v) for k, v in _last_per_key(tags).items()],
                    )
            if key is None:
                existing = await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM registered_model_tags t JOIN registered_models rm "
                    "ON rm.model_key = t.model_key WHERE rm.name = $1 AND t.key = $2)",
                    name,
                    PROMPT_TAG,
                )
                raise _name_taken(name, bool(existing), any(tag.key == PROMPT_TAG for tag in tags))
            return (await self._models_of(conn, [await self._model(conn, name)]))[0]

    async def update_registered_model(self, name: str, description: str) -> RegisteredModel:
        _check_storable(description)
        _check_column("description", description, DESCRIPTION_WIDTH)
        async with connection(self._pool) as conn:
            async with conn.transaction():
                model = await self._model(conn, name, lock=True)
                await conn.execute(
                    "UPDATE registered_models SET description = $2, last_updated_time = $3 WHERE model_key = $1",
                    model["model_key"],
                    description,
                    now_ms(),
                )
            return (await self._models_of(conn, [await self._model(conn, name)]))[0]

    async def rename_registered_model(self, name: str, new_name: str) -> RegisteredModel:
        """Rename a model; its versions follow it (and count as updated, as in MLflow)."""
        _check_storable(new_name)
        _check_column("new_name", new_name, NAME_WIDTH)
        updated = now_ms()
        async with connection(self._pool) as conn:
            try:
                async with conn.transaction():
                    model = await self._model(conn, name, lock=True)
                    await conn.execute(
                        "UPDATE registered_models SET name = $2, last_updated_time = $3 WHERE model_key = $1",
                        model["model_key"],
                        new_name,
                        updated,
                    )
                    await conn.execute(
                        "UPDATE model_versions SET last_updated_time = $2 WHERE model_key = $1",
                        model["model_key"],
                        updated,
                    )
            except asyncpg.exceptions.UniqueViolationError:
                raise AlreadyExists(f"Registered Model (name={new_name}) already exists.") from None
            return (await self._models_of(conn, [await self._model(conn, new_name)]))[0]

    async def delete_registered_model(self, name: str) -> None:
        """Delete a model with its versions, their tags, its tags and its aliases."""
        async with transaction(self._pool) as conn:
            key = (await self._model(conn, name, lock=True))["model_key"]
            tables = ("registered_model_aliases", "model_version_tags", "model_versions", "registered_model_tags")
            for table in tables:
                await conn.execute(f"DELETE FROM {table} WHERE model_key = $1", key)
            await conn.execute("DELETE FROM registered_models WHERE model_key = $1", key)

    async def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        _check_storable(key, value)
        _check_column("value", value, MODEL_TAG_VALUE_WIDTH)
        async with transaction(self._pool) as conn:
            model = await self._model(conn, name)
            await conn.execute(
                "INSERT INTO registered_model_tags (model_key, key, value) VALUES ($1, $2, $3) "
                "ON CONFLICT (model_key, key) DO UPDATE SET value = EXCLUDED.value",
                model["model_key"],
                key,
                value,
            )

    async def delete_registered_model_tag(self, name: str, key: str) -> None:
        """Delete a tag; a tag that is not there is no error (as in MLflow)."""
        _check_storable(key)
        async with transaction(self._pool) as conn:
            model = await self._model(conn, name)
            await conn.execute(
                "DELETE FROM registered_model_tags WHERE model_key = $1 AND key = $2", model["model_key"], key
            )

    # -- aliases ---------------------------------------------------------------------------

    async def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point an alias at an existing version (moving it if it pointed elsewhere)."""
        _check_storable(alias)
        async with transaction(self._pool) as conn:
            model = await self._model(conn, name, lock=True, of_version=version)
            await self._version(conn, model, version)
            await conn.execute(
                "INSERT INTO registered_model_aliases (model_key, alias, version) VALUES ($1, $2, $3) "
                "ON CONFLICT (model_key, alias) DO UPDATE SET version = EXCLUDED.version",
                model["model_key"],
                alias,
                version,
            )

    async def delete_alias(self, name: str, alias: str) -> None:
        """Remove an alias; one that is not there is no error (as in MLflow)."""
        _check_storable(alias)
        async with transaction(self._pool) as conn:
            model = await self._model(conn, name)
            await conn.execute(
                "DELETE FROM registered_model_aliases WHERE model_key = $1 AND alias = $2",
                model["model_key"],
                alias,
            )

    # -- model versions ------------------------------------------------------------------

    async def resolve_source(
        self,
        source: str,
        run_id: str | None,
        model_id: str | None,
        *,
        is_prompt: bool,
        has_run_id: bool,
        has_model_id: bool,
    ) -> ResolvedSource:
        """Check what a new version may point at, as MLflow's server does, and where its files are read from.

        - ``models:/<name>/<version>`` (or ``@alias``, ``/latest``, ``/<stage>``) promotes an existing
          version: it becomes ``models:/<name>/<number>`` and keeps that version's run.
        - ``models:/<logged model id>`` needs that ``model_id``; the files are the logged model's,
          and the run is the logged model's run unless one was given.
        - ``runs:/<id>/...`` needs that ``run_id``; ``mlflow-artifacts:/`` URIs must lie in the
          artifacts of the given run (or logged model); local paths must lie in a local run
          artifact directory; no source may climb out of itself with ``..``.
        - A prompt version's source is one of MLflow's placeholders, and nothing else is checked.

        Raises:
            InvalidParameter: MLflow's "Invalid model version source" messages.
            NotFound: a registered model named by the source does not exist.
        """
        _check_storable(source, run_id, model_id)
        if is_prompt:
            if source not in PROMPT_SOURCES:
                raise InvalidParameter(
                    f"Invalid prompt source: '{source}'. Prompt sources must use an MLflow placeholder."
                )
            check_source_scheme(source)
            return ResolvedSource(source, run_id, model_id, source)
        check_source_scheme(source)
        async with connection(self._pool) as conn:
            storage_location = None
            parsed = urllib.parse.urlparse(source)
            if parsed.scheme == "models":
                if parsed.netloc:
                    raise InvalidParameter(
                        f"Invalid model version source: '{source}'. Registered model sources must use the "
                        "active model registry."
                    )
                models_uri = parse_models_uri(source)
                if models_uri is None:
                    raise invalid_source(source, "model_id")
                if models_uri.model_id is None:
                    source, run_id, model_id, storage_location = await self._promoted(
                        conn, source, models_uri, run_id, model_id, has_run_id, has_model_id
                    )
            if model_id:
                model = await self._check_model_source(conn, source, model_id)
            else:
                model = None
                await self._check_run_source(conn, source, run_id)
            models_uri = parse_models_uri(source) if parsed.scheme == "models" else None
            if models_uri is not None and models_uri.model_id is not None:
                logged = model or await self._logged_model(conn, models_uri.model_id)
                if logged is None:
                    raise InvalidParameter(
                        f"Unable to fetch model from model URI source artifact location '{source}'."
                    )
                storage_location = logged["artifact_location"]
                run_id = run_id or logged["source_run_id"]
            if not run_id and model_id:
                logged = model or await self._logged_model(conn, model_id)
                if logged is None:
                    raise NotFound(f"Logged model with ID '{model_id}' not found.")
                run_id = logged["source_run_id"]
        return ResolvedSource(source, run_id, model_id, storage_location or source)

    @staticmethod
    async def _logged_model(conn, model_id: str):
        return await conn.fetchrow(
            "SELECT artifact_location, source_run_id FROM logged_models "
            "WHERE model_id = $1 AND lifecycle_stage = 'active'",
            model_id,
        )

    async def _promoted(self, conn, source, models_uri: ModelsUri, run_id, model_id, has_run_id, has_model_id):
        """A registered version named as a source: its canonical URI, run and files."""
        model = await self._model(conn, models_uri.name)
        prompt = await conn.fetchval(
            "SELECT value FROM registered_model_tags WHERE model_key = $1 AND key = $2", model["model_key"], PROMPT_TAG
        )
        if prompt is not None and prompt.lower() == "true":
            raise InvalidParameter(
                f"Invalid model version source: '{source}'. Prompt versions cannot be used as model version sources."
            )
        if models_uri.version is not None:
            number = int(models_uri.version)
        elif models_uri.alias is not None:
            if models_uri.alias.lower() == "latest":
                number = await self._highest_version(conn, model, None)
            else:
                number = await conn.fetchval(
                    "SELECT version FROM registered_model_aliases WHERE model_key = $1 AND alias = $2",
                    model["model_key"],
                    models_uri.alias,
                )
                if number is None:
                    raise InvalidParameter(f"Registered model alias {models_uri.alias} not found.")
        else:
            number = await self._highest_version(conn, model, models_uri.stage)
        row = await self._version(conn, model, number)
        if (has_run_id and (run_id or "") != (row["source_run_id"] or "")) or (has_model_id and (model_id or "") != ""):
            raise InvalidParameter(
                f"Invalid model version source: '{source}'. The run_id and model_id request "
                "parameters must match the referenced model version."
            )
        return (
            f"models:/{model['name']}/{row['version']}",
            run_id if has_run_id else row["source_run_id"],
            model_id if has_model_id else None,
            row["storage_location"] or row["source"],
        )

    async def _highest_version(self, conn, model, stage: str | None) -> int:
        stages = [canonical_stage(stage)] if stage is not None else list(MODEL_STAGES)
        number = await conn.fetchval(
            "SELECT max(version) FROM model_versions WHERE model_key = $1 AND current_stage = ANY($2::text[])",
            model["model_key"],
            stages,
        )
        if number is None:
            stage_text = "" if stage is None else f" and stage '{stage}'"
            raise NotFound(f"No versions of model with name '{model['name']}'{stage_text} found")
        return number

    async def _check_run_source(self, conn, source: str, run_id: str | None) -> None:
        if is_local(source):
            if run_id:
                artifact_uri = await self._run_artifacts(conn, run_id, source)
                resolved = local_path(source)
                if is_local(artifact_uri):
                    root = local_path(artifact_uri)
                    if resolved == root or resolved.startswith(root.rstrip("/") + "/"):
                        return
                source = resolved
            raise InvalidParameter(
                f"Invalid model version source: '{source}'. To use a local path as a model version "
                "source, the run_id request parameter has to be specified and the local path has to be "
                "contained within the artifact directory of the run specified by the run_id."
            )
        check_no_relative_parts(source)
        parsed = urllib.parse.urlparse(source)
        if parsed.scheme == "runs":
            if parsed.netloc:
                raise invalid_source(source, "run_id")
            if run_id and runs_uri_run_id(source) == run_id:
                return
            raise invalid_source(source, "run_id")
        if parsed.scheme == "models":
            if parsed.netloc:
                raise invalid_source(source, "model_id")
            models_uri = parse_models_uri(source)
            if models_uri is None or models_uri.model_id is not None:
                raise invalid_source(source, "model_id")
        if is_proxied_artifact(source):
            if run_id and within(source, await self._run_artifacts(conn, run_id, source)):
                return
            raise invalid_source(source, "run_id")

    @staticmethod
    async def _run_artifacts(conn, run_id: str, source: str) -> str:
        artifact_uri = None
        if RUN_ID.match(run_id):
            artifact_uri = await conn.fetchval("SELECT artifact_uri FROM runs WHERE run_id = $1::uuid", run_id)
        if artifact_uri is None:
            raise invalid_source(source, "run_id")
        return artifact_uri

    async def _check_model_source(self, conn, source: str, model_id: str):
        """Check a source given with a model_id; the logged model's row when it was read."""

        async def logged_model():
            row = await self._logged_model(conn, model_id)
            if row is None:
                raise invalid_source(source, "model_id")
            return row

        if is_local(source):
            row = await logged_model()
            resolved = local_path(source)
            if is_local(row["artifact_location"]):
                root = local_path(row["artifact_location"])
                if resolved == root or resolved.startswith(root.rstrip("/") + "/"):
                    return row
            raise InvalidParameter(
                f"Invalid model version source: '{resolved}'. To use a local path as a model version "
                "source, the model_id request parameter has to be specified and the local path has to "
                "be contained within the artifact directory of the run specified by the model_id."
            )
        check_no_relative_parts(source)
        parsed = urllib.parse.urlparse(source)
        if parsed.scheme == "models":
            if parsed.netloc:
                raise invalid_source(source, "model_id")
            models_uri = parse_models_uri(source)
            if models_uri is None:
                raise invalid_source(source, "model_id")
            if models_uri.model_id is not None:
                if models_uri.model_id == model_id:
                    return await logged_model()
                raise invalid_source(source, "model_id")
        if parsed.scheme == "runs":
            raise invalid_source(source, "model_id")
        if is_proxied_artifact(source):
            row = await logged_model()
            if within(source, row["artifact_location"]):
                return row
            raise invalid_source(source, "model_id")
        return None

    async def create_model_version(
        self,
        name: str,
        resolved: ResolvedSource,
        *,
        tags: Sequence[KeyValue],
        run_link: str,
        description: str,
        is_prompt: bool,
    ) -> ModelVersion:
        """Add the next version of a model.

        A version registered from a logged model is also listed in that model's
        ``mlflow.modelVersions`` tag, as MLflow's server lists it.

        Raises:
            NotFound: no such registered model, or the logged model is gone.
        """
        _check_storable(run_link, description)
        _check_column("source", resolved.source, SOURCE_WIDTH)
        _check_column("run_id", resolved.run_id, RUN_ID_WIDTH)
        _check_column("run_link", run_link, RUN_LINK_WIDTH)
        _check_column("description", description, DESCRIPTION_WIDTH)
        _check_storable_tags(tags)
        created = now_ms()
        async with connection(self._pool) as conn:
            async with conn.transaction():
                model = await self._model(conn, name, lock=True)
                number = await conn.fetchval(
                    "UPDATE registered_models SET last_version = last_version + 1, last_updated_time = $2 "
                    "WHERE model_key = $1 RETURNING last_version",
                    model["model_key"],
                    created,
                )
                await conn.execute(
                    """INSERT INTO model_versions (model_key, version, creation_time, last_updated_time,
                           description, source, storage_location, source_run_id, run_link)
                       VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8)""",
                    model["model_key"],
                    number,
                    created,
                    description,
                    resolved.source,
                    resolved.storage_location,
                    resolved.run_id,
                    run_link,
                )
                await conn.executemany(
                    "INSERT INTO model_version_tags (model_key, version, key, value) VALUES ($1, $2, $3, $4)",
                    [(model["model_key"], number, k, v) for k, v in _last_per_key(tags).items()],
                )
                if resolved.model_id and not is_prompt:
                    await self._list_on_logged_model(conn, resolved.model_id, name, number)
                row = await self._version(conn, model, number)
            return await self._one_version(conn, model, row)

    @staticmethod
    async def _list_on_logged_model(conn, model_id: str, name: str, version: int) -> None:
        found = await conn.fetchval(
            "SELECT 1 FROM logged_models WHERE model_id = $1 AND lifecycle_stage = 'active' FOR UPDATE", model_id
        )
        if found is None:
            raise NotFound(f"Logged model with ID '{model_id}' not found.")
        existing = await conn.fetchval(
            "SELECT value FROM logged_model_tags WHERE model_id = $1 AND key = $2", model_id, MODEL_VERSIONS_TAG
        )
        entry = {"name": name, "version": version}
        listed = [entry]
        if existing:
            try:
                previous = json.loads(existing)
            except ValueError:
                previous = None
            if isinstance(previous, list):
                listed = previous if entry in previous else [*previous, entry]
        await conn.execute(
            "INSERT INTO logged_model_tags (model_id, key, value) VALUES ($1, $2, $3) "
            "ON CONFLICT (model_id, key) DO UPDATE SET value = EXCLUDED.value",
            model_id,
            MODEL_VERSIONS_TAG,
            json.dumps(listed),
        )

    async def update_model_version(self, name: str, version: int, description: str | None) -> ModelVersion:
        """Set (or, with None, clear) a version's description."""
        _check_storable(description)
        _check_column("description", description, DESCRIPTION_WIDTH)
        async with connection(self._pool) as conn:
            async with conn.transaction():
                model = await self._model(conn, name, of_version=version)
                await self._version(conn, model, version, lock=True)
                await conn.execute(
                    "UPDATE model_versions SET description = $3, last_updated_time = $4 "
                    "WHERE model_key = $1 AND version = $2",
                    model["model_key"],
                    version,
                    description,
                    now_ms(),
                )
            return await self._one_version(conn, model, await self._version(conn, model, version))

    async def transition_stage(self, name: str, version: int, stage: str, archive_existing: bool) -> ModelVersion:
        """Move a version to ``stage`` (canonical); with ``archive_existing`` the others in it go to Archived."""
        updated = now_ms()
        async with connection(self._pool) as conn:
            async with conn.transaction():
                model = await self._model(conn, name, lock=True, of_version=version)
                await self._version(conn, model, version)
                if archive_existing:
                    await conn.execute(
                        "UPDATE model_versions SET current_stage = 'Archived', last_updated_time = $4 "
                        "WHERE model_key = $1 AND version <> $2 AND current_stage = $3",
                        model["model_key"],
                        version,
                        stage,
                        updated,
                    )
                await conn.execute(
                    "UPDATE model_versions SET current_stage = $3, last_updated_time = $4 "
                    "WHERE model_key = $1 AND version = $2",
                    model["model_key"],
                    version,
                    stage,
                    updated,
                )
                await conn.execute(
                    "UPDATE registered_models SET last_updated_time = $2 WHERE model_key = $1",
                    model["model_key"],
                    updated,
                )
            return await self._one_version(conn, model, await self._version(conn, model, version))

    async def delete_model_version(self, name: str, version: int) -> None:
        """Delete a version with its tags and the aliases pointing at it; its number is not given again."""
        async with transaction(self._pool) as conn:
            model = await self._model(conn, name, lock=True, of_version=version)
            await self._version(conn, model, version)
            for table in ("registered_model_aliases", "model_version_tags", "model_versions"):
                await conn.execute(f"DELETE FROM {table} WHERE model_key = $1 AND version = $2",
                                   model["model_key"], version)
            await conn.execute(
                "UPDATE registered_models SET last_updated_time = $2 WHERE model_key = $1",
                model["model_key"],
                now_ms(),
            )

    async def set_model_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        _check_storable(key, value)
        async with transaction(self._pool) as conn:
            model = await self._model(conn, name, of_version=version)
            await self._version(conn, model, version, lock=True)
            await conn.execute(
                "INSERT INTO model_version_tags (model_key, version, key, value) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (model_key, version, key) DO UPDATE SET value = EXCLUDED.value",
                model["model_key"],
                version,
                key,
                value,
            )

    async def delete_model_version_tag(self, name: str, version: int, key: str) -> None:
        """Delete a version's tag; a tag that is not there is no error (as in MLflow)."""
        _check_storable(key)
        async with transaction(self._pool) as conn:
            model = await self._model(conn, name, of_version=version)
            await self._version(conn, model, version)
            await conn.execute(
                "DELETE FROM model_version_tags WHERE model_key = $1 AND version = $2 AND key = $3",
                model["model_key"],
                version,
                key,
            )


def _name_taken(name: str, existing_is_prompt: bool, new_is_prompt: bool) -> GatewayError:
    old = "Prompt" if existing_is_prompt else "Registered Model"
    new = "Prompt" if new_is_prompt else "Registered Model"
    if old != new:
        return AlreadyExists(
            f"Tried to create a {new.lower()} with name {name!r}, but the name is already taken by a "
            f"{old.lower()}. MLflow does not allow creating a model and a prompt with the same name."
        )
    return AlreadyExists(f"{new} (name={name}) already exists.")
