"""The JSON log format: one object per line, extra fields kept, no trace or exception text."""

from __future__ import annotations

import json
import logging
import sys

from gateway.logs import JsonFormatter


def test_one_json_object_without_trace():
    try:
        raise ValueError('duplicate key value violates unique constraint: INSERT INTO params VALUES ($1)')
    except ValueError:
        record = logging.getLogger("gateway.test").makeRecord(
            "gateway.test", logging.ERROR, __file__, 1, "flush failed for %d writes", (3,), exc_info=sys.exc_info(),
            extra={"request_id": "abc", "status": 500},
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "flush failed for 3 writes"
    assert (entry["level"], entry["logger"], entry["request_id"], entry["status"]) == ("error", "gateway.test", "abc", 500)
    assert entry["error_type"] == "ValueError"
    assert "INSERT" not in line and "Traceback" not in line and "unique constraint" not in line
