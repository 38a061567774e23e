"""`gateway serve | migrate | users`: command-line entry points."""

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="An MLflow-compatible tracking server for write floods.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="serve the MLflow tracking API")
    _add_setting_flags(serve_parser, Settings.__struct_fields__)
    serve_parser.set_defaults(run=serve)
    migrate_parser = commands.add_parser("migrate", help="apply the database migrations and exit")
    _add_setting_flags(migrate_parser, ("database_url", "data_dir"))
    migrate_parser.set_defaults(run=migrate_command)
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
