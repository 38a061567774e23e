"""MLflow 3 logged models and run outputs in PostgreSQL.

A logged model is created PENDING by log_model, its files are uploaded under
its artifact location, and the client then finalizes it READY (or FAILED).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from gateway.errors import NotFound
from gateway.mlflow import experiments, runs
from gateway.mlflow.wire import LOGGED_MODEL_WIRE_STATUS
from gateway.model import KeyValue, LoggedModel, LoggedModelData, LoggedModelInfo, Metric, ModelOutput, Tag, wire_float
from gateway.search.logged_models import (
    DatasetFilter,
    LoggedModelOrder,
    compile_logged_model_search,
    next_page_token,
)
from gateway.store import run_versions
from gateway.store.connections import connection, transaction
from gateway.store.errors import translate_transient
from gateway.store.names import random_run_name
from gateway.store.columns import now_ms, parse_experiment_id, run_uuid


def model_not_found(model_id: str) -> NotFound:
    return NotFound(f"Logged model with ID '{model_id}' not found.")


class LoggedModelStore:
    """Logged models, their params and tags, and runs' model outputs.

    Args:
        pool: the asyncpg pool.
    """

    def __init__(self, pool: asyncpg.Pool):
        self._pool = pool

    async def create(
        self,
        *,
        experiment_id: object,
        name: str | None,
        model_type: str | None,
        source_run_id: str | None,
        params: Sequence[KeyValue],
        tags: Sequence[KeyValue],
    ) -> LoggedModel:
        """Create a PENDING model in an active experiment, under ``<experiment location>/models/<id>/artifacts``."""
        exp_id = parse_experiment_id(experiment_id)
        model_id = "m-" + uuid.uuid4().hex
        created = now_ms()
        name = name or random_run_name()
        async with transaction(self._pool) as conn:
            experiment = await conn.fetchrow(
                "SELECT artifact_location, lifecycle_stage FROM experiments WHERE experiment_id = $1", exp_id
            )
            if experiment is None:
                raise experiments.experiment_not_found(exp_id)
            experiments.check_experiment_active(exp_id, experiment["lifecycle_stage"])
            location = f"{experiment['artifact_location'].rstrip('/')}/models/{model_id}/artifacts"
            await conn.execute(
                """INSERT INTO logged_models (model_id, experiment_id, name, artifact_location,
                       creation_timestamp_ms, last_updated_timestamp_ms, status, model_type, source_run_id)
                   VALUES ($1, $2, $3, $4, $5, $5, 'PENDING', $6, $7)""",
                model_id,
                exp_id,
                name,
                location,
                created,
                model_type or None,
                source_run_id or None,
            )
            await self._upsert(conn, "logged_model_params", model_id, params)
            await self._upsert(conn, "logged_model_tags", model_id, tags)
        return await self.get(model_id)

    @staticmethod
    async def _upsert(conn, table: str, model_id: str, items: Sequence[KeyValue]) -> None:
        if not items:
            return
        last = {item.key: item.value for item in items}  # a repeated key keeps its last value
        await conn.executemany(
            f"INSERT INTO {table} (model_id, key, value) VALUES ($1, $2, $3) "
            "ON CONFLICT (model_id, key) DO UPDATE SET value = EXCLUDED.value",
            [(model_id, key, value) for key, value in last.items()],
        )

    async def _require(self, conn, model_id: str) -> None:
        found = await conn.fetchval(
            "SELECT 1 FROM logged_models WHERE model_id = $1 AND lifecycle_stage = 'active' FOR UPDATE", model_id
        )
        if found is None:
            raise model_not_found(model_id)

    async def get(self, model_id: str, *, allow_deleted: bool = False) -> LoggedModel:
        models = await self.get_many([model_id], allow_deleted=allow_deleted)
        if not models:
            raise model_not_found(model_id)
        return models[0]

    async def get_many(self, model_ids: list[str], *, allow_deleted: bool = False) -> list[LoggedModel]:
        """Full models in the order of ``model_ids``; unknown (or deleted) ids are skipped."""
        if not model_ids:
            return []
        async with connection(self._pool) as conn:
            rows = await conn.fetch(
                "SELECT * FROM logged_models WHERE model_id = ANY($1::text[]) "
                "AND ($2 OR lifecycle_stage = 'active')",
                model_ids,
                allow_deleted,
            )
            params = await conn.fetch(
                "SELECT model_id, key, value FROM logged_model_params WHERE model_id = ANY($1::text[]) "
                "ORDER BY model_id, key",
                model_ids,
            )
            tags = await conn.fetch(
                "SELECT model_id, key, value FROM logged_model_tags WHERE model_id = ANY($1::text[]) "
                "ORDER BY model_id, key",
                model_ids,
            )
            metrics = await conn.fetch(
                """SELECT run_id, model_id, key, value, timestamp, step, dataset_name, dataset_digest
                   FROM metric_points WHERE model_id = ANY($1::text[])
                   ORDER BY model_id, key, step, timestamp""",
                model_ids,
            )
        by_id = {row["model_id"]: row for row in rows}
        params_of: dict[str, list[Tag]] = {}
        tags_of: dict[str, list[Tag]] = {}
        metrics_of: dict[str, list[Metric]] = {}
        for row in params:
            params_of.setdefault(row["model_id"], []).append(Tag(row["key"], row["value"]))
        for row in tags:
            tags_of.setdefault(row["model_id"], []).append(Tag(row["key"], row["value"]))
        for row in metrics:
            metrics_of.setdefault(row["model_id"], []).append(
                Metric(
                    row["key"],
                    wire_float(row["value"]),
                    row["timestamp"],
                    row["step"],
                    dataset_name=row["dataset_name"],
                    dataset_digest=row["dataset_digest"],
                    model_id=row["model_id"],
                    run_id=row["run_id"].hex,
                )
            )
        models = []
        for model_id in model_ids:
            row = by_id.get(model_id)
            if row is None:
                continue
            info = LoggedModelInfo(
                model_id=model_id,
                experiment_id=str(row["experiment_id"]),
                name=row["name"],
                creation_timestamp_ms=row["creation_timestamp_ms"],
                last_updated_timestamp_ms=row["last_updated_timestamp_ms"],
                artifact_uri=row["artifact_location"],
                status=LOGGED_MODEL_WIRE_STATUS.get(row["status"], "LOGGED_MODEL_STATUS_UNSPECIFIED"),
                model_type=row["model_type"],
                source_run_id=row["source_run_id"],
                status_message=row["status_message"],
                tags=tags_of.get(model_id, []),
            )
            data = LoggedModelData(params=params_of.get(model_id, []), metrics=metrics_of.get(model_id, []))
            models.append(LoggedModel(info=info, data=data))
        return models

    async def finalize(self, model_id: str, status: str) -> LoggedModel:
        """Set the model's status (PENDING, READY, FAILED or UNSPECIFIED)."""
        async with transaction(self._pool) as conn:
            await self._require(conn, model_id)
            await conn.execute(
                "UPDATE logged_models SET status = $2, last_updated_timestamp_ms = $3 WHERE model_id = $1",
                model_id,
                status,
                now_ms(),
            )
        return await self.get(model_id)

    async def delete(self, model_id: str) -> None:
        """Soft-delete: the model is hidden from get and search; its artifacts stay until gc."""
        async with transaction(self._pool) as conn:
            await self._require(conn, model_id)
            await conn.execute(
                "UPDATE logged_models SET lifecycle_stage = 'deleted', last_updated_timestamp_ms = $2 "
                "WHERE model_id = $1",
                model_id,
                now_ms(),
            )

    async def set_tags(self, model_id: str, tags: Sequence[KeyValue]) -> None:
        async with transaction(self._pool) as conn:
            await self._require(conn, model_id)
            await self._upsert(conn, "logged_model_tags", model_id, tags)

    async def delete_tag(self, model_id: str, key: str) -> None:
        async with transaction(self._pool) as conn:
            await self._require(conn, model_id)
            deleted = await conn.fetchval(
                "DELETE FROM logged_model_tags WHERE model_id = $1 AND key = $2 RETURNING key", model_id, key
            )
        if deleted is None:
            raise NotFound(f"No tag with key {key!r} found for model with ID {model_id!r}.")

    async def log_params(self, model_id: str, params: Sequence[KeyValue]) -> None:
        async with transaction(self._pool) as conn:
            await self._require(conn, model_id)
            await self._upsert(conn, "logged_model_params", model_id, params)

    async def search(
        self,
        *,
        experiment_ids: list[int],
        filter_string: str | None,
        order_by: list[LoggedModelOrder],
        max_results: int,
        page_token: str | None,
        datasets: list[DatasetFilter] | None = None,
    ) -> tuple[list[LoggedModel], str | None]:
        """One page of an experiment's active models (logged-models/search) and the next page's token."""
        query = compile_logged_model_search(
            experiment_ids=experiment_ids,
            filter_string=filter_string,
            order_by=order_by,
            max_results=max_results,
            page_token=page_token,
            datasets=datasets,
        )
        with translate_transient():
            rows = await self._pool.fetch(query.sql, *query.args)
        token = next_page_token(query, len(rows), max_results)
        return await self.get_many([row["model_id"] for row in rows[:max_results]]), token

    async def log_outputs(self, run_id: str, outputs: Sequence[ModelOutput]) -> None:
        """Record the models a run produced (runs/outputs); the run must be active."""
        run_uuid(run_id)
        async with transaction(self._pool) as conn:
            stage = await conn.fetchval("SELECT lifecycle_stage FROM runs WHERE run_id = $1", run_id)
            runs.check_run_writable(run_id, stage)
            await conn.executemany(
                "INSERT INTO run_model_outputs (run_id, model_id, step) VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING",
                [(run_id, output.model_id, output.step) for output in outputs],
            )
            await run_versions.bump(conn, [run_id])

    async def run_outputs(self, run_ids: list[str]) -> dict[str, list[ModelOutput]]:
        """The model outputs of each run, for runs/get."""
        with translate_transient():
            rows = await self._pool.fetch(
                "SELECT run_id, model_id, step FROM run_model_outputs WHERE run_id = ANY($1::uuid[]) "
                "ORDER BY run_id, step, model_id",
                run_ids,
            )
        outputs: dict[str, list[ModelOutput]] = {}
        for row in rows:
            outputs.setdefault(row["run_id"].hex, []).append(ModelOutput(row["model_id"], row["step"]))
        return outputs
