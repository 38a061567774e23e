"""Spooled entities to log-batch calls within MLflow's limits. Pure: no I/O.

A batch is always a prefix of a run's undelivered rows in sequence order, so
delivering batches one after another keeps the order of every run and key, and
a delivered batch is removed from the spool by one range delete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway.mlflow.limits import (
    MAX_ENTITIES_PER_BATCH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_PER_BATCH,
    MAX_TAGS_PER_BATCH,
)
from gateway.relay.spool import METRIC, PARAM, TAG, Entity, metric_json

# Under MLflow's 1,000,000-byte body limit with room for the envelope and for
# the JSON size estimate being a little short.
MAX_BATCH_BYTES = 900_000
# JSON punctuation and field names around one entity.
_ENTITY_OVERHEAD = 64

_encode = msgspec.json.Encoder().encode


@dataclass
class Batch:
    """One log-batch call's content: the rows it settles and the body it sends.

    ``rows`` are every row the batch settles, in sequence order; ``sent`` are
    those that travel (an exact repeat of a point, param or tag already in the
    batch stays home: the upstream would store it once anyway).
    """

    run_id: str
    rows: list[Entity]
    sent: list[Entity] = field(default_factory=list)

    @property
    def first_seq(self) -> int:
        return self.rows[0].seq

    @property
    def last_seq(self) -> int:
        return self.rows[-1].seq

    def body(self) -> bytes:
        """The log-batch request body."""
        metrics: list[dict[str, Any]] = []
        params: list[dict[str, str]] = []
        tags: list[dict[str, str]] = []
        for entity in self.sent:
            item = entity.item
            if entity.kind == METRIC:
                metrics.append(metric_json(item))
            elif entity.kind == PARAM:
                params.append({"key": item.key, "value": item.value})
            else:
                tags.append({"key": item.key, "value": item.value})
        message: dict[str, Any] = {"run_id": self.run_id}
        if metrics:
            message["metrics"] = metrics
        if params:
            message["params"] = params
        if tags:
            message["tags"] = tags
        return _encode(message)

    def split(self) -> tuple["Batch", "Batch"]:
        """Two batches of about half the sent entities each, the first carrying the older rows."""
        half = len(self.sent) // 2
        boundary = self.sent[half].seq
        older = [e for e in self.rows if e.seq < boundary]
        newer = [e for e in self.rows if e.seq >= boundary]
        return (
            Batch(self.run_id, older, [e for e in self.sent if e.seq < boundary]),
            Batch(self.run_id, newer, [e for e in self.sent if e.seq >= boundary]),
        )


def _entity_bytes(entity: Entity) -> int:
    item = entity.item
    if entity.kind == METRIC:
        extra = len(item.model_id or "") + len(item.dataset_name or "") + len(item.dataset_digest or "")
        return _ENTITY_OVERHEAD + 2 * len(item.key) + 48 + extra
    # a value may need escaping: count it twice to stay under the limit
    return _ENTITY_OVERHEAD + 2 * len(item.key) + 2 * len(item.value)


def take_batch(run_id: str, rows: list[Entity]) -> Batch:
    """The longest prefix of ``rows`` that fits one log-batch call.

    A later tag with the same key replaces an earlier one in the batch (tags
    are last-write-wins); an exact repeat of a metric point or param is kept
    home. Params with one key and two values cannot both be spooled (the relay
    refuses the second at once), but if they were, the second would end the
    batch so that the upstream decides each alone.

    Args:
        run_id: the run of the rows.
        rows: the run's oldest undelivered rows in sequence order (not empty).

    Returns:
        A batch with at least one row.
    """
    taken: list[Entity] = []
    sent: dict[Any, Entity] = {}
    counts = {METRIC: 0, PARAM: 0, TAG: 0}
    limits = {METRIC: MAX_METRICS_PER_BATCH, PARAM: MAX_PARAMS_PER_BATCH, TAG: MAX_TAGS_PER_BATCH}
    param_values: dict[str, str] = {}
    total_bytes = 0
    for entity in rows:
        item = entity.item
        if entity.kind == METRIC:
            identity: Any = (METRIC, item)
        else:
            identity = (entity.kind, item.key)
        if entity.kind == PARAM and param_values.get(item.key, item.value) != item.value:
            break
        previous = sent.get(identity)
        if previous is not None and entity.kind != TAG:
            taken.append(entity)  # an exact repeat: settled with the batch, not sent
            continue
        size = _entity_bytes(entity)
        if previous is None:
            if counts[entity.kind] + 1 > limits[entity.kind] or len(sent) + 1 > MAX_ENTITIES_PER_BATCH:
                break
            if taken and total_bytes + size > MAX_BATCH_BYTES:
                break
            counts[entity.kind] += 1
        else:
            del sent[identity]  # re-inserted below so the newest value of the tag travels
        total_bytes += size
        sent[identity] = entity
        if entity.kind == PARAM:
            param_values[item.key] = item.value
        taken.append(entity)
    ordered = sorted(sent.values(), key=lambda e: e.seq)
    return Batch(run_id, taken, ordered)
