"""Structured logs: one line per event on stderr, as text or, on request, as JSON.

    configure_logging("query-server")    # first thing in main()

- `LEDGER_LOG_LEVEL`: DEBUG, INFO (default), WARNING, ERROR or CRITICAL.
- `LEDGER_LOG_FORMAT`: `text` (default) or `json`.

Every line carries the time (UTC, milliseconds), level, service, logger and message, plus any
fields passed with `extra={...}`. A traceback stays on its event's line (escaped in text, a
string field in JSON), so that a log shipper that splits on newlines never tears an event apart.
A bad setting does not stop the process: it logs a warning and uses the default.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any

LOG_LEVEL = "LEDGER_LOG_LEVEL"
LOG_FORMAT = "LEDGER_LOG_FORMAT"
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def configure_logging(service: str, env: Mapping[str, str] | None = None) -> None:
    """Send every log record of this process to stderr, one line each, formatted per `env`."""
    env = os.environ if env is None else env
    problems = []
    level = (env.get(LOG_LEVEL) or "INFO").strip().upper()
    if level not in _LEVELS:
        problems.append(f"{LOG_LEVEL}={level!r} is not one of {', '.join(_LEVELS)}; using INFO")
        level = "INFO"
    form = (env.get(LOG_FORMAT) or "text").strip().lower()
    if form not in ("text", "json"):
        problems.append(f"{LOG_FORMAT}={form!r} is neither text nor json; using text")
        form = "text"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if form == "json" else TextFormatter(service))
    root = logging.getLogger()
    # Replace, not add to, whatever an earlier basicConfig or a library installed.
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # The warnings module prints multi-line text to stderr on its own; route it through us.
    logging.captureWarnings(True)
    for problem in problems:
        logging.getLogger(__name__).warning(problem)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, service, logger, message, extras, exception."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`<ts> <LEVEL> <service> <logger>: <message> key=value...`, on one line."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        fields = dict(_extras(record))
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        line = (
            f"{_timestamp(record)} {record.levelname} {self._service} {record.name}: "
            f"{_one_line(record.getMessage())}"
        )
        return " ".join([line, *(f"{key}={_text_value(value)}" for key, value in fields.items())])


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller added with `extra=`: whatever a bare LogRecord does not have."""
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _record_attributes() and not key.startswith("_")
    }


@cache
def _record_attributes() -> frozenset[str]:
    blank = logging.LogRecord("", logging.INFO, "", 0, "", None, None)
    # `message` and `asctime` are set by Formatter.format on the record it formats.
    return frozenset(blank.__dict__) | {"message", "asctime"}


def _one_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


def _text_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and not any(c in text for c in ' "=\\\r\n'):
        return text
    return json.dumps(text, ensure_ascii=False)  # quoted, with newlines escaped
