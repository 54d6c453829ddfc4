"""Structured logs: one JSON object per line, carrying the account and Celery task ids of the work in hand.

Several workers on several machines write interleaved logs; a line that names its account and task can be
grepped and joined without guessing. The ids live in context variables set by `log_context`, so code deep in a
run (sync, metrics) logs with plain `logger.info(...)` and still gets them. Secrets never go into a log line:
callers log names and ids, never keys or webhook URLs.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from metrics.calendar import utc_datetime

_CONTEXT: ContextVar[dict[str, Any]] = ContextVar("retention_log_context", default={})  # noqa: B039

# Attributes every LogRecord has; anything else on a record came from `extra=` and belongs in the JSON line.
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Every log line written inside the block carries these fields (e.g. account=, task_id=)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_context() -> dict[str, Any]:
    return dict(_CONTEXT.get())


class JsonFormatter(logging.Formatter):
    """A log record as one JSON line: time, level, logger, message, context ids, extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": utc_datetime(record.created).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_CONTEXT.get())
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str | int = "INFO", stream: Any = None) -> None:
    """Route the root logger to one JSON-lines handler (replacing handlers set up before)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    # stripe-python logs every request at INFO; our own lines already say what a sync did
    logging.getLogger("stripe").setLevel(logging.WARNING)
