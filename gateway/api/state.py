"""Typed application state shared by the handlers."""

from __future__ import annotations

from aiohttp import web

from gateway.api.run_answers import RunAnswers
from gateway.api.writes import WritePath
from gateway.artifacts import ArtifactStore
from gateway.store.logged_models import LoggedModelStore
from gateway.store.registry import RegistryStore
from gateway.store.tracking import TrackingStore

STORE: web.AppKey[TrackingStore] = web.AppKey("store", TrackingStore)
WRITES: web.AppKey[WritePath] = web.AppKey("writes", WritePath)
ARTIFACTS: web.AppKey[ArtifactStore] = web.AppKey("artifacts", ArtifactStore)
LOGGED_MODELS: web.AppKey[LoggedModelStore] = web.AppKey("logged_models", LoggedModelStore)
REGISTRY: web.AppKey[RegistryStore] = web.AppKey("registry", RegistryStore)
RUN_ANSWERS: web.AppKey[RunAnswers] = web.AppKey("run_answers", RunAnswers)
