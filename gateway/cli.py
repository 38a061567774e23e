"""`gateway serve | migrate | gc | users`: command-line entry points."""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import signal
import ssl
import sys
import typing

import asyncpg

from gateway.auth import CredentialsError, CredentialsFile
from gateway.config import SETTING_DOCS, Settings, is_loopback
from gateway.durations import parse_duration_ms
from gateway.errors import GatewayError
from gateway.logs import setup_logging
from gateway.users import add_users_parser
from gateway.store.embedded import EmbeddedPostgres
from gateway.store.migrations import migrate

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


def _serve_one(settings: Settings, database_url: str, reuse_port: bool) -> None:
    import uvloop

    from gateway.app import create_app
    from gateway.serving import run

    setup_logging()
    run(create_app(settings, database_url), settings, reuse_port=reuse_port, loop=uvloop.new_event_loop())


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
        for _ in range(settings.workers - 1):
            worker = spawn.Process(target=_serve_one, args=(settings, database_url, True), daemon=False)
            worker.start()
            workers.append(worker)
        where = "embedded PostgreSQL in " + str(embedded.pgdata) if embedded else "the given database"
        log.info(
            "serving the MLflow tracking API on %s://%s:%d (%d worker(s), ack=%s, %s)",
            "https" if settings.tls_cert else "http",
            settings.host,
            settings.port,
            settings.workers,
            settings.ack,
            where,
        )
        _serve_one(settings, database_url, reuse_port)
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


def _duration_ms(text: str) -> int:
    try:
        return parse_duration_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _experiment_id_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"experiment ids are integers, got {text!r}") from None


async def _collect_garbage(database_url: str, args: argparse.Namespace) -> str:
    from datetime import datetime, timezone

    from tqdm import tqdm

    from gateway.store.gc import GarbageCollector

    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn)
        experiment_ids = [e for group in args.experiment_ids for e in group] if args.experiment_ids else None
        collector = GarbageCollector(
            conn, older_than_ms=args.older_than, experiment_ids=experiment_ids, batch_size=args.batch_size
        )
        plan = await collector.plan()
        removed: dict[str, int] = {}
        with tqdm(total=plan.runs, unit="run", desc="gc", file=sys.stderr, dynamic_ncols=True) as progress:
            async for batch in collector.batches():
                for table, count in batch.rows.items():
                    removed[table] = removed.get(table, 0) + count
                progress.update(len(batch.runs))
    finally:
        await conn.close()
    cutoff = datetime.fromtimestamp(plan.cutoff_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"gc: removed {removed.get('runs', 0)} runs and {removed.get('experiments', 0)} experiments deleted "
        f"before {cutoff} ({removed.get('metrics', 0)} metric points, {removed.get('metric_summaries', 0)} "
        f"metric summaries, {removed.get('params', 0)} params, {removed.get('run_tags', 0)} tags, "
        f"{removed.get('run_dataset_inputs', 0) + removed.get('run_model_inputs', 0)} inputs)"
    )


def gc_command(args: argparse.Namespace) -> None:
    settings = _settings(args)
    database_url, embedded = _resolve_database(settings)
    try:
        print(asyncio.run(_collect_garbage(database_url, args)))
    except GatewayError as exc:
        sys.exit(f"gateway gc: {exc.message}")
    finally:
        if embedded is not None:
            embedded.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="An MLflow-compatible tracking server for write floods.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="serve the MLflow tracking API")
    _add_setting_flags(serve_parser, Settings.__struct_fields__)
    serve_parser.set_defaults(run=serve)
    migrate_parser = commands.add_parser("migrate", help="apply the database migrations and exit")
    _add_setting_flags(migrate_parser, ("database_url", "data_dir"))
    migrate_parser.set_defaults(run=migrate_command)
    gc_parser = commands.add_parser(
        "gc",
        help="permanently remove deleted runs and experiments",
        description="Permanently remove runs deleted at least --older-than ago, with their metrics, params, "
        "tags, summaries and inputs, and experiments deleted before then with all their runs. Works in "
        "batches, each its own transaction, and is safe while servers are ingesting.",
    )
    gc_parser.add_argument(
        "--older-than", type=_duration_ms, default=0, metavar="DURATION",
        help="remove what was deleted at least this long ago: 30d, 12h, 90m, 45s, 1d12h (default 0s: all)",
    )
    gc_parser.add_argument(
        "--experiment-ids", type=_experiment_id_list, nargs="+", metavar="ID[,ID...]",
        help="only these experiments: their deleted runs, and the experiments themselves if deleted",
    )
    gc_parser.add_argument(
        "--batch-size", type=int, default=500, help="runs removed per transaction, 1 to 10000 (default 500)"
    )
    _add_setting_flags(gc_parser, ("database_url", "data_dir"))
    gc_parser.set_defaults(run=gc_command)
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
