"""Permanent removal of deleted runs, logged models and experiments (``gateway gc``), in short batches.

A run deleted (soft, ``lifecycle_stage = 'deleted'``) at or before the cutoff is
removed with every row that names it; a logged model deleted at or before the
cutoff (its last update) with its params and tags. An experiment deleted before
the cutoff is removed with all of its runs, logged models and tags, as
``mlflow gc`` does. A removed logged model's metric points stay with the runs
that logged them, as do live runs' inputs and outputs naming it.

Each batch is its own short transaction and locks its runs ``FOR UPDATE`` in
the order in which a flush locks them ``FOR SHARE`` (run_id order; on Citus a
shard at a time, gateway/store/distribution.py). So a flush racing a batch
either commits first (and its rows are removed with the run) or waits and then
finds the run gone (its writes fail with RESOURCE_DOES_NOT_EXIST); nothing is
half-stored, and the two cannot deadlock. An experiment's lock is taken before
its runs', the order experiment delete and restore take them.

Files are removed after rows, never before. ``mlflow gc`` removes a run's files
first, then its rows; here the run is chosen and locked inside the batch's
transaction, and until that commits it may still be restored (a restore racing
gc waits for the lock and then either finds the run gone or wins, in which case
the batch skips it). Removing files first would leave a restored, live run
pointing at files that are gone; removing them after the commit cannot, because
a removed run can no longer be restored.

The cost of that order is a window in which rows are gone and files are not:
gc stopping there (a crash, a kill, storage refusing) would leave files nothing
points at any more. So the same transaction that removes a run or model writes
its artifact URI to ``gc_artifact_removals``, and the caller clears that row
(:meth:`GarbageCollector.artifacts_removed`) only once the files are gone. The
next gc starts with what is left there (:meth:`GarbageCollector.leftover_artifacts`),
so an interrupted or failed removal is retried until it succeeds, and no file
of a removed run is lost track of.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

import asyncpg
import msgspec

from gateway.durations import format_duration_ms
from gateway.errors import InvalidParameter, NotFound
from gateway.mlflow.experiments import experiment_not_found
from gateway.store.columns import run_uuid
from gateway.store.distribution import RunShards, lock_experiment
from gateway.store.errors import translate_transient
from gateway.store.tables import EXPERIMENT_SCOPED_TABLES, LOGGED_MODEL_SCOPED_TABLES, RUN_SCOPED_TABLES

MAX_BATCH_SIZE = 10_000
DEFAULT_BATCH_SIZE = 500
# A deadlock with a statement outside the gateway's lock order aborts a batch;
# nothing of it committed, so it is simply run again.
_BATCH_ATTEMPTS = 5

# A batch's runs are chosen first and locked after (locking them in the choosing
# statement would take row locks across shards, which Citus refuses); the lock
# statement checks each again.
_DELETED_RUNS = """
SELECT run_id FROM runs
WHERE lifecycle_stage = 'deleted' AND deleted_time <= $1
  AND ($2::bigint[] IS NULL OR experiment_id = ANY($2::bigint[]))
  AND ($4::uuid[] IS NULL OR run_id = ANY($4::uuid[]))
ORDER BY run_id LIMIT $3
"""
_STILL_DELETED = "AND lifecycle_stage = 'deleted' AND deleted_time <= $2"
_REMOVED_RUN_COLUMNS = "run_id, experiment_id, artifact_uri"

_REMOVE_CHUNKS = """
WITH removed AS (DELETE FROM metric_chunks WHERE run_id = ANY($1::uuid[]) RETURNING point_count)
SELECT coalesce(sum(point_count), 0)::bigint FROM removed
"""

_NAMED_RUNS = "SELECT run_id, lifecycle_stage, deleted_time FROM runs WHERE run_id = ANY($1::uuid[])"

_DELETED_EXPERIMENTS = """
SELECT experiment_id FROM experiments
WHERE lifecycle_stage = 'deleted' AND last_update_time < $1
  AND ($2::bigint[] IS NULL OR experiment_id = ANY($2::bigint[]))
ORDER BY experiment_id
"""

_DELETED_EXPERIMENT = """
SELECT experiment_id FROM experiments
WHERE experiment_id = $1 AND lifecycle_stage = 'deleted' AND last_update_time < $2
"""

_RUNS_OF_EXPERIMENT = """
SELECT run_id FROM runs
WHERE experiment_id = $1
ORDER BY run_id LIMIT $2
"""

_DELETED_MODELS = """
SELECT model_id, experiment_id, artifact_location FROM logged_models
WHERE lifecycle_stage = 'deleted' AND last_updated_timestamp_ms <= $1
  AND ($2::bigint[] IS NULL OR experiment_id = ANY($2::bigint[]))
  AND ($4::text[] IS NULL OR model_id = ANY($4::text[]))
ORDER BY model_id LIMIT $3
FOR UPDATE
"""

_NAMED_MODELS = """
SELECT model_id, lifecycle_stage, last_updated_timestamp_ms FROM logged_models WHERE model_id = ANY($1::text[])
"""

_MODELS_OF_EXPERIMENT = """
SELECT model_id, experiment_id, artifact_location FROM logged_models
WHERE experiment_id = $1
ORDER BY model_id LIMIT $2
FOR UPDATE
"""

_COUNT_MODELS = """
SELECT count(*) FROM logged_models
WHERE (lifecycle_stage = 'deleted' AND last_updated_timestamp_ms <= $1
       AND ($2::bigint[] IS NULL OR experiment_id = ANY($2::bigint[]))
       AND ($4::text[] IS NULL OR model_id = ANY($4::text[])))
   OR experiment_id = ANY($3::bigint[])
"""

_RECORD_ARTIFACTS = """
INSERT INTO gc_artifact_removals (owner_id, owner_kind, artifact_uri, removed_time)
SELECT owner_id, $2, artifact_uri, $4 FROM unnest($1::text[], $3::text[]) AS removed(owner_id, artifact_uri)
WHERE artifact_uri <> ''
ON CONFLICT (owner_id) DO UPDATE SET artifact_uri = EXCLUDED.artifact_uri, removed_time = EXCLUDED.removed_time
"""

_LEFTOVER_ARTIFACTS = """
SELECT owner_id, owner_kind, artifact_uri FROM gc_artifact_removals
WHERE owner_id > $1 ORDER BY owner_id LIMIT $2
"""

_COUNT_RUNS = """
SELECT count(*) FROM runs
WHERE (lifecycle_stage = 'deleted' AND deleted_time <= $1
       AND ($2::bigint[] IS NULL OR experiment_id = ANY($2::bigint[]))
       AND ($4::uuid[] IS NULL OR run_id = ANY($4::uuid[])))
   OR experiment_id = ANY($3::bigint[])
"""


class RemovedRun(msgspec.Struct, frozen=True):
    """A run whose rows were removed: what an artifact store needs to remove its files."""

    run_id: str
    experiment_id: str
    artifact_uri: str


class RemovedModel(msgspec.Struct, frozen=True):
    """A logged model whose rows were removed, and where its files are."""

    model_id: str
    experiment_id: str
    artifact_uri: str


class ArtifactsToRemove(msgspec.Struct, frozen=True):
    """Files of a removed run or logged model, recorded in ``gc_artifact_removals`` until removed.

    Attributes:
        owner_id: the run id or logged model id.
        owner_kind: ``run`` or ``logged_model``.
        artifact_uri: the run's artifact_uri or the model's artifact_location.
    """

    owner_id: str
    owner_kind: str
    artifact_uri: str


class GcBatch(msgspec.Struct, frozen=True):
    """What one committed batch removed.

    Attributes:
        runs: the runs removed.
        rows: rows removed per table (``RUN_SCOPED_TABLES``, ``runs``,
            ``LOGGED_MODEL_SCOPED_TABLES``, ``logged_models``, and for an experiment
            ``EXPERIMENT_SCOPED_TABLES`` and ``experiments``).
        experiment_id: the experiment removed with this batch (after its last run and model), if any.
        models: the logged models removed.
    """

    runs: list[RemovedRun]
    rows: dict[str, int]
    experiment_id: str | None = None
    models: list[RemovedModel] = msgspec.field(default_factory=list)

    def artifacts(self) -> list[ArtifactsToRemove]:
        """The files this batch left to remove (recorded in ``gc_artifact_removals``), runs first."""
        found = [ArtifactsToRemove(run.run_id, "run", run.artifact_uri) for run in self.runs]
        found += [ArtifactsToRemove(model.model_id, "logged_model", model.artifact_uri) for model in self.models]
        return [item for item in found if item.artifact_uri]


class GcPlan(msgspec.Struct, frozen=True):
    """What a collection is about to remove, counted when it starts (for a progress bar).

    Attributes:
        cutoff_ms: runs deleted at or before, and experiments deleted before, this time
            (ms since the epoch) are removed.
        runs: runs to remove.
        experiments: experiments to remove.
        logged_models: logged models to remove.
        leftover_artifacts: artifact locations an earlier gc removed the rows of but not the files.
    """

    cutoff_ms: int
    runs: int
    experiments: int
    logged_models: int = 0
    leftover_artifacts: int = 0


def _deleted_count(status: str) -> int:
    # asyncpg answers a DELETE with its command tag, "DELETE <rows>".
    return int(status.rsplit(" ", 1)[-1])


class GarbageCollector:
    """Removes deleted runs, logged models and experiments from the database for good.

    Args:
        conn: a connection of its own (each batch is a transaction on it).
        older_than_ms: only what was deleted at least this long ago is removed.
        experiment_ids: when given, only these experiments' runs and logged models (and
            the experiments themselves, if deleted before the cutoff) are considered.
        run_ids: when given (or ``logged_model_ids``), only these runs are removed, and
            nothing else but the named logged models; each must be deleted, before the
            cutoff. Not with ``experiment_ids``.
        logged_model_ids: likewise for logged models.
        batch_size: runs and logged models per batch (one transaction each), 1 to 10000.
        now_ms: the current time in ms since the epoch (default: the clock).

    Raises:
        InvalidParameter: a negative age, a batch size out of range, or ids named with experiment_ids.
    """

    def __init__(
        self,
        conn: asyncpg.Connection,
        *,
        older_than_ms: int,
        experiment_ids: Sequence[int] | None = None,
        run_ids: Sequence[str] | None = None,
        logged_model_ids: Sequence[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        now_ms: int | None = None,
    ):
        if older_than_ms < 0:
            raise InvalidParameter(f"older_than must not be negative, got {older_than_ms} ms")
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise InvalidParameter(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, got {batch_size}")
        named = run_ids is not None or logged_model_ids is not None
        if named and experiment_ids is not None:
            raise InvalidParameter(
                "run ids and logged model ids name what to remove; they cannot be combined with experiment ids"
            )
        self._conn = conn
        self._shards = RunShards()
        self._batch_size = batch_size
        self._older_than_ms = older_than_ms
        self._experiment_ids = sorted(set(experiment_ids)) if experiment_ids is not None else None
        # With ids named, what is not named is not removed: an empty list selects nothing.
        self._run_ids = sorted(set(run_ids or ())) if named else None
        self._model_ids = sorted(set(logged_model_ids or ())) if named else None
        self.cutoff_ms = (now_ms if now_ms is not None else int(time.time() * 1000)) - older_than_ms

    async def plan(self) -> GcPlan:
        """Check the named experiments, runs and logged models, and count what is to be removed.

        Raises:
            NotFound: a named experiment, run or logged model does not exist.
            InvalidParameter: a named run or logged model is not deleted, or was deleted after the cutoff.
        """
        with translate_transient():
            if self._run_ids is not None:
                await self._check_named(self._run_ids, self._model_ids)
            if self._experiment_ids is not None:
                found = {
                    row["experiment_id"]
                    for row in await self._conn.fetch(
                        "SELECT experiment_id FROM experiments WHERE experiment_id = ANY($1::bigint[])",
                        self._experiment_ids,
                    )
                }
                missing = [e for e in self._experiment_ids if e not in found]
                if missing:
                    raise experiment_not_found(missing[0])
            experiments = await self._deleted_experiments()
            runs = await self._conn.fetchval(
                _COUNT_RUNS, self.cutoff_ms, self._experiment_ids, experiments, self._run_ids
            )
            models = await self._conn.fetchval(
                _COUNT_MODELS, self.cutoff_ms, self._experiment_ids, experiments, self._model_ids
            )
            leftovers = await self._conn.fetchval("SELECT count(*) FROM gc_artifact_removals")
        return GcPlan(
            cutoff_ms=self.cutoff_ms,
            runs=runs,
            experiments=len(experiments),
            logged_models=models,
            leftover_artifacts=leftovers,
        )

    async def _check_named(self, run_ids: list[str], model_ids: list[str]) -> None:
        # As `mlflow gc` checks each id it is given, in the same words.
        for run_id in run_ids:
            run_uuid(run_id)
        runs = {row[0].hex: row for row in await self._conn.fetch(_NAMED_RUNS, run_ids)}
        self._check_deleted_before_cutoff(run_ids, runs, "Run", "runs", "Run with id={} not found")
        models = {row[0]: row for row in await self._conn.fetch(_NAMED_MODELS, model_ids)}
        self._check_deleted_before_cutoff(
            model_ids, models, "Logged model", "logged models", "Logged model with ID '{}' not found."
        )

    def _check_deleted_before_cutoff(self, ids: list[str], found: dict, noun: str, plural: str, missing: str) -> None:
        """Each id's row (id, lifecycle stage, time deleted) exists, is deleted, and was deleted by the cutoff."""
        for owner_id in ids:
            row = found.get(owner_id)
            if row is None:
                raise NotFound(missing.format(owner_id))
            _, stage, deleted_at = row
            if stage != "deleted":
                raise InvalidParameter(
                    f"{noun} {owner_id} is not in `deleted` lifecycle stage. "
                    f"Only {plural} in `deleted` lifecycle stage can be deleted."
                )
            if deleted_at is None or deleted_at > self.cutoff_ms:
                raise InvalidParameter(
                    f"{noun} {owner_id} is not older than the required age. "
                    f"Only {plural} older than {format_duration_ms(self._older_than_ms)} can be deleted."
                )

    async def leftover_artifacts(self) -> AsyncIterator[list[ArtifactsToRemove]]:
        """Pages of files whose rows an earlier gc removed but which were not cleared as removed.

        They belong to runs and models already gone, so they are listed whatever
        ``experiment_ids`` the collector was given. A page is not consumed: clear
        what was removed with :meth:`artifacts_removed`; the rest stays for the next gc.
        """
        after = ""
        while True:
            with translate_transient():
                rows = await self._conn.fetch(_LEFTOVER_ARTIFACTS, after, self._batch_size)
            if not rows:
                return
            yield [ArtifactsToRemove(row["owner_id"], row["owner_kind"], row["artifact_uri"]) for row in rows]
            after = rows[-1]["owner_id"]

    async def artifacts_removed(self, owner_ids: Sequence[str]) -> None:
        """Record that these runs' or logged models' files are gone (clears their ``gc_artifact_removals`` rows)."""
        if not owner_ids:
            return
        with translate_transient():
            await self._conn.execute(
                "DELETE FROM gc_artifact_removals WHERE owner_id = ANY($1::text[])", list(owner_ids)
            )

    async def batches(self) -> AsyncIterator[GcBatch]:
        """Remove everything due, one committed batch at a time, yielding each.

        First the deleted runs (oldest deletions are no different from recent ones:
        run_id order), then the deleted logged models, then each experiment deleted
        before the cutoff with the rest of its runs and logged models. Safe to
        interrupt and run again: a batch commits whole or not at all, and the files
        of what it removed are recorded in ``gc_artifact_removals`` in the same commit.
        """
        while True:
            batch = await self._in_transaction(self._remove_deleted_runs)
            if not batch.runs:
                break
            yield batch
        while True:
            batch = await self._in_transaction(self._remove_deleted_models)
            if not batch.models:
                break
            yield batch
        for experiment_id in await self._deleted_experiments():
            while True:
                batch = await self._in_transaction(self._remove_experiment_batch, experiment_id)
                if batch is None:
                    break  # restored (or removed elsewhere) meanwhile
                yield batch
                if batch.experiment_id is not None:
                    break

    async def _deleted_experiments(self) -> list[int]:
        if self._run_ids is not None:
            return []  # ids named: no experiment is
        rows = await self._conn.fetch(_DELETED_EXPERIMENTS, self.cutoff_ms, self._experiment_ids)
        return [row["experiment_id"] for row in rows]

    async def _in_transaction(self, step, *args):
        with translate_transient():
            for attempt in range(1, _BATCH_ATTEMPTS + 1):
                try:
                    async with self._conn.transaction():
                        return await step(*args)
                except asyncpg.exceptions.DeadlockDetectedError:
                    if attempt == _BATCH_ATTEMPTS:
                        raise

    async def _remove_deleted_runs(self) -> GcBatch:
        while True:
            chosen = await self._conn.fetch(
                _DELETED_RUNS, self.cutoff_ms, self._experiment_ids, self._batch_size, self._run_ids
            )
            rows = await self._shards.lock_runs(
                self._conn, [row["run_id"] for row in chosen], _REMOVED_RUN_COLUMNS, _STILL_DELETED, self.cutoff_ms
            )
            if rows or not chosen:  # else every one chosen was restored meanwhile: choose again
                return await self._remove_runs(rows)

    async def _remove_deleted_models(self) -> GcBatch:
        rows = await self._conn.fetch(
            _DELETED_MODELS, self.cutoff_ms, self._experiment_ids, self._batch_size, self._model_ids
        )
        removed: dict[str, int] = {}
        models = await self._remove_models(rows, removed)
        return GcBatch(runs=[], rows=removed, models=models)

    async def _remove_experiment_batch(self, experiment_id: int) -> GcBatch | None:
        await lock_experiment(self._conn, experiment_id)
        if await self._conn.fetchval(_DELETED_EXPERIMENT, experiment_id, self.cutoff_ms) is None:
            return None
        # No run joins the experiment while its lock is held.
        chosen = await self._conn.fetch(_RUNS_OF_EXPERIMENT, experiment_id, self._batch_size)
        rows = await self._shards.lock_runs(
            self._conn, [row["run_id"] for row in chosen], _REMOVED_RUN_COLUMNS, "AND experiment_id = $2",
            experiment_id,
        )
        batch = await self._remove_runs(rows)
        if len(chosen) == self._batch_size:
            return batch  # more runs may follow; the experiment goes with the last batch
        room = self._batch_size - len(rows)
        model_rows = await self._conn.fetch(_MODELS_OF_EXPERIMENT, experiment_id, room)
        removed = dict(batch.rows)
        models = await self._remove_models(model_rows, removed)
        if len(model_rows) == room:
            return GcBatch(runs=batch.runs, rows=removed, models=models)  # more models may follow
        for table in EXPERIMENT_SCOPED_TABLES:
            status = await self._conn.execute(f"DELETE FROM {table} WHERE experiment_id = $1", experiment_id)
            removed[table] = _deleted_count(status)
        status = await self._conn.execute("DELETE FROM experiments WHERE experiment_id = $1", experiment_id)
        removed["experiments"] = _deleted_count(status)
        return GcBatch(runs=batch.runs, rows=removed, experiment_id=str(experiment_id), models=models)

    async def _remove_models(self, rows: list[asyncpg.Record], removed: dict[str, int]) -> list[RemovedModel]:
        """Remove these logged models' rows, adding the counts to ``removed``, and record their files."""
        if not rows:
            return []
        model_ids = [row["model_id"] for row in rows]
        for table in LOGGED_MODEL_SCOPED_TABLES:
            status = await self._conn.execute(f"DELETE FROM {table} WHERE model_id = ANY($1::text[])", model_ids)
            removed[table] = removed.get(table, 0) + _deleted_count(status)
        status = await self._conn.execute("DELETE FROM logged_models WHERE model_id = ANY($1::text[])", model_ids)
        removed["logged_models"] = removed.get("logged_models", 0) + _deleted_count(status)
        await self._record_artifacts("logged_model", model_ids, [row["artifact_location"] for row in rows])
        return [
            RemovedModel(
                model_id=row["model_id"], experiment_id=str(row["experiment_id"]), artifact_uri=row["artifact_location"]
            )
            for row in rows
        ]

    async def _record_artifacts(self, kind: str, owner_ids: list[str], artifact_uris: list[str]) -> None:
        await self._conn.execute(_RECORD_ARTIFACTS, owner_ids, kind, artifact_uris, int(time.time() * 1000))

    async def _remove_runs(self, rows: list[asyncpg.Record]) -> GcBatch:
        removed: dict[str, int] = {}
        if not rows:
            return GcBatch(runs=[], rows=removed)
        run_ids = [row["run_id"] for row in rows]
        for table in RUN_SCOPED_TABLES:
            if table == "metric_chunks":  # counted in points, as metric_rows counts them
                removed[table] = await self._conn.fetchval(_REMOVE_CHUNKS, run_ids)
                continue
            status = await self._conn.execute(f"DELETE FROM {table} WHERE run_id = ANY($1::uuid[])", run_ids)
            removed[table] = _deleted_count(status)
        status = await self._conn.execute("DELETE FROM runs WHERE run_id = ANY($1::uuid[])", run_ids)
        removed["runs"] = _deleted_count(status)
        await self._record_artifacts("run", [run_id.hex for run_id in run_ids], [row["artifact_uri"] for row in rows])
        runs = [
            RemovedRun(run_id=row["run_id"].hex, experiment_id=str(row["experiment_id"]), artifact_uri=row["artifact_uri"])
            for row in rows
        ]
        return GcBatch(runs=runs, rows=removed)
