"""`gateway relay`: its flags (generated from RelaySettings) and its entry point."""

from __future__ import annotations

import argparse
import logging
import sys
import typing

from yarl import URL

from gateway.config import is_loopback
from gateway.relay.settings import ENV_PREFIX, RELAY_SETTING_DOCS, RelaySettings

log = logging.getLogger("gateway")


def add_relay_command(commands: argparse._SubParsersAction) -> None:
    """Add the `relay` subcommand, one flag per RelaySettings field."""
    parser = commands.add_parser(
        "relay",
        help="run as a sidecar: take writes locally, spool them, feed an upstream MLflow server",
        description="Serve the MLflow tracking API locally; acknowledge writes once spooled and forward them "
        "to --upstream as few, full log-batch calls; pass every other call through.",
    )
    hints = typing.get_type_hints(RelaySettings)
    for name in RelaySettings.__struct_fields__:
        env = ENV_PREFIX + name.upper()
        flag = "--" + name.replace("_", "-")
        help_text = f"{RELAY_SETTING_DOCS.get(name, '')} [{env}]"
        if hints[name] is bool:
            parser.add_argument(flag, dest=name, action="store_const", const=True, default=None, help=help_text)
            continue
        kind = {int: int, float: float}.get(hints[name], str)
        parser.add_argument(flag, dest=name, type=kind, default=None, help=help_text)
    parser.set_defaults(run=relay)


def relay(args: argparse.Namespace) -> None:
    import uvloop
    from aiohttp import web

    from gateway.relay.app import create_relay_app
    from gateway.serving import collect_less_often

    overrides = {name: getattr(args, name, None) for name in RelaySettings.__struct_fields__}
    try:
        settings = RelaySettings.from_env(**overrides)
    except ValueError as exc:
        sys.exit(f"gateway relay: invalid setting: {exc}")
    if not is_loopback(settings.host):
        log.warning("relaying WITHOUT authentication on %s (--insecure-no-auth): every caller writes upstream "
                    "with the relay's credentials", settings.host)
    log.info(
        "relaying the MLflow tracking API on http://%s:%d to %s (ack=%s, spool in %s)",
        settings.host,
        settings.port,
        URL(settings.upstream).with_user(None),  # never log credentials written into the URL
        settings.ack,
        settings.spool_dir,
    )
    app = create_relay_app(settings)
    collect_less_often(app)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        access_log=None,
        print=None,
        shutdown_timeout=5,
        loop=uvloop.new_event_loop(),
    )
