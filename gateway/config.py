"""Every setting of the gateway: its flag, environment variable and default.

Settings live in one frozen struct. ``Settings.from_env()`` reads GATEWAY_*
variables; the CLI overrides them with flags; ``validate()`` checks the rules
that tie fields together.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal

import msgspec

AckMode = Literal["commit", "accept"]
AccessLog = Literal["all", "errors", "off"]


def default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "mlflow-gateway")


def is_loopback(host: str) -> bool:
    """Whether an address to listen on is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """The gateway's configuration. Each field's environment variable is GATEWAY_<NAME>."""

    host: str = "127.0.0.1"
    """Address to listen on."""
    port: int = 5000
    """TCP port to listen on."""
    workers: int = 1
    """Server processes sharing the port (SO_REUSEPORT); each has its own accumulator."""
    database_url: str | None = None
    """PostgreSQL URL; when unset an embedded PostgreSQL is started in data_dir."""
    read_database_url: tuple[str, ...] = ()
    """Streaming replica URL for searches, run and history reads, exports and the UI's reads (repeat the flag; space-separated in the variable); see docs/replicas.md."""
    replica_wait_ms: float = 250.0
    """Longest time (ms) a read waits for a replica to replay the writes committed before it arrived, before it reads from the primary."""
    data_dir: str = msgspec.field(default_factory=default_data_dir)
    """Directory of the embedded PostgreSQL (and local artifacts)."""
    pool_size: int = 8
    """Connections in the database pool (flushes plus reads)."""
    ack: AckMode = "commit"
    """commit: answer a write once committed. accept: answer once buffered (writes with params: once committed)."""
    flush_concurrency: int = 2
    """Flushes that may be in flight at once."""
    max_points_per_flush: int = 50_000
    """Upper bound of metric points (plus params and tags) carried by one flush."""
    search_cache_bytes: int = 64 * 1024 * 1024
    """Memory (bytes) each server process keeps of runs as runs/search answered them, given again while a run is unchanged; 0 keeps none."""
    linger_ms: float = 0.0
    """Extra time (ms) a flush waits for more writes before starting; 0 flushes at once."""
    max_pending_bytes: int = 256 * 1024 * 1024
    """Bound on the estimated size (bytes) of buffered, not yet committed writes."""
    max_pending_points: int = 2_000_000
    """Bound on buffered, not yet committed entities (metric points, params, tags)."""
    max_open_runs: int = 100_000
    """Bound on runs with a non-empty buffer."""
    request_deadline_s: float = 30.0
    """Seconds a write may wait for room or for its commit before 503/429."""
    retry_backoff_max_s: float = 5.0
    """Longest pause (s) between retries of a flush while the database is unreachable."""
    max_body_bytes: int = 10 * 1024 * 1024
    """Largest request body accepted, in bytes (log-batch has MLflow's own 1 MB rule)."""
    artifacts_destination: str | None = None
    """Where artifacts are stored: a directory or s3://bucket/prefix; default <data_dir>/artifacts."""
    auth_file: str | None = None
    """Credentials file (see `gateway users`); when set, every path but /health needs credentials."""
    insecure_no_auth: bool = False
    """Allow serving without authentication on an address other than loopback."""
    tls_cert: str | None = None
    """PEM certificate (chain) to serve HTTPS with; needs tls_key."""
    tls_key: str | None = None
    """PEM private key of tls_cert."""
    idle_timeout_s: float = 75.0
    """Seconds a connection may sit idle, or take to send a request's line and headers, before it is closed."""
    body_timeout_s: float = 60.0
    """Seconds a client may take to send a request body before it gets 408."""
    max_connections: int = 4096
    """Open client connections per process; a connection past it gets 503 and is closed."""
    max_header_bytes: int = 8190
    """Longest request line (URL) or header field, in bytes; longer ones get 431."""
    access_log: AccessLog = "errors"
    """Requests logged (JSON lines on stderr): all, errors (status 400 or more) or off."""
    compact_interval_s: float = 1.0
    """Seconds between the compactor's rounds, which merge small metric chunks; 0 turns it off (see `gateway compact`)."""
    compact_min_chunks: int = 64
    """While writes go on, a series' small chunks are merged once they fill a sealed chunk (4,096 points) or number this many."""

    def artifacts_location(self) -> str:
        """The artifacts destination in effect: the setting, else ``<data_dir>/artifacts``."""
        return self.artifacts_destination or str(Path(self.data_dir) / "artifacts")

    def validate(self) -> "Settings":
        """Check cross-field rules; raise ValueError naming the setting at fault."""
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.read_database_url and not self.database_url:
            raise ValueError(
                "read_database_url needs database_url: replicas stream from a PostgreSQL server of yours, "
                "not from the embedded one"
            )
        for url in self.read_database_url:
            if not url.startswith(("postgresql://", "postgres://")):
                raise ValueError(f"read_database_url must be postgresql:// URLs, got {url.split('@')[-1]!r}")
            if url == self.database_url:
                raise ValueError("read_database_url must name replicas, not the primary (database_url)")
        if not 0 < self.replica_wait_ms <= 60_000:
            raise ValueError(f"replica_wait_ms must be > 0 and at most 60000, got {self.replica_wait_ms}")
        if self.compact_interval_s < 0 or self.compact_min_chunks < 2:
            raise ValueError("compact_interval_s must be >= 0 and compact_min_chunks at least 2")
        if self.flush_concurrency < 1:
            raise ValueError("flush_concurrency must be at least 1")
        if self.pool_size < self.flush_concurrency + 1:
            raise ValueError(
                f"pool_size ({self.pool_size}) must exceed flush_concurrency ({self.flush_concurrency}) "
                "so reads still get a connection while every flush slot is busy"
            )
        if self.search_cache_bytes < 0:
            raise ValueError("search_cache_bytes must not be negative")
        if self.max_points_per_flush < 1000:
            raise ValueError("max_points_per_flush must be at least 1000 (one full log-batch)")
        if self.max_pending_points < self.max_points_per_flush:
            raise ValueError("max_pending_points must be at least max_points_per_flush")
        if self.max_pending_bytes < 2 * 1024 * 1024:
            raise ValueError("max_pending_bytes must be at least 2 MiB")
        if self.linger_ms < 0 or self.request_deadline_s <= 0:
            raise ValueError("linger_ms must be >= 0 and request_deadline_s > 0")
        if self.ack not in ("commit", "accept"):
            raise ValueError("ack must be 'commit' or 'accept'")
        if self.artifacts_destination and self.artifacts_destination.startswith("s3://"):
            if not self.artifacts_destination[len("s3://") :].split("/")[0]:
                raise ValueError(f"artifacts_destination {self.artifacts_destination!r} names no bucket")
        if not self.auth_file and not self.insecure_no_auth and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host} is not a loopback address: set auth_file (--auth-file) to require "
                "credentials, or pass --insecure-no-auth to serve without them"
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key must be given together")
        if self.idle_timeout_s <= 0 or self.body_timeout_s <= 0:
            raise ValueError("idle_timeout_s and body_timeout_s must be > 0")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if self.max_header_bytes < 1024:
            raise ValueError("max_header_bytes must be at least 1024")
        return self

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "Settings":
        """Build settings from GATEWAY_* variables, then apply non-None overrides."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, field_type in cls.__annotations__.items():
            raw = environ.get("GATEWAY_" + name.upper())
            if raw is not None and raw != "":
                # A list setting is space-separated (URLs may hold commas, never bare spaces).
                values[name] = raw.split() if name in _LIST_SETTINGS else raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        # msgspec converts the strings from the environment to each field's type.
        return msgspec.convert(values, cls, strict=False).validate()


# Settings given several times on the command line (a tuple each).
_LIST_SETTINGS = ("read_database_url",)

SETTING_DOCS: dict[str, str] = {}


def _collect_docs() -> None:
    """Read each field's doc string (the string literal under it) for --help and docs/settings.md."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(Settings))
    body = tree.body[0].body
    for node, following in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(following, ast.Expr):
            if isinstance(following.value, ast.Constant) and isinstance(following.value.value, str):
                SETTING_DOCS[node.target.id] = following.value.value


_collect_docs()
