"""The accumulator (per-run buffers, bounds, backpressure) and the flusher (group commit).

Knows nothing of HTTP or SQL: the flusher is handed a sink with one method,
``write_batch``.
"""

from gateway.ingest.accumulator import Accumulator
from gateway.ingest.flusher import Flusher, Sink

__all__ = ["Accumulator", "Flusher", "Sink"]
