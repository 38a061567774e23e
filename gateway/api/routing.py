"""How every module of the HTTP layer declares its paths: a table of :class:`Route`.

A module lists its routes once (``ROUTES``, or a function returning them when they
depend on settings); :func:`under` repeats a table under MLflow's prefixes, and
:func:`add_routes` is the one place routes reach the router.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One method on one path, and the handler that answers it."""

    method: str
    path: str
    handler: Handler


def under(prefixes: Iterable[str], routes: Iterable[Route]) -> list[Route]:
    """Every route once under each prefix (``/api/2.0/mlflow`` + ``/runs/get``)."""
    routes = list(routes)
    return [Route(r.method, prefix + r.path, r.handler) for prefix in prefixes for r in routes]


def add_routes(app: web.Application, routes: Iterable[Route]) -> None:
    """Put routes on the app's router; a GET path answers HEAD too, as Flask's do for `mlflow server`."""
    for route in routes:
        if route.method == "GET":
            app.router.add_get(route.path, route.handler)
        else:
            app.router.add_route(route.method, route.path, route.handler)
