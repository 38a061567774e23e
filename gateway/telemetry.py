"""Prometheus metrics of the gateway, served at /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

REGISTRY = CollectorRegistry(auto_describe=True)
# process_resident_memory_bytes, process_cpu_seconds_total, open file descriptors, start time.
ProcessCollector(registry=REGISTRY)

POINTS_INGESTED = Counter(
    "gateway_points_ingested", "Metric points committed to the database.", registry=REGISTRY
)
ENTITIES_INGESTED = Counter(
    "gateway_entities_ingested", "Params and tags committed to the database.", ["kind"], registry=REGISTRY
)
REQUESTS = Counter(
    "gateway_requests", "HTTP requests answered, by endpoint and status.", ["endpoint", "status"], registry=REGISTRY
)
REQUEST_SECONDS = Histogram(
    "gateway_request_seconds",
    "Time from a request's arrival at the handlers to its answer, by endpoint.",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
REJECTS = Counter(
    "gateway_rejects", "Requests answered with an error, by MLflow error code.", ["error_code"], registry=REGISTRY
)
PENDING_POINTS = Gauge(
    "gateway_pending_entities", "Buffered or in-flight entities not yet committed.", registry=REGISTRY
)
PENDING_BYTES = Gauge(
    "gateway_pending_bytes", "Estimated bytes of buffered or in-flight writes.", registry=REGISTRY
)
PENDING_POINTS_LIMIT = Gauge(
    "gateway_pending_entities_limit", "The bound on pending entities (max_pending_points).", registry=REGISTRY
)
PENDING_BYTES_LIMIT = Gauge(
    "gateway_pending_bytes_limit", "The bound on pending bytes (max_pending_bytes).", registry=REGISTRY
)
OPEN_RUNS = Gauge("gateway_open_run_buffers", "Runs with buffered writes.", registry=REGISTRY)
FLUSHES = Counter("gateway_flushes", "Flushes started, by trigger.", ["trigger"], registry=REGISTRY)
FLUSH_ENTITIES = Histogram(
    "gateway_flush_entities",
    "Entities (points, params, tags) carried by one flush.",
    buckets=(1, 10, 100, 1_000, 5_000, 10_000, 25_000, 50_000, 100_000),
    registry=REGISTRY,
)
FLUSH_SECONDS = Histogram(
    "gateway_flush_seconds",
    "Time from the start of a flush to its commit.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
DB_RETRIES = Counter(
    "gateway_database_retries", "Flush attempts retried after the database was unreachable.", registry=REGISTRY
)
DATABASE_ERRORS = Counter(
    "gateway_database_errors",
    "Database operations that failed, by kind: unreachable (connection lost or refused; a flush "
    "is retried, a read answered 503) or failed (any other error; the writes get 500).",
    ["kind"],
    registry=REGISTRY,
)
BACKPRESSURE_WAITS = Counter(
    "gateway_backpressure_waits", "Writes that had to wait for room in the buffers.", registry=REGISTRY
)
COMPACTED_CHUNKS = Counter(
    "gateway_compacted_chunks", "Small metric chunks merged by the compactor.", registry=REGISTRY
)
COMPACTED_POINTS = Counter(
    "gateway_compacted_points", "Metric points rewritten into chunks by the compactor.", registry=REGISTRY
)
CONVERTED_ROWS = Counter(
    "gateway_converted_metric_rows",
    "Metric points moved from the row-per-point table of earlier releases into chunks.",
    registry=REGISTRY,
)
COMPACTION_SECONDS = Histogram(
    "gateway_compaction_seconds",
    "Time of one compaction batch (one transaction).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
SEARCH_RUNS = Counter(
    "gateway_search_runs",
    "Runs answered by runs/search, by source: kept (unchanged since this process last answered them, "
    "given again as it answered them) or read (from the database).",
    ["source"],
    registry=REGISTRY,
)
READS = Counter(
    "gateway_reads",
    "Reads that may go to a read replica (searches, runs, histories, exports), by who served them "
    "(replica or primary) and why: caught_up (the replica had replayed every write committed before the "
    "read), lag (it had not within replica_wait_ms), down (it did not answer) or conflict (a recovery "
    "conflict canceled the read there). Counted only when read replicas are configured.",
    ["served_by", "reason"],
    registry=REGISTRY,
)
REPLICA_UP = Gauge(
    "gateway_replica_up", "Whether a read replica answered the last time it was asked (1) or not (0).",
    ["replica"], registry=REGISTRY,
)
REPLICA_WAIT_SECONDS = Histogram(
    "gateway_replica_wait_seconds",
    "Time from a read's arrival until a replica had replayed the primary's position, for reads a replica served.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
    registry=REGISTRY,
)

# Every label value a panel or an alert reads is exported from the start, at 0, so that
# "no errors yet" reads as 0 rather than as no data.
for _kind in ("unreachable", "failed"):
    DATABASE_ERRORS.labels(_kind)
for _trigger in ("immediate", "linger", "size"):
    FLUSHES.labels(_trigger)


def refusals_from_zero(endpoints) -> None:
    """Make the 429 and 503 series of ``endpoints`` exist at 0 from the start.

    A series that first appears at its first value shows Prometheus no increase,
    so a rate over it would miss a first burst of refusals.
    """
    for endpoint in endpoints:
        for status in ("429", "503"):
            REQUESTS.labels(endpoint, status)
