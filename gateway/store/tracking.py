"""Reads and the writes that do not go through the accumulator (experiments, run lifecycle)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from itertools import groupby
from operator import itemgetter

import asyncpg

from gateway import search
from gateway.errors import AlreadyExists, GatewayError, InvalidParameter, NotFound, check_run_writable
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
from gateway.store import export, points, searching
from gateway.store.distribution import RunShards
from gateway.store.errors import translate_transient
from gateway.store.names import random_run_name
from gateway.store.writer import RUN_NAME_TAG

LOGGED_MODELS_TAG = "mlflow.log-model.history"
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def now_ms() -> int:
    return int(time.time() * 1000)


def parse_experiment_id(experiment_id: object) -> int:
    """An experiment id as the integer it is stored as; MLflow's error otherwise."""
    try:
        value = int(experiment_id)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidParameter(
            f"Invalid experiment ID '{experiment_id}'. Experiment ID must be a valid integer."
        ) from None
    if not -(2**63) <= value < 2**63:
        raise NotFound(f"No Experiment with id={value} exists")
    return value


def run_uuid(run_id: str) -> str:
    """Check that a run id can name a stored run; NotFound (as MLflow) when it cannot."""
    if not _RUN_ID.match(run_id):
        raise NotFound(f"Run with id={run_id} not found")
    return run_id


def _offset_token(offset: int) -> str:
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


def _parse_offset_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.b64decode(token, validate=True))["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidParameter(f"Invalid page token, could not base64-decode. Token: {token!r}") from None
    if not isinstance(offset, int) or offset < 0:
        raise InvalidParameter(f"Invalid page token, offset must be a non-negative integer. Token: {token!r}")
    return offset


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

# Run creation holds its experiment's lock shared, and what deletes, restores or
# removes an experiment with its runs holds it exclusively, so a run cannot be
# created into an experiment that is leaving (gc would leave it without one, a
# delete would leave it active). An advisory lock, not a row lock on the
# experiment: on Citus experiments is a reference table, whose row locks are
# taken on every node and deadlocked concurrent run creation; an advisory lock
# is the coordinator's alone. Its key is (this class, the id's 32-bit hash):
# ids that share a hash only wait for each other.
_EXPERIMENT_LOCK_CLASS = 0x6D6C6578  # "mlex"
_LOCK_EXPERIMENT_SHARED = "SELECT pg_advisory_xact_lock_shared($1::integer, hashint8($2::bigint))"
_LOCK_EXPERIMENT = "SELECT pg_advisory_xact_lock($1::integer, hashint8($2::bigint))"


async def lock_experiment(conn: asyncpg.Connection, experiment_id: int, *, shared: bool = False) -> None:
    """Take an experiment's lock until the transaction ends: shared to create a run in it,
    exclusive to change or remove it with its runs."""
    await conn.execute(
        _LOCK_EXPERIMENT_SHARED if shared else _LOCK_EXPERIMENT, _EXPERIMENT_LOCK_CLASS, experiment_id
    )


_RUN_COLUMNS = "run_id, experiment_id, name, user_id, status, start_time, end_time, artifact_uri, lifecycle_stage"
_RUN_EXISTS = "SELECT EXISTS (SELECT FROM runs WHERE run_id = $1)"


class TrackingStore:
    """Experiments, runs and reads over an asyncpg pool.

    Args:
        pool: the asyncpg pool.
        artifact_root: default artifact root; an experiment's location is ``<root>/<id>``.
    """

    def __init__(self, pool: asyncpg.Pool, artifact_root: str = "mlflow-artifacts:/"):
        self._pool = pool
        self._shards = RunShards()
        self._artifact_root = artifact_root.rstrip("/")

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
        with translate_transient():
            async with self._pool.acquire() as conn, conn.transaction():
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

    async def _experiment_tags(self, experiment_ids: list[int]) -> dict[int, list[Tag]]:
        rows = await self._fetch(
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
            raise NotFound(f"No Experiment with id={exp_id} exists")
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
        with translate_transient():
            async with self._pool.acquire() as conn, conn.transaction():
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
                    raise NotFound(f"No Experiment with id={exp_id} exists")
                # Lock the runs first, in the order flushes and gc lock them, so this
                # statement cannot deadlock with them. No run joins the experiment
                # meanwhile: creating one takes the experiment's lock.
                runs = await conn.fetch("SELECT run_id FROM runs WHERE experiment_id = $1", exp_id)
                await self._shards.lock_runs(conn, [row["run_id"] for row in runs], "run_id")
                await conn.execute(
                    """UPDATE runs SET lifecycle_stage = $2,
                              deleted_time = CASE WHEN $2 = 'deleted' THEN $3::bigint ELSE NULL END
                       WHERE experiment_id = $1""",
                    exp_id,
                    stage,
                    moment,
                )

    async def set_experiment_tag(self, experiment_id: object, key: str, value: str) -> None:
        experiment = await self.get_experiment(experiment_id)
        if experiment.lifecycle_stage != "active":
            raise InvalidParameter(
                f"The experiment {experiment.experiment_id} must be in the 'active' state. "
                f"Current state is {experiment.lifecycle_stage}."
            )
        await self._execute(
            "INSERT INTO experiment_tags (experiment_id, key, value) VALUES ($1, $2, $3) "
            "ON CONFLICT (experiment_id, key) DO UPDATE SET value = EXCLUDED.value",
            int(experiment.experiment_id),
            key,
            value,
        )

    async def delete_experiment_tag(self, experiment_id: object, key: str) -> None:
        experiment = await self.get_experiment(experiment_id)
        if experiment.lifecycle_stage != "active":
            raise InvalidParameter(
                f"The experiment {experiment.experiment_id} must be in the 'active' state. "
                f"Current state is {experiment.lifecycle_stage}."
            )
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
        rows = await self._fetch(query.sql, *query.args)
        token = search.next_experiment_page_token(query, rows, max_results)
        ids = [row["experiment_id"] for row in rows[:max_results]]
        if not ids:
            return [], token
        full = await self._fetch("SELECT * FROM experiments WHERE experiment_id = ANY($1::bigint[])", ids)
        by_id = {row["experiment_id"]: row for row in full}
        tags = await self._experiment_tags(ids)
        return [_experiment_from_row(by_id[i], tags.get(i, [])) for i in ids if i in by_id], token

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
        with translate_transient():
            async with self._pool.acquire() as conn, conn.transaction():
                # The experiment is held (its lock, shared) while the run goes in, so
                # neither a delete nor gc can take it away underneath the run.
                await lock_experiment(conn, exp_id, shared=True)
                experiment = await conn.fetchrow(
                    "SELECT lifecycle_stage, artifact_location FROM experiments WHERE experiment_id = $1", exp_id
                )
                if experiment is None:
                    raise NotFound(f"No Experiment with id={exp_id} exists")
                if experiment["lifecycle_stage"] != "active":
                    raise InvalidParameter(
                        f"The experiment {exp_id} must be in the 'active' state. "
                        f"Current state is {experiment['lifecycle_stage']}."
                    )
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
        if not _RUN_ID.match(run_id):
            return None
        row = await self._fetchrow("SELECT lifecycle_stage FROM runs WHERE run_id = $1", run_id)
        return None if row is None else row["lifecycle_stage"]

    async def get_run_info(self, run_id: str) -> RunInfo:
        run_uuid(run_id)
        row = await self._fetchrow(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = $1", run_id)
        if row is None:
            raise NotFound(f"Run with id={run_id} not found")
        return _run_info_from_row(row)

    async def get_run(self, run_id: str) -> Run:
        run_uuid(run_id)
        runs = await self.get_runs([run_id], with_outputs=True)
        if not runs:
            raise NotFound(f"Run with id={run_id} not found")
        return runs[0]

    async def get_runs(self, run_ids: list[str], *, with_outputs: bool = False) -> list[Run]:
        """Full runs (info, latest metrics, params, tags, inputs) in the order of ``run_ids``."""
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
                *(self._pool.fetch(statement, page) for statement in statements)
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
        runs = []
        for run_id in run_ids:
            row = by_id.get(run_id)
            if row is None:
                continue
            run = place[run_id]
            runs.append(
                Run(
                    info=_run_info_from_row(row),
                    data=RunData(metrics_of.get(run, []), params_of.get(run, []), tags_of.get(run, [])),
                    inputs=inputs.get(run_id) or RunInputs(),
                    outputs=(outputs_of.get(run_id) or RunOutputs()) if with_outputs else None,
                )
            )
        return runs

    async def update_run(
        self, run_id: str, *, status: str | None, end_time: int | None, run_name: str | None
    ) -> RunInfo:
        run_uuid(run_id)
        with translate_transient():
            async with self._pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = $1 FOR UPDATE", run_id
                )
                check_run_writable(run_id, None if row is None else row["lifecycle_stage"])
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
        return _run_info_from_row(row)

    async def set_run_lifecycle(self, run_id: str, stage: str) -> None:
        """Soft-delete (stage 'deleted', keeping the time) or restore (stage 'active') a run."""
        run_uuid(run_id)
        updated = await self._fetchrow(
            """UPDATE runs SET lifecycle_stage = $2,
                      deleted_time = CASE WHEN $2 = 'deleted' THEN $3::bigint ELSE NULL END
               WHERE run_id = $1 RETURNING run_id""",
            run_id,
            stage,
            now_ms(),
        )
        if updated is None:
            raise NotFound(f"Run with id={run_id} not found")

    async def bulk_delete_runs(self, experiment_id: object, max_timestamp_millis: int, max_runs: int) -> int:
        """Soft-delete the experiment's active runs created at or before the time, at most ``max_runs``.

        Returns:
            how many runs were deleted.
        """
        exp_id = parse_experiment_id(experiment_id)
        await self.get_experiment(exp_id)
        with translate_transient():
            async with self._pool.acquire() as conn, conn.transaction():
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
        with translate_transient():
            async with self._pool.acquire() as conn, conn.transaction():
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
        return await conn.fetch(
            f"UPDATE runs SET {assignments} WHERE run_id = ANY($1::uuid[]) AND lifecycle_stage = $2 RETURNING run_id",
            [row["run_id"] for row in locked],
            stage,
            *args,
        )

    async def delete_tag(self, run_id: str, key: str) -> None:
        check_run_writable(run_id, (await self.get_run_info(run_id)).lifecycle_stage)
        deleted = await self._fetchrow(
            "DELETE FROM run_tags WHERE run_id = $1 AND key = $2 RETURNING key", run_id, key
        )
        if deleted is None:
            raise NotFound(f"No tag with name: {key} in run with id {run_id}")

    async def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput], model_ids: Sequence[str]) -> None:
        check_run_writable(run_id, (await self.get_run_info(run_id)).lifecycle_stage)
        with translate_transient():
            async with self._pool.acquire() as conn, conn.transaction():
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

    async def search_datasets(self, experiment_ids: Sequence[object]) -> list[DatasetSummary]:
        """The datasets logged to runs of these experiments, each with its context input tag.

        One summary per (experiment, name, digest, context), at most 1000, as MLflow's
        experiments/search-datasets answers them.
        """
        ids = [parse_experiment_id(e) for e in experiment_ids]
        rows = await self._fetch(
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
        with translate_transient():
            async with self._pool.acquire() as conn, conn.transaction():
                stage = await conn.fetchval("SELECT lifecycle_stage FROM runs WHERE run_id = $1 FOR UPDATE", run_id)
                check_run_writable(run_id, stage)
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

    # ---- metric history --------------------------------------------------------------

    async def get_metric_history(
        self, run_id: str, key: str, *, max_results: int | None, page_token: str | None
    ) -> tuple[list[Metric], str | None]:
        """A key's points in MLflow's order (timestamp, step, value), paged by an offset token."""
        run_uuid(run_id)
        try:
            offset = _parse_offset_token(page_token)
        except InvalidParameter:
            await self.get_run_info(run_id)  # a missing run is reported before a bad token
            raise
        with translate_transient():
            async with self._pool.acquire() as conn:
                page, total = await points.history_page(conn, run_id, key, offset, max_results)
                if not page and not await conn.fetchval(_RUN_EXISTS, run_id):
                    raise NotFound(f"Run with id={run_id} not found")
        token = None
        if max_results is not None and offset + max_results < total:
            token = _offset_token(offset + max_results)
        return page, token

    async def get_metric_history_bulk(self, run_ids: Sequence[str], key: str, max_results: int) -> list[Metric]:
        """A key's points over several runs, by run id and then as get-history orders them, at most
        ``max_results`` in all; ids of no stored run are left out, as MLflow leaves them out."""
        ids = sorted({r for r in run_ids if _RUN_ID.match(r)})
        result: list[Metric] = []
        with translate_transient():
            async with self._pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
                chunks_by_run = await points.chunks_of(conn, ids, key)
                for run_id in ids:
                    if len(result) >= max_results or run_id not in chunks_by_run:
                        continue
                    result += await points.history(
                        conn, chunks_by_run[run_id], key, 0, max_results - len(result), run_id, with_series=False
                    )
        return result

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
        low = start_step if start_step is not None else -(2**63)
        high = end_step if end_step is not None else 2**63 - 1
        with translate_transient():
            async with self._pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
                stored = {r["run_id"].hex for r in await conn.fetch(
                    "SELECT run_id FROM runs WHERE run_id = ANY($1::uuid[])", ordered)}
                for run_id in run_ids:
                    if run_id not in stored:
                        raise NotFound(f"Run with id={run_id} not found")
                chunks_by_run = await points.chunks_of(conn, ordered, key)
                sampled = await points.sample(conn, chunks_by_run, key, max_results, low, high)
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
            self._pool,
            experiment_ids=experiment_ids,
            filter_string=filter_string,
            run_view_type=run_view_type,
            order_by=order_by,
        )

    async def search_runs(
        self,
        *,
        experiment_ids: list[int],
        filter_string: str | None,
        run_view_type: str,
        order_by: list[str] | None,
        max_results: int,
        page_token: str | None,
    ) -> tuple[list[Run], str | None]:
        query = search.compile_run_search(
            experiment_ids=experiment_ids,
            filter_string=filter_string,
            run_view_type=run_view_type,
            order_by=order_by,
            max_results=max_results,
            page_token=page_token,
        )
        with translate_transient():
            async with self._pool.acquire() as conn, conn.transaction(readonly=True):
                await conn.execute(searching.PLANNER_SETTINGS)
                rows = await searching.fetch_page(conn, query)
        token = search.next_run_page_token(query, rows, max_results)
        run_ids = [row["run_id"].hex for row in rows[:max_results]]
        # Each run with the models it logged, as MLflow's runs/search shows it.
        return await self.get_runs(run_ids, with_outputs=True), token
