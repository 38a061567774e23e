"""`gateway serve | migrate | compact | gc | relay | export-runs-csv | import-mlflow | users`: command-line entry points."""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import signal
import ssl
import sys
import time
import typing
from collections.abc import Callable

import asyncpg

from gateway.api.webui import INSTALL_HINT, find_build
from gateway.auth import CredentialsError, CredentialsFile
from gateway.config import SETTING_DOCS, Settings, is_loopback
from gateway.durations import parse_duration_ms
from gateway.errors import GatewayError
from gateway.logs import setup_logging
from gateway.relay.command import add_relay_command
from gateway.store.embedded import EmbeddedPostgres
from gateway.store.migrations import migrate
from gateway.users import add_users_parser

log = logging.getLogger("gateway")


def _add_setting_flags(parser: argparse.ArgumentParser, names: typing.Iterable[str]) -> None:
    hints = typing.get_type_hints(Settings)
    for name in names:
        hint = hints[name]
        flag = "--" + name.replace("_", "-")
        env = "GATEWAY_" + name.upper()
        if hint is bool:
            parser.add_argument(flag, dest=name, action="store_const", const=True, default=None,
                                help=f"{SETTING_DOCS.get(name, '')} [{env}]")
            continue
        if hint == tuple[str, ...]:
            parser.add_argument(flag, dest=name, action="append", default=None, metavar="URL",
                                help=f"{SETTING_DOCS.get(name, '')} [{env}]")
            continue
        kind = {int: int, float: float}.get(hint, str)
        parser.add_argument(flag, dest=name, type=kind, default=None, help=f"{SETTING_DOCS.get(name, '')} [{env}]")


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {name: getattr(args, name) for name in Settings.__struct_fields__ if hasattr(args, name)}
    try:
        return Settings.from_env(**overrides)
    except ValueError as exc:
        sys.exit(f"gateway: invalid setting: {exc}")


def _resolve_database(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    if settings.database_url:
        return settings.database_url, None
    embedded = EmbeddedPostgres(settings.data_dir)
    return embedded.start(), embedded


async def _migrate(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


# How long the first worker waits for the others to listen before it listens itself.
WORKERS_LISTENING_TIMEOUT_S = 60.0


def _serve_one(
    settings: Settings, database_url: str, reuse_port: bool, listening: typing.Any = None,
    others_listening: Callable[[], None] | None = None,
) -> None:
    """Serve in this process; ``listening`` (an event) is set once it listens, after
    ``others_listening`` returned."""
    import uvloop

    from gateway.app import create_app
    from gateway.serving import run

    setup_logging()
    run(
        create_app(settings, database_url), settings, reuse_port=reuse_port, loop=uvloop.new_event_loop(),
        before_listening=others_listening, after_listening=listening.set if listening is not None else None,
    )


def _wait_listening(workers: list, listening: list, timeout: float = WORKERS_LISTENING_TIMEOUT_S) -> None:
    """Return once every other worker listens, has died, or ``timeout`` seconds passed.

    The first worker listens last: the server answers (its health check among
    others) only once every worker takes connections, so the connections a client
    opens then are spread over all of them rather than all made to the first.
    """
    deadline = time.monotonic() + timeout
    for worker, event in zip(workers, listening, strict=True):
        while not event.wait(0.1):
            if not worker.is_alive():
                break
            if time.monotonic() > deadline:
                log.warning("a worker did not listen within %.0f s; serving without waiting for it", timeout)
                return


def serve(args: argparse.Namespace) -> None:
    settings = _settings(args)
    _check_auth_file(settings)
    _check_tls(settings)
    database_url, embedded = _resolve_database(settings)
    workers: list[multiprocessing.Process] = []
    try:
        applied = asyncio.run(_migrate(database_url))
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        reuse_port = settings.workers > 1
        spawn = multiprocessing.get_context("spawn")
        listening = [spawn.Event() for _ in range(settings.workers - 1)]
        for event in listening:
            worker = spawn.Process(target=_serve_one, args=(settings, database_url, True, event), daemon=False)
            worker.start()
            workers.append(worker)
        where = "embedded PostgreSQL in " + str(embedded.pgdata) if embedded else "the given database"
        if find_build() is None:
            log.warning("the web UI is not installed; for MLflow's UI at /, run: %s", INSTALL_HINT)
        log.info(
            "serving the MLflow tracking API on %s://%s:%d (%d worker(s), ack=%s, %s)",
            "https" if settings.tls_cert else "http",
            settings.host,
            settings.port,
            settings.workers,
            settings.ack,
            where,
        )
        _serve_one(
            settings, database_url, reuse_port,
            others_listening=(lambda: _wait_listening(workers, listening)) if workers else None,
        )
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()  # SIGTERM: each worker flushes before it exits
        for worker in workers:
            worker.join(timeout=90)
        if embedded is not None:
            embedded.stop()


def _check_tls(settings: Settings) -> None:
    from gateway.serving import ssl_context

    try:
        ssl_context(settings)
    except (OSError, ssl.SSLError) as exc:
        sys.exit(f"gateway: cannot load tls_cert/tls_key: {exc}")


def _check_auth_file(settings: Settings) -> None:
    if not settings.auth_file:
        if not is_loopback(settings.host):
            log.warning("serving WITHOUT authentication on %s (--insecure-no-auth)", settings.host)
        return
    try:
        users = CredentialsFile(settings.auth_file).load()
    except CredentialsError as exc:
        sys.exit(f"gateway: {exc}")
    if not users:
        log.warning("the credentials file %s has no users: every request will be refused", settings.auth_file)


def migrate_command(args: argparse.Namespace) -> None:
    settings = _settings(args)
    database_url, embedded = _resolve_database(settings)
    try:
        applied = asyncio.run(_migrate(database_url))
        print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    finally:
        if embedded is not None:
            embedded.stop()


async def _compact(url: str, settings: Settings) -> str:
    from gateway.store.compactor import Compactor

    await _migrate(url)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        done = await Compactor(pool).until_done()
    finally:
        await pool.close()
    return (
        f"compact: {done.rows_converted} rows converted; {done.chunks_merged} small chunks merged; "
        f"{done.points} points in {done.chunks_written} chunks written, over {done.keys} metric keys"
    )


def compact_command(args: argparse.Namespace) -> None:
    _print_with_database(args, "compact", _compact)


def _print_with_database(args: argparse.Namespace, command: str, work) -> None:
    """Run ``work(database_url, settings)`` on the command's database (the embedded one started
    and stopped around it when no URL is given) and print what it returns; a GatewayError exits."""
    settings = _settings(args)
    database_url, embedded = _resolve_database(settings)
    try:
        print(asyncio.run(work(database_url, settings)))
    except GatewayError as exc:
        sys.exit(f"gateway {command}: {exc.message}")
    finally:
        if embedded is not None:
            embedded.stop()


def _duration_ms(text: str) -> int:
    try:
        return parse_duration_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _id_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _joined(groups: list[list] | None) -> list | None:
    """The ids of a repeatable, comma-separated id flag as one list (None when not given)."""
    return [item for group in groups for item in group] if groups else None


def _experiment_id_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"experiment ids are integers, got {text!r}") from None


# Artifact locations removed at once: storage calls overlap, memory and sockets stay bounded.
_ARTIFACT_REMOVALS_AT_ONCE = 8


class _ArtifactTally:
    """Removes the files of removed runs and logged models, counting what was and was not removed."""

    def __init__(self, collector, destination):
        self.collector = collector
        self.destination = destination
        self.removed = 0
        self.failed = 0
        self._slots = asyncio.Semaphore(_ARTIFACT_REMOVALS_AT_ONCE)

    async def remove(self, items) -> None:
        from gateway.artifacts.removal import is_permanent

        outcomes = await asyncio.gather(*(self._remove_one(item) for item in items))
        cleared = []
        for item, error in zip(items, outcomes):
            if error is None:
                self.removed += 1
                cleared.append(item.owner_id)
                continue
            self.failed += 1
            kind = "run" if item.owner_kind == "run" else "logged model"
            if is_permanent(error):
                # Nothing gc can do will ever remove these: say so once and forget them.
                cleared.append(item.owner_id)
                log.warning("artifacts of %s %s at %s not removed: %s; remove them by hand",
                            kind, item.owner_id, item.artifact_uri, _describe(error))
            else:
                log.warning("artifacts of %s %s at %s not removed: %s; the next gc retries",
                            kind, item.owner_id, item.artifact_uri, _describe(error))
        await self.collector.artifacts_removed(cleared)

    async def _remove_one(self, item) -> BaseException | None:
        from gateway.artifacts.removal import remove_artifacts

        async with self._slots:
            try:
                await remove_artifacts(item.artifact_uri, self.destination)
            except Exception as error:  # noqa: BLE001 - any storage failure is reported, and gc goes on
                return error
        return None


def _describe(error: BaseException) -> str:
    return error.message if isinstance(error, GatewayError) else f"{type(error).__name__}: {error}"


async def _collect_garbage(database_url: str, args: argparse.Namespace, settings: Settings) -> str:
    from datetime import datetime, timezone

    from tqdm import tqdm

    from gateway.artifacts import open_store
    from gateway.store.gc import GarbageCollector

    conn = await asyncpg.connect(database_url)
    destination = None
    try:
        await migrate(conn)
        collector = GarbageCollector(
            conn,
            older_than_ms=args.older_than,
            experiment_ids=_joined(args.experiment_ids),
            run_ids=_joined(args.run_ids),
            logged_model_ids=_joined(args.logged_model_ids),
            batch_size=args.batch_size,
        )
        plan = await collector.plan()
        log.info(
            "gc: %d runs, %d logged models and %d experiments to remove; files of %d more left by an earlier gc",
            plan.runs, plan.logged_models, plan.experiments, plan.leftover_artifacts,
        )
        destination = open_store(settings.artifacts_location())
        artifacts = _ArtifactTally(collector, destination)
        # Files whose rows an interrupted (or refused) earlier gc already removed come first.
        async for leftovers in collector.leftover_artifacts():
            await artifacts.remove(leftovers)
        removed: dict[str, int] = {}
        with tqdm(total=plan.runs, unit="run", desc="gc", file=sys.stderr, dynamic_ncols=True) as progress:
            async for batch in collector.batches():
                for table, count in batch.rows.items():
                    removed[table] = removed.get(table, 0) + count
                # Only now that the batch committed: a run still in the database may yet be restored.
                await artifacts.remove(batch.artifacts())
                progress.update(len(batch.runs))
    finally:
        if destination is not None:
            await destination.close()
        await conn.close()
    cutoff = datetime.fromtimestamp(plan.cutoff_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"gc: removed {removed.get('runs', 0)} runs, {removed.get('logged_models', 0)} logged models and "
        f"{removed.get('experiments', 0)} experiments deleted before {cutoff} ({removed.get('metric_chunks', 0) + removed.get('metric_rows', 0)} metric "
        f"points, {removed.get('metric_summaries', 0)} metric summaries, {removed.get('params', 0)} params, "
        f"{removed.get('run_tags', 0)} tags, "
        f"{removed.get('run_dataset_inputs', 0) + removed.get('run_model_inputs', 0)} inputs, "
        f"{removed.get('run_model_outputs', 0)} outputs, {removed.get('logged_model_params', 0)} model params, "
        f"{removed.get('logged_model_tags', 0)} model tags); artifacts of {artifacts.removed} runs and models "
        f"removed, {artifacts.failed} failed"
    )


def gc_command(args: argparse.Namespace) -> None:
    _print_with_database(args, "gc", lambda url, settings: _collect_garbage(url, args, settings))


def export_runs_csv_command(args: argparse.Namespace) -> None:
    from gateway.store.export import write_runs_csv

    settings = _settings(args)
    database_url, embedded = _resolve_database(settings)
    search_args = dict(
        experiment_ids=args.experiment_ids,
        filter_string=args.filter,
        run_view_type=args.run_view_type,
        order_by=args.order_by,
    )
    try:
        if args.output in (None, "-"):
            written = asyncio.run(write_runs_csv(database_url, sys.stdout, **search_args))
        else:
            with open(args.output, "w", newline="", encoding="utf-8") as out:
                written = asyncio.run(write_runs_csv(database_url, out, **search_args))
    except GatewayError as exc:
        sys.exit(f"gateway: {exc.error_code}: {exc.message}")
    finally:
        if embedded is not None:
            embedded.stop()
    log.info("exported %d run(s)", written)


async def _import_mlflow(database_url: str, args: argparse.Namespace) -> str:
    from gateway.store.mlflow_import import import_mlflow

    report = await import_mlflow(
        args.source, database_url, merge=args.merge, dry_run=args.dry_run, batch_runs=args.batch_runs,
        show_progress=not args.no_progress, workers=args.reading_processes,
    )
    return report.summary()


def import_mlflow_command(args: argparse.Namespace) -> None:
    from gateway.store.mlflow_import import ImportRefused, check_source

    try:
        # Before the embedded database would start for nothing.
        check_source(args.source)
    except ImportRefused as exc:
        sys.exit(f"gateway import-mlflow: {exc.message}")
    try:
        _print_with_database(args, "import-mlflow", lambda url, settings: _import_mlflow(url, args))
    except KeyboardInterrupt:
        sys.exit("gateway import-mlflow: interrupted; every batch committed so far stays, and the same "
                 "command continues from there")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="An MLflow-compatible tracking server for write floods.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="serve the MLflow tracking API")
    _add_setting_flags(serve_parser, Settings.__struct_fields__)
    serve_parser.set_defaults(run=serve)
    migrate_parser = commands.add_parser("migrate", help="apply the database migrations and exit")
    _add_setting_flags(migrate_parser, ("database_url", "data_dir"))
    migrate_parser.set_defaults(run=migrate_command)
    compact_parser = commands.add_parser(
        "compact",
        help="merge small metric chunks and convert rows of earlier releases, then exit",
        description="Merge every metric series' small chunks into sealed ones and move the metric points of "
        "earlier releases (a row each) into chunks, a batch of keys per transaction, until nothing is left. "
        "Safe while servers are ingesting, and to interrupt: a batch commits whole or not at all. "
        "`gateway serve` does the same in the background (compact_interval_s).",
    )
    _add_setting_flags(compact_parser, ("database_url", "data_dir"))
    compact_parser.set_defaults(run=compact_command)
    gc_parser = commands.add_parser(
        "gc",
        help="permanently remove deleted runs and experiments",
        description="Permanently remove runs deleted at least --older-than ago, with their metrics, params, "
        "tags, summaries, inputs, outputs and artifacts; logged models deleted by then, with their params, "
        "tags and artifacts; and experiments deleted before then with all their runs and logged models. "
        "Works in batches, each its own transaction, and is safe while servers are ingesting. Artifacts are "
        "removed after their batch commits; those it could not remove are logged, counted, and retried by "
        "the next gc.",
    )
    gc_parser.add_argument(
        "--older-than", type=_duration_ms, default=0, metavar="DURATION",
        help="remove what was deleted at least this long ago: 30d, 12h, 90m, 45s, 1d12h (default 0s: all)",
    )
    gc_parser.add_argument(
        "--experiment-ids", type=_experiment_id_list, nargs="+", action="extend", metavar="ID[,ID...]",
        help="only these experiments: their deleted runs and logged models, and the experiments themselves "
        "if deleted",
    )
    gc_parser.add_argument(
        "--run-ids", type=_id_list, nargs="+", action="extend", metavar="ID[,ID...]",
        help="only these runs (and the logged models of --logged-model-ids): each must be deleted, at least "
        "--older-than ago; no other run, logged model or experiment is removed",
    )
    gc_parser.add_argument(
        "--logged-model-ids", type=_id_list, nargs="+", action="extend", metavar="ID[,ID...]",
        help="only these logged models (and the runs of --run-ids), on the same terms",
    )
    gc_parser.add_argument(
        "--batch-size", type=int, default=500,
        help="runs (or logged models) removed per transaction, 1 to 10000 (default 500)",
    )
    _add_setting_flags(gc_parser, ("database_url", "data_dir", "artifacts_destination"))
    gc_parser.set_defaults(run=gc_command)
    add_relay_command(commands)
    export_parser = commands.add_parser(
        "export-runs-csv", help="write the runs CSV (Databricks' Download CSV) of experiments"
    )
    export_parser.add_argument(
        "--experiment-ids", nargs="+", required=True, metavar="ID", help="experiments whose runs are exported"
    )
    export_parser.add_argument("--filter", default=None, help="runs/search filter, e.g. \"metrics.loss < 0.5\"")
    export_parser.add_argument(
        "--order-by", action="append", default=None, metavar="CLAUSE",
        help="runs/search order_by clause (repeat for several); default start_time DESC",
    )
    export_parser.add_argument(
        "--run-view-type", choices=("ACTIVE_ONLY", "DELETED_ONLY", "ALL"), default="ACTIVE_ONLY",
        help="which runs by lifecycle stage (default ACTIVE_ONLY)",
    )
    export_parser.add_argument("--output", "-o", default=None, metavar="FILE", help="CSV file to write (default stdout)")
    _add_setting_flags(export_parser, ("database_url", "data_dir"))
    export_parser.set_defaults(run=export_runs_csv_command)
    import_parser = commands.add_parser(
        "import-mlflow",
        help="copy an MLflow backend store (SQLite, PostgreSQL, MySQL or MariaDB) into the gateway's database, "
        "keeping every id",
        description="Read an MLflow backend store in MLflow's own schema (MLflow 2.22 to 3.17) and copy its "
        "experiments, runs with their params, tags, metric histories and inputs, logged models and model registry "
        "(prompts included) into the gateway's database, keeping every id. Copies with COPY, a batch per "
        "transaction; interrupted, the same command continues where it stopped. Refuses a database that holds "
        "data unless --merge is given and no id collides. Stop `mlflow server` first, or import from a copy.",
    )
    import_parser.add_argument(
        "--from", dest="source", required=True, metavar="URI",
        help="the MLflow store, as `mlflow server --backend-store-uri` takes it: sqlite:///path/mlflow.db, "
        "postgresql://user:password@host:5432/mlflow or mysql://user:password@host:3306/mlflow (MySQL and "
        "MariaDB; needs the mysql extra)",
    )
    import_parser.add_argument("--merge", action="store_true",
                               help="add to a gateway database that holds data already, if no id or name collides")
    import_parser.add_argument("--dry-run", action="store_true",
                               help="check the store and the database and print what would be copied; copy nothing")
    import_parser.add_argument("--batch-runs", type=int, default=100, metavar="N",
                               help="runs copied per transaction (default 100)")
    import_parser.add_argument(
        # Not the server's `workers` setting, which _settings would take it for.
        "--workers", dest="reading_processes", type=int, default=None, metavar="N",
        help="processes reading metric points from a SQLite or MySQL store (default: one per core for a store of "
        "more than a million points; 0: read them in the importing process)")
    import_parser.add_argument("--no-progress", action="store_true", help="draw no progress bars")
    _add_setting_flags(import_parser, ("database_url", "data_dir"))
    import_parser.set_defaults(run=import_mlflow_command)
    add_users_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    args = build_parser().parse_args(argv)
    # SIGTERM is handled by aiohttp (graceful: the final flush runs); make sure a
    # SIGTERM that arrives before the server started still exits cleanly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.run(args)


if __name__ == "__main__":
    main()
