"""Prometheus metrics of the relay, served at /metrics beside the gateway's own."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from gateway.telemetry import REGISTRY

SPOOL_BYTES = Gauge("gateway_relay_spool_bytes", "Bytes of acknowledged writes not yet delivered upstream.", registry=REGISTRY)
SPOOL_ENTITIES = Gauge(
    "gateway_relay_spool_entities",
    "Metric points, params and tags acknowledged but not yet delivered upstream.",
    registry=REGISTRY,
)
LAG_SECONDS = Gauge(
    "gateway_relay_lag_seconds",
    "Age of the oldest undelivered write in the spool (0 when the spool is empty).",
    registry=REGISTRY,
)
SPOOLED = Counter(
    "gateway_relay_spooled_entities", "Entities acknowledged into the spool, by kind.", ["kind"], registry=REGISTRY
)
DELIVERED = Counter(
    "gateway_relay_delivered_entities", "Entities the upstream accepted, by kind.", ["kind"], registry=REGISTRY
)
UPSTREAM_CALLS = Counter(
    "gateway_relay_upstream_calls",
    "Calls the relay made upstream, by endpoint and HTTP status ('error' when unreachable).",
    ["endpoint", "status"],
    registry=REGISTRY,
)
PASSTHROUGH = Counter(
    "gateway_relay_passthrough_requests",
    "Client requests passed through to the upstream, by HTTP status ('error' when unreachable).",
    ["status"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "gateway_relay_upstream_retries",
    "Log-batch calls retried after a 429, a 5xx or an unreachable upstream.",
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "gateway_relay_dead_letters",
    "Entities the upstream refused, kept in the spool's dead_letters table, by kind.",
    ["kind"],
    registry=REGISTRY,
)
BATCH_ENTITIES = Histogram(
    "gateway_relay_batch_entities",
    "Entities (points, params, tags) carried by one log-batch call upstream.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 750, 1000),
    registry=REGISTRY,
)
SPOOL_REJECTS = Counter(
    "gateway_relay_spool_full_rejects",
    "Writes refused with 429/503 because the spool reached --spool-max-bytes.",
    registry=REGISTRY,
)
