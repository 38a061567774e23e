"""Reads and the writes that do not go through the accumulator (experiments, run lifecycle)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from itertools import groupby
from operator import itemgetter

import asyncpg

from gateway import search
from gateway.errors import AlreadyExists, GatewayError, InvalidParameter, NotFound
from gateway.mlflow import experiments, runs
from gateway.mlflow.limits import INT64_MAX, INT64_MIN
from gateway.mlflow.page_tokens import offset_token, start_offset
from gateway.mlflow.wire import LOGGED_MODELS_TAG, RUN_NAME_TAG
from gateway.model import (
    Dataset,
    DatasetInput,
    DatasetSummary,
    Experiment,
    KeyValue,
    Metric,
    ModelInput,
    Run,
    RunData,
    RunInfo,
    RunInputs,
    RunOutputs,
    Tag,
    wire_float,
)
from gateway.store import export, points, run_versions, searching
from gateway.store.columns import RUN_ID, now_ms, parse_experiment_id, run_uuid
from gateway.store.connections import connection, transaction
from gateway.store.distribution import RunShards, lock_experiment
from gateway.store.errors import translate_transient
from gateway.store.names import random_run_name
from gateway.store.replicas import ReadRouter


def _experiment_from_row(row, tags: list[Tag]) -> Experiment:
    return Experiment(
        experiment_id=str(row["experiment_id"]),
        name=row["name"],
        artifact_location=row["artifact_location"],
        lifecycle_stage=row["lifecycle_stage"],
        last_update_time=row["last_update_time"],
        creation_time=row["creation_time"],
        tags=tags,
    )


def _run_info_from_row(row) -> RunInfo:
    run_id = row["run_id"].hex
    return RunInfo(
        run_uuid=run_id,
        experiment_id=str(row["experiment_id"]),
        run_name=row["name"],
        user_id=row["user_id"],
        status=row["status"],
        start_time=row["start_time"],
        end_time=row["end_time"],
        artifact_uri=row["artifact_uri"],
        lifecycle_stage=row["lifecycle_stage"],
        run_id=run_id,
    )


# The run ids of a page with their places in it, for get_runs.
_PLACES = "unnest($1::uuid[]) WITH ORDINALITY AS p(run_id, place)"

_place_of_row = itemgetter(0)


# One tag of an existing run; the row carries the run's experiment and start time
# (sql/005_search_sort_order.sql).
_SET_RUN_TAG = """
INSERT INTO run_tags (run_id, key, value, experiment_id, start_time)
SELECT run_id, $2::text, $3::text, experiment_id, start_time FROM runs WHERE run_id = $1
ON CONFLICT (run_id, key) DO UPDATE SET value = EXCLUDED.value
"""





_RUN_COLUMNS = "run_id, experiment_id, name, user_id, status, start_time, end_time, artifact_uri, lifecycle_stage"
_RUN_EXISTS = "SELECT EXISTS (SELECT FROM runs WHERE run_id = $1)"


class TrackingStore:
    """Experiments, runs and reads over an asyncpg pool.

    Searches, run and history reads and exports go through ``reads``, which may
    run them on a streaming replica; writes, and the reads that decide a write,
    use ``pool``.

    Args:
        pool: the asyncpg pool on the primary.
        artifact_root: default artifact root; an experiment's location is ``<root>/<id>``.
        reads: where reads run; by default all on ``pool``.
    """

    def __init__(
        self, pool: asyncpg.Pool, artifact_root: str = "mlflow-artifacts:/", *, reads: ReadRouter | None = None
    ):
        self._pool = pool
        self._reads = reads or ReadRouter(pool)
        self._shards = RunShards()
        self._artifact_root = artifact_root.rstrip("/")

    async def _read_fetch(self, sql: str, *args):
        """``fetch`` through the read router (a replica that has caught up, else the primary)."""

        async def read(pool: asyncpg.Pool):
            with translate_transient():
                return await pool.fetch(sql, *args)

        return await self._reads.run(read)

    async def _fetch(self, sql: str, *args):
        with translate_transient():
            return await self._pool.fetch(sql, *args)

    async def _fetchrow(self, sql: str, *args):
        with translate_transient():
            return await self._pool.fetchrow(sql, *args)

    async def _execute(self, sql: str, *args):
        with translate_transient():
            return await self._pool.execute(sql, *args)

    # ---- experiments ---------------------------------------------------------------

    async def create_experiment(self, name: str, artifact_location: str | None, tags: Sequence[KeyValue]) -> str:
        """Create an experiment; RESOURCE_ALREADY_EXISTS if the name is taken (by any stage)."""
        created = now_ms()
        async with transaction(self._pool) as conn:
            experiment_id = await conn.fetchval("SELECT nextval('experiment_id_seq')")
            location = artifact_location or f"{self._artifact_root}/{experiment_id}"
            try:
                await conn.execute(
                    """INSERT INTO experiments (experiment_id, name, artifact_location,
                                                creation_time, last_update_time)
                       VALUES ($1, $2, $3, $4, $4)""",
                    experiment_id,
                    name,
                    location,
                    created,
                )
            except asyncpg.exceptions.UniqueViolationError:
                raise AlreadyExists(f"Experiment(name={name}) already exists.") from None
            if tags:
                await conn.executemany(
                    "INSERT INTO experiment_tags (experiment_id, key, value) VALUES ($1, $2, $3) "
                    "ON CONFLICT (experiment_id, key) DO UPDATE SET value = EXCLUDED.value",
                    [(experiment_id, t.key, t.value) for t in tags],
                )
        return str(experiment_id)

    async def _experiment_tags(
        self, experiment_ids: list[int], pool: asyncpg.Pool | None = None
    ) -> dict[int, list[Tag]]:
        with translate_transient():
            rows = await (pool or self._pool).fetch(
                "SELECT experiment_id, key, value FROM experiment_tags WHERE experiment_id = ANY($1::bigint[]) "
                "ORDER BY experiment_id, key",
                experiment_ids,
            )
        tags: dict[int, list[Tag]] = {}
        for row in rows:
            tags.setdefault(row["experiment_id"], []).append(Tag(row["key"], row["value"]))
        return tags

    async def get_experiment(self, experiment_id: object) -> Experiment:
        exp_id = parse_experiment_id(experiment_id)
        row = await self._fetchrow("SELECT * FROM experiments WHERE experiment_id = $1", exp_id)
        if row is None:
            raise experiments.experiment_not_found(exp_id)
        tags = await self._experiment_tags([exp_id])
        return _experiment_from_row(row, tags.get(exp_id, []))

    async def get_experiment_by_name(self, name: str) -> Experiment:
        row = await self._fetchrow("SELECT * FROM experiments WHERE name = $1", name)
        if row is None:
            raise NotFound(f"Could not find experiment with name '{name}'")
        tags = await self._experiment_tags([row["experiment_id"]])
        return _experiment_from_row(row, tags.get(row["experiment_id"], []))

    async def rename_experiment(self, experiment_id: object, new_name: str) -> None:
        experiment = await self.get_experiment(experiment_id)
        if experiment.lifecycle_stage != "active":
            raise GatewayError("Cannot rename a non-active experiment.", "INVALID_STATE")
        try:
            await self._execute(
                "UPDATE experiments SET name = $2, last_update_time = $3 WHERE experiment_id = $1",
                int(experiment.experiment_id),
                new_name,
                now_ms(),
            )
        except asyncpg.exceptions.UniqueViolationError:
            raise AlreadyExists(f"Experiment(name={new_name}) already exists.") from None

    async def set_experiment_lifecycle(self, experiment_id: object, stage: str) -> None:
        """Delete (stage 'deleted') or restore (stage 'active') an experiment and its runs, as MLflow does."""
        exp_id = parse_experiment_id(experiment_id)
        expected = "active" if stage == "deleted" else "deleted"
        moment = now_ms()
        async with transaction(self._pool) as conn:
            await lock_experiment(conn, exp_id)
            updated = await conn.fetchval(
                """UPDATE experiments SET lifecycle_stage = $2, last_update_time = $3
                   WHERE experiment_id = $1 AND lifecycle_stage = $4 RETURNING experiment_id""",
                exp_id,
                stage,
                moment,
                expected,
            )
            if updated is None:
                raise experiments.experiment_not_found(exp_id)
            # Lock the runs first, in the order flushes and gc lock them, so this
            # statement cannot deadlock with them. No run joins the experiment
            # meanwhile: creating one takes the experiment's lock.
            found = await conn.fetch("SELECT run_id FROM runs WHERE experiment_id = $1", exp_id)
            await self._shards.lock_runs(conn, [row["run_id"] for row in found], "run_id")
            await conn.execute(
                """UPDATE runs SET lifecycle_stage = $2,
                          deleted_time = CASE WHEN $2 = 'deleted' THEN $3::bigint ELSE NULL END
                   WHERE experiment_id = $1""",
                exp_id,
                stage,
                moment,
            )
            await run_versions.bump(conn, sorted(row["run_id"] for row in found))

    async def set_experiment_tag(self, experiment_id: object, key: str, value: str) -> None:
        experiment = await self.get_experiment(experiment_id)
        experiments.check_experiment_active(experiment.experiment_id, experiment.lifecycle_stage)
        await self._execute(
            "INSERT INTO experiment_tags (experiment_id, key, value) VALUES ($1, $2, $3) "
            "ON CONFLICT (experiment_id, key) DO UPDATE SET value = EXCLUDED.value",
            int(experiment.experiment_id),
            key,
            value,
        )

    async def delete_experiment_tag(self, experiment_id: object, key: str) -> None:
        experiment = await self.get_experiment(experiment_id)
        experiments.check_experiment_active(experiment.experiment_id, experiment.lifecycle_stage)
        deleted = await self._fetchrow(
            "DELETE FROM experiment_tags WHERE experiment_id = $1 AND key = $2 RETURNING key",
            int(experiment.experiment_id),
            key,
        )
        if deleted is None:
            raise NotFound(f"No tag with name: {key} in experiment with id {experiment.experiment_id}")

    async def search_experiments(
        self,
        *,
        filter_string: str | None,
        view_type: str,
        order_by: list[str] | None,
        max_results: int,
        page_token: str | None,
    ) -> tuple[list[Experiment], str | None]:
        query = search.compile_experiment_search(
            filter_string=filter_string,
            view_type=view_type,
            order_by=order_by,
            max_results=max_results,
            page_token=page_token,
        )

        async def read(pool: asyncpg.Pool) -> tuple[list[Experiment], str | None]:
            with translate_transient():
                rows = await pool.fetch(query.sql, *query.args)
                token = search.next_experiment_page_token(query, rows, max_results)
                ids = [row["experiment_id"] for row in rows[:max_results]]
                if not ids:
                    return [], token
                full = await pool.fetch("SELECT * FROM experiments WHERE experiment_id = ANY($1::bigint[])", ids)
            by_id = {row["experiment_id"]: row for row in full}
            tags = await self._experiment_tags(ids, pool)
            return [_experiment_from_row(by_id[i], tags.get(i, [])) for i in ids if i in by_id], token

        return await self._reads.run(read)

    # ---- runs ------------------------------------------------------------------------

    async def create_run(
        self,
        *,
        experiment_id: object,
        user_id: str,
        run_name: str | None,
        start_time: int | None,
        tags: Sequence[KeyValue],
    ) -> Run:
        exp_id = parse_experiment_id(experiment_id)
        tag_values = {t.key: t.value for t in tags}
        tag_name = tag_values.get(RUN_NAME_TAG)
        run_id = uuid.uuid4().hex
        start = start_time if start_time is not None else now_ms()
        async with transaction(self._pool) as conn:
            # The experiment is held (its lock, shared) while the run goes in, so
            # neither a delete nor gc can take it away underneath the run.
            await lock_experiment(conn, exp_id, shared=True)
            experiment = await conn.fetchrow(
                "SELECT lifecycle_stage, artifact_location FROM experiments WHERE experiment_id = $1", exp_id
            )
            if experiment is None:
                raise experiments.experiment_not_found(exp_id)
            experiments.check_experiment_active(exp_id, experiment["lifecycle_stage"])
            if run_name and tag_name and run_name != tag_name:
                raise InvalidParameter(
                    "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with "
                    f"different values (run_name='{run_name}', mlflow.runName='{tag_name}')."
                )
            name = run_name or tag_name or random_run_name()
            if tag_name is None:
                tag_values[RUN_NAME_TAG] = name
            artifact_uri = f"{experiment['artifact_location'].rstrip('/')}/{run_id}/artifacts"
            await conn.execute(
                """INSERT INTO runs (run_id, experiment_id, name, user_id, status, start_time,
                                     artifact_uri, lifecycle_stage)
                   VALUES ($1, $2, $3, $4, 'RUNNING', $5, $6, 'active')""",
                run_id,
                exp_id,
                name,
                user_id,
                start,
                artifact_uri,
            )
            await conn.executemany(
                "INSERT INTO run_tags (run_id, key, value, experiment_id, start_time) VALUES ($1, $2, $3, $4, $5)",
                [(run_id, key, value, exp_id, start) for key, value in tag_values.items()],
            )
        info = RunInfo(
            run_uuid=run_id,
            experiment_id=str(exp_id),
            run_name=name,
            user_id=user_id,
            status="RUNNING",
            start_time=start,
            artifact_uri=artifact_uri,
            lifecycle_stage="active",
            run_id=run_id,
        )
        return Run(
            info=info,
            data=RunData(tags=[Tag(k, v) for k, v in tag_values.items()]),
            inputs=RunInputs(),
        )

    async def run_lifecycle_stage(self, run_id: str) -> str | None:
        """The run's lifecycle stage, or None if there is no such run."""
        if not RUN_ID.match(run_id):
            return None
        row = await self._fetchrow("SELECT lifecycle_stage FROM runs WHERE run_id = $1", run_id)
        return None if row is None else row["lifecycle_stage"]

    async def get_run_info(self, run_id: str) -> RunInfo:
        run_uuid(run_id)
        row = await self._fetchrow(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = $1", run_id)
        if row is None:
            raise runs.run_not_found(run_id)
        return _run_info_from_row(row)

    async def get_run(self, run_id: str) -> Run:
        run_uuid(run_id)
        found = await self._reads.run(lambda pool: self._runs_on(pool, [run_id], with_outputs=True))
        if not found:
            raise runs.run_not_found(run_id)
        return found[0]

    async def get_runs(self, run_ids: list[str], *, with_outputs: bool = False) -> list[Run]:
        """Full runs (info, latest metrics, params, tags, inputs) in the order of ``run_ids``, read on the primary."""
        return await self._runs_on(self._pool, run_ids, with_outputs=with_outputs)

    async def _runs_on(self, pool: asyncpg.Pool, run_ids: list[str], *, with_outputs: bool) -> list[Run]:
        if not run_ids:
            return []
        # Encoded once as uuids: asyncpg would otherwise parse each hex id again for every statement.
        page = [uuid.UUID(hex=run_id) for run_id in run_ids]
        statements = [
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ANY($1::uuid[])",
            # A page is thousands of these rows; each names its run by its place
            # in run_ids (1-based), an int that groups faster than a uuid.
            f"SELECT p.place, m.key, m.value, m.timestamp, m.step FROM {_PLACES} "
            "JOIN metric_summaries m ON m.run_id = p.run_id ORDER BY p.place, m.key",
            f"SELECT p.place, m.key, m.value FROM {_PLACES} JOIN params m ON m.run_id = p.run_id "
            "ORDER BY p.place, m.key",
            f"SELECT p.place, m.key, m.value FROM {_PLACES} JOIN run_tags m ON m.run_id = p.run_id "
            "ORDER BY p.place, m.key",
            "SELECT * FROM run_dataset_inputs WHERE run_id = ANY($1::uuid[]) ORDER BY run_id, position",
            "SELECT run_id, model_id FROM run_model_inputs WHERE run_id = ANY($1::uuid[]) ORDER BY run_id, model_id",
        ]
        if with_outputs:
            statements.append(
                "SELECT run_id, model_id, step FROM run_model_outputs WHERE run_id = ANY($1::uuid[]) "
                "ORDER BY run_id, step, model_id"
            )
        # A page of runs is thousands of rows: the tables are read side by side,
        # each on a connection of its own, so PostgreSQL and the decoding overlap.
        with translate_transient():
            infos, metrics, params, tags, datasets, models, *rest = await asyncio.gather(
                *(pool.fetch(statement, page) for statement in statements)
            )
        outputs = rest[0] if with_outputs else []
        # One comprehension per table, no call per row: these loops are most of a page's Python time.
        metrics_of = {
            place: [Metric(row[1], row[2] if row[2] == row[2] else "NaN", row[3], row[4]) for row in group]
            for place, group in groupby(metrics, _place_of_row)
        }
        params_of = {place: [Tag(row[1], row[2]) for row in group] for place, group in groupby(params, _place_of_row)}
        tags_of = {place: [Tag(row[1], row[2]) for row in group] for place, group in groupby(tags, _place_of_row)}
        inputs: dict[str, RunInputs] = {}
        for row in datasets:
            dataset = Dataset(
                name=row["name"],
                digest=row["digest"],
                source_type=row["source_type"],
                source=row["source"],
                schema=row["schema"],
                profile=row["profile"],
            )
            input_tags = [Tag(t["key"], t["value"]) for t in json.loads(row["tags"])]
            inputs.setdefault(row["run_id"].hex, RunInputs()).dataset_inputs.append(
                DatasetInput(tags=input_tags, dataset=dataset)
            )
        for row in models:
            inputs.setdefault(row["run_id"].hex, RunInputs()).model_inputs.append(ModelInput(row["model_id"]))
        outputs_of: dict[str, RunOutputs] = {}
        for row in outputs:
            outputs_of.setdefault(row["run_id"].hex, RunOutputs()).model_outputs.append(
                {"model_id": row["model_id"], "step": row["step"]}
            )
        by_id = {row["run_id"].hex: row for row in infos}
        place: dict[str, int] = {}  # the first place of each run id (a repeated id reads its rows once)
        for index, run_id in enumerate(run_ids, start=1):
            place.setdefault(run_id, index)
        result = []
        for run_id in run_ids:
            row = by_id.get(run_id)
            if row is None:
                continue
            run = place[run_id]
            result.append(
                Run(
                    info=_run_info_from_row(row),
                    data=RunData(metrics_of.get(run, []), params_of.get(run, []), tags_of.get(run, [])),
                    inputs=inputs.get(run_id) or RunInputs(),
                    outputs=(outputs_of.get(run_id) or RunOutputs()) if with_outputs else None,
                )
            )
        return result

    async def update_run(
        self, run_id: str, *, status: str | None, end_time: int | None, run_name: str | None
    ) -> RunInfo:
        run_uuid(run_id)
        async with transaction(self._pool) as conn:
            row = await conn.fetchrow(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = $1 FOR UPDATE", run_id
            )
            runs.check_run_writable(run_id, None if row is None else row["lifecycle_stage"])
            row = await conn.fetchrow(
                f"""UPDATE runs SET status = COALESCE($2, status), end_time = COALESCE($3, end_time),
                          name = COALESCE($4, name)
                   WHERE run_id = $1 RETURNING {_RUN_COLUMNS}""",
                run_id,
                status,
                end_time,
                run_name or None,
            )
            if run_name:
                await conn.execute(
                    _SET_RUN_TAG,
                    run_id,
                    RUN_NAME_TAG,
                    run_name,
                )
            await run_versions.bump(conn, [run_id])
        return _run_info_from_row(row)

    async def set_run_lifecycle(self, run_id: str, stage: str) -> None:
        """Soft-delete (stage 'deleted', keeping the time) or restore (stage 'active') a run."""
        run_uuid(run_id)
        async with transaction(self._pool) as conn:
            updated = await conn.fetchrow(
                """UPDATE runs SET lifecycle_stage = $2,
                          deleted_time = CASE WHEN $2 = 'deleted' THEN $3::bigint ELSE NULL END
                   WHERE run_id = $1 RETURNING run_id""",
                run_id,
                stage,
                now_ms(),
            )
            if updated is None:
                raise runs.run_not_found(run_id)
            await run_versions.bump(conn, [run_id])

    async def bulk_delete_runs(self, experiment_id: object, max_timestamp_millis: int, max_runs: int) -> int:
        """Soft-delete the experiment's active runs created at or before the time, at most ``max_runs``.

        Returns:
            how many runs were deleted.
        """
        exp_id = parse_experiment_id(experiment_id)
        await self.get_experiment(exp_id)
        async with transaction(self._pool) as conn:
            chosen = await conn.fetch(
                """SELECT run_id FROM runs
                   WHERE experiment_id = $1 AND lifecycle_stage = 'active' AND start_time <= $2
                   ORDER BY start_time, run_id LIMIT $3""",
                exp_id,
                max_timestamp_millis,
                max_runs,
            )
            deleted = await self._change_runs(
                conn, chosen, "lifecycle_stage = 'deleted', deleted_time = $3", "active", now_ms()
            )
        return len(deleted)

    async def bulk_restore_runs(self, experiment_id: object, min_timestamp_millis: int, max_runs: int) -> int:
        """Restore the experiment's runs deleted at or after the time, at most ``max_runs``.

        Returns:
            how many runs were restored.
        """
        exp_id = parse_experiment_id(experiment_id)
        await self.get_experiment(exp_id)
        async with transaction(self._pool) as conn:
            chosen = await conn.fetch(
                """SELECT run_id FROM runs
                   WHERE experiment_id = $1 AND lifecycle_stage = 'deleted' AND deleted_time >= $2
                   ORDER BY deleted_time, run_id LIMIT $3""",
                exp_id,
                min_timestamp_millis,
                max_runs,
            )
            restored = await self._change_runs(
                conn, chosen, "lifecycle_stage = 'active', deleted_time = NULL", "deleted"
            )
        return len(restored)

    async def _change_runs(self, conn, chosen, assignments: str, stage: str, *args) -> list:
        """Lock the chosen runs still in ``stage``, in the order flushes lock them (so the two cannot
        deadlock), and set ``assignments`` (parameters from ``$3``) on them; the changed runs' ids."""
        locked = await self._shards.lock_runs(
            conn, [row["run_id"] for row in chosen], "run_id", "AND lifecycle_stage = $2", stage
        )
        if not locked:
            return []
        changed = await conn.fetch(
            f"UPDATE runs SET {assignments} WHERE run_id = ANY($1::uuid[]) AND lifecycle_stage = $2 RETURNING run_id",
            [row["run_id"] for row in locked],
            stage,
            *args,
        )
        await run_versions.bump(conn, sorted(row["run_id"] for row in changed))
        return changed

    async def delete_tag(self, run_id: str, key: str) -> None:
        runs.check_run_writable(run_id, (await self.get_run_info(run_id)).lifecycle_stage)
        async with transaction(self._pool) as conn:
            deleted = await conn.fetchrow(
                "DELETE FROM run_tags WHERE run_id = $1 AND key = $2 RETURNING key", run_id, key
            )
            if deleted is None:
                raise NotFound(f"No tag with name: {key} in run with id {run_id}")
            await run_versions.bump(conn, [run_id])

    async def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput], model_ids: Sequence[str]) -> None:
        runs.check_run_writable(run_id, (await self.get_run_info(run_id)).lifecycle_stage)
        async with transaction(self._pool) as conn:
            position = await conn.fetchval(
                "SELECT COALESCE(max(position), 0) FROM run_dataset_inputs WHERE run_id = $1", run_id
            )
            rows = []
            for offset, item in enumerate(datasets, start=1):
                d = item.dataset
                tags = json.dumps([{"key": t.key, "value": t.value} for t in item.tags])
                rows.append(
                    (run_id, d.name, d.digest, d.source_type, d.source, d.schema, d.profile, tags, position + offset)
                )
            if rows:
                await conn.executemany(
                    """INSERT INTO run_dataset_inputs
                           (run_id, name, digest, source_type, source, schema, profile, tags, position)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9)
                       ON CONFLICT (run_id, name, digest) DO UPDATE SET tags = EXCLUDED.tags""",
                    rows,
                )
            if model_ids:
                await conn.executemany(
                    "INSERT INTO run_model_inputs (run_id, model_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    [(run_id, m) for m in model_ids],
                )
            await run_versions.bump(conn, [run_id])

    async def search_datasets(self, experiment_ids: Sequence[object]) -> list[DatasetSummary]:
        """The datasets logged to runs of these experiments, each with its context input tag.

        One summary per (experiment, name, digest, context), at most 1000, as MLflow's
        experiments/search-datasets answers them.
        """
        ids = [parse_experiment_id(e) for e in experiment_ids]
        rows = await self._read_fetch(
            """SELECT DISTINCT r.experiment_id, d.name, d.digest,
                      (SELECT t->>'value' FROM jsonb_array_elements(d.tags) t
                        WHERE t->>'key' = 'mlflow.data.context' LIMIT 1) AS context
                 FROM run_dataset_inputs d JOIN runs r USING (run_id)
                WHERE r.experiment_id = ANY($1::bigint[])
                ORDER BY 1, 2, 3, 4
                LIMIT 1000""",
            ids,
        )
        return [
            DatasetSummary(experiment_id=str(row["experiment_id"]), name=row["name"], digest=row["digest"],
                           context=row["context"])
            for row in rows
        ]

    async def append_logged_model(self, run_id: str, model: dict) -> None:
        """Record a logged model in the run's ``mlflow.log-model.history`` tag, as MLflow does."""
        run_uuid(run_id)
        async with transaction(self._pool) as conn:
            stage = await conn.fetchval("SELECT lifecycle_stage FROM runs WHERE run_id = $1 FOR UPDATE", run_id)
            runs.check_run_writable(run_id, stage)
            current = await conn.fetchval(
                "SELECT value FROM run_tags WHERE run_id = $1 AND key = $2", run_id, LOGGED_MODELS_TAG
            )
            try:
                history = json.loads(current) if current else []
            except ValueError:
                history = []
            history.append(model)
            await conn.execute(
                _SET_RUN_TAG,
                run_id,
                LOGGED_MODELS_TAG,
                json.dumps(history),
            )
            await run_versions.bump(conn, [run_id])

    # ---- metric history --------------------------------------------------------------

    async def get_metric_history(
        self, run_id: str, key: str, *, max_results: int | None, page_token: str | None
    ) -> tuple[list[Metric], str | None]:
        """A key's points in MLflow's order (timestamp, step, value), paged by an offset token."""
        run_uuid(run_id)
        try:
            offset = start_offset(page_token)
        except InvalidParameter:
            await self.get_run_info(run_id)  # a missing run is reported before a bad token
            raise

        async def read(pool: asyncpg.Pool) -> tuple[list[Metric], int]:
            async with connection(pool) as conn:
                page, total = await points.history_page(conn, run_id, key, offset, max_results)
                if not page and not await conn.fetchval(_RUN_EXISTS, run_id):
                    raise runs.run_not_found(run_id)
            return page, total

        page, total = await self._reads.run(read)
        token = None
        if max_results is not None and offset + max_results < total:
            token = offset_token(offset + max_results)
        return page, token

    async def get_metric_history_bulk(self, run_ids: Sequence[str], key: str, max_results: int) -> list[Metric]:
        """A key's points over several runs, by run id and then as get-history orders them, at most
        ``max_results`` in all; ids of no stored run are left out, as MLflow leaves them out."""
        ids = sorted({r for r in run_ids if RUN_ID.match(r)})

        async def read(pool: asyncpg.Pool) -> list[Metric]:
            result: list[Metric] = []
            async with transaction(pool, readonly=True, isolation="repeatable_read") as conn:
                chunks_by_run = await points.chunks_of(conn, ids, key)
                for run_id in ids:
                    if len(result) >= max_results or run_id not in chunks_by_run:
                        continue
                    result += await points.history(
                        conn, chunks_by_run[run_id], key, 0, max_results - len(result), run_id, with_series=False
                    )
            return result

        return await self._reads.run(read)

    async def get_metric_history_sampled(
        self,
        run_ids: list[str],
        key: str,
        *,
        max_results: int,
        start_step: int | None = None,
        end_step: int | None = None,
    ) -> list[Metric]:
        """Up to ``max_results`` points per run, sampled as MLflow samples them (see
        :func:`gateway.store.points.sample`), by run id and then in (step, timestamp, value) order."""
        for run_id in run_ids:
            run_uuid(run_id)
        ordered = sorted(set(run_ids))
        low = start_step if start_step is not None else INT64_MIN
        high = end_step if end_step is not None else INT64_MAX

        async def read(pool: asyncpg.Pool) -> dict:
            async with transaction(pool, readonly=True, isolation="repeatable_read") as conn:
                stored = {r["run_id"].hex for r in await conn.fetch(
                    "SELECT run_id FROM runs WHERE run_id = ANY($1::uuid[])", ordered)}
                for run_id in run_ids:
                    if run_id not in stored:
                        raise runs.run_not_found(run_id)
                chunks_by_run = await points.chunks_of(conn, ordered, key)
                return await points.sample(conn, chunks_by_run, key, max_results, low, high)

        sampled = await self._reads.run(read)
        return [
            Metric(key, wire_float(value), timestamp, step, run_id=run_id)
            for run_id in ordered
            for step, timestamp, value in sampled.get(run_id, [])
        ]

    # ---- search ----------------------------------------------------------------------

    def runs_csv(
        self,
        *,
        experiment_ids: list[int],
        filter_string: str | None,
        run_view_type: str,
        order_by: list[str] | None,
    ) -> AsyncIterator[str]:
        """Stream the runs CSV of a search (see :func:`gateway.store.export.runs_csv`)."""
        return export.runs_csv(
            self._reads,
            experiment_ids=experiment_ids,
            filter_string=filter_string,
            run_view_type=run_view_type,
            order_by=order_by,
        )

    async def search_runs(self, **arguments) -> tuple[list[Run], str | None]:
        """A page of runs/search and the next page's token; the arguments are
        :func:`gateway.search.compile_run_search`'s."""
        page, token = await self.search_runs_by_version(**arguments)
        return [run for _, _, run in page], token

    async def search_runs_by_version(
        self, *, known: Callable[[str, int], bool] | None = None, **arguments
    ) -> tuple[list[tuple[str, int, Run | None]], str | None]:
        """A page of runs/search for a caller that keeps runs by version (sql/011_run_versions.sql).

        Returns:
            (run id, version, run) for each run of the page in search order, the run read
            whole unless ``known(run id, version)`` (then None; the version is -1 without
            ``known``, as it is not read), and the next page's token.
        """
        query = search.compile_run_search(**arguments)
        max_results = arguments["max_results"]

        async def read(pool: asyncpg.Pool) -> tuple[list[tuple[str, int, Run | None]], str | None]:
            async with transaction(pool, readonly=True) as conn:
                await conn.execute(searching.PLANNER_SETTINGS)
                rows = await searching.fetch_page(conn, query)
                run_ids = [row["run_id"] for row in rows[:max_results]]
                # Read before the runs themselves, so a run read is at least as new as its version.
                versions = await run_versions.read(conn, run_ids) if known is not None and run_ids else {}
            token = search.next_run_page_token(query, rows, max_results)
            page = [(run_id.hex, versions.get(run_id.hex, -1)) for run_id in run_ids]
            wanted = [run_id for run_id, version in page if known is None or not known(run_id, version)]
            # Each run with the models it logged, as MLflow's runs/search shows it.
            found = {run.info.run_id: run for run in await self._runs_on(pool, wanted, with_outputs=True)}
            missing = set(wanted) - found.keys()  # removed since the search (gc): left out, as before
            return [(run_id, version, found.get(run_id)) for run_id, version in page if run_id not in missing], token

        return await self._reads.run(read)
