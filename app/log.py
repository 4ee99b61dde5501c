"""Logs carrying the id of the request being served: one JSON object per line, or one plain-text line.

Either way a client cannot forge a line: JSON escapes every control character, and the plain-text formatter
escapes them in the message (a path sent as ``/x%0a...`` arrives decoded, with a real newline in it).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else was passed with extra={...} and is logged as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}  # uvicorn's ANSI copy


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: whatever a log viewer may break a line on.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """``text`` with control characters written as Python escapes (``\\n``, ``\\x1b``, ``\\u2028``)."""
    return _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


class TextFormatter(logging.Formatter):
    """``time level logger [request id]: message``, the message on one line; a traceback follows it."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{self.formatTime(record)} {record.levelname} {record.name}"
        request_id = request_id_var.get()
        if request_id:
            line += f" [{request_id}]"
        line += ": " + escape_controls(record.getMessage())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class ReportedStartupError(Exception):
    """The service cannot start, and has logged why in one line."""


class OneLineStartupErrors(logging.Filter):
    """Drops uvicorn's record of a failed startup when the failure is a ``ReportedStartupError``: Starlette hands
    uvicorn the failure as traceback text to log, which would follow the one clean line with a traceback."""

    LAST_LINE = f"{ReportedStartupError.__module__}.{ReportedStartupError.__qualname__}:"

    def filter(self, record: logging.LogRecord) -> bool:
        lines = record.getMessage().rstrip().splitlines()
        return not (lines and lines[0].startswith("Traceback") and lines[-1].startswith(self.LAST_LINE))


def log_config(level: str, json_logs: bool) -> dict:
    """A ``logging.config.dictConfig`` for the app and uvicorn's own loggers (passed to uvicorn as log_config)."""
    formatter = {"()": JsonFormatter if json_logs else TextFormatter}
    handler = {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"one_line_startup_errors": {"()": OneLineStartupErrors}},
        "handlers": {"default": {**handler, "filters": ["one_line_startup_errors"]}},
        "loggers": {
            "app": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            # The service writes its own access line, with the request id (app.api.middleware); uvicorn's would
            # repeat it without one.
            "uvicorn.access": {"level": "WARNING"},
            # A warning per malformed multipart header: clients choose how many, and get a 400 saying why.
            "python_multipart": {"level": "ERROR"},
        },
        "root": {"handlers": ["default"], "level": "WARNING"},
    }
