"""Settings of `gateway relay`: each a flag and a GATEWAY_RELAY_<NAME> environment variable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import msgspec

from gateway.config import default_data_dir, is_loopback

RelayAck = Literal["spool", "upstream"]


def default_spool_dir() -> str:
    return str(Path(default_data_dir()) / "relay-spool")


class RelaySettings(msgspec.Struct, frozen=True, kw_only=True):
    """The relay's configuration. Each field's environment variable is GATEWAY_RELAY_<NAME>."""

    upstream: str = ""
    """Base URL of the MLflow tracking server to feed (required), e.g. https://mlflow.example.com."""
    host: str = "127.0.0.1"
    """Address to listen on."""
    insecure_no_auth: bool = False
    """Allow listening on a non-loopback address; whoever reaches the relay writes with its upstream credentials."""
    port: int = 5000
    """TCP port to listen on."""
    spool_dir: str = msgspec.field(default_factory=default_spool_dir)
    """Directory of the spool (a SQLite database) holding acknowledged, undelivered writes."""
    ack: RelayAck = "spool"
    """spool: answer a write once durable in the spool. upstream: once the upstream accepted it."""
    upstream_max_rps: float = 20.0
    """Most calls per second the relay itself makes upstream (log-batch, run checks); 0 for no bound."""
    upstream_concurrency: int = 4
    """Log-batch calls that may be in flight upstream at once."""
    spool_max_bytes: int = 1024 * 1024 * 1024
    """Bound on undelivered writes in the spool (encoded bytes; the file on disk takes about 4x); past it writes get 429/503 with Retry-After."""
    batch_linger_ms: float = 200.0
    """Time (ms) a run's writes may wait to fill a log-batch before they are sent; reads never wait for it."""
    request_deadline_s: float = 30.0
    """Seconds a read waits for its run's spooled writes to be delivered, and with --ack upstream a write for its delivery, before a 503 with Retry-After."""
    retry_backoff_max_s: float = 30.0
    """Longest pause (s) between retries while the upstream fails or is unreachable."""
    upstream_timeout_s: float = 60.0
    """Seconds one upstream call may take before it is abandoned and retried."""
    shutdown_drain_s: float = 30.0
    """Seconds spent on SIGTERM/SIGINT delivering the spool before exit (what is left stays for the next start)."""
    max_body_bytes: int = 10 * 1024 * 1024
    """Largest write request body accepted, in bytes (pass-through bodies are streamed, not bounded)."""

    def validate(self) -> "RelaySettings":
        """Check cross-field rules; raise ValueError naming the setting at fault."""
        if not self.upstream.startswith(("http://", "https://")):
            raise ValueError("upstream must be an http:// or https:// URL of an MLflow tracking server")
        if not self.insecure_no_auth and not is_loopback(self.host):
            # The relay has no credentials of its own to check: it calls the
            # upstream with the ones it was given, for whoever reaches it.
            raise ValueError(
                f"host {self.host} is not a loopback address: anyone reaching the relay would write upstream "
                "with its credentials; pass --insecure-no-auth to listen there anyway"
            )
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if self.ack not in ("spool", "upstream"):
            raise ValueError("ack must be 'spool' or 'upstream'")
        if self.upstream_max_rps < 0:
            raise ValueError("upstream_max_rps must be >= 0 (0: no bound)")
        if self.upstream_concurrency < 1:
            raise ValueError("upstream_concurrency must be at least 1")
        if self.spool_max_bytes < 64 * 1024:
            raise ValueError("spool_max_bytes must be at least 64 KiB")
        if self.batch_linger_ms < 0 or self.request_deadline_s <= 0 or self.upstream_timeout_s <= 0:
            raise ValueError("batch_linger_ms must be >= 0, request_deadline_s and upstream_timeout_s > 0")
        if self.shutdown_drain_s < 0:
            raise ValueError("shutdown_drain_s must be >= 0")
        if self.retry_backoff_max_s <= 0:
            raise ValueError("retry_backoff_max_s must be > 0")
        return self

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "RelaySettings":
        """Build settings from GATEWAY_RELAY_* variables, then apply non-None overrides."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name in cls.__struct_fields__:
            raw = environ.get(ENV_PREFIX + name.upper())
            if raw is not None and raw != "":
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return msgspec.convert(values, cls, strict=False).validate()


ENV_PREFIX = "GATEWAY_RELAY_"


def _field_docs() -> dict[str, str]:
    """Each field's doc string (the string literal under it), for --help and docs/relay.md."""
    import ast
    import inspect

    docs: dict[str, str] = {}
    body = ast.parse(inspect.getsource(RelaySettings)).body[0].body
    for node, following in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(following, ast.Expr):
            if isinstance(following.value, ast.Constant) and isinstance(following.value.value, str):
                docs[node.target.id] = following.value.value
    return docs


RELAY_SETTING_DOCS = _field_docs()
