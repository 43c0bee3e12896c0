"""Logging: structlog renders every record (ours and uvicorn's) as JSON lines, or as
readable console lines when a terminal is attached."""

from __future__ import annotations

import logging
import re
import sys
import threading
import urllib.parse
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

__all__ = [
    "REDACTED",
    "SECRET_FIELDS",
    "SECRET_PARAMETERS",
    "configure_logging",
    "redact",
    "redact_text",
    "redact_text_by_patterns",
]

REDACTED = "[redacted]"
SECRET_FIELDS = frozenset({"authorization", "x-api-key", "api_key", "key", "token", "secret"})
SECRET_PARAMETERS = frozenset({"token", "key", "api_key"})  # in a URL's query, any case
# A bearer credential, an API key header written out.
_SECRET_TEXT = re.compile(
    r"(?P<name>(?:\bBearer\s+)|(?:x-api-key:\s*))(?P<value>[^\s&\"',]+)", re.IGNORECASE
)
# A query parameter, its name as written (percent-encoded or not): ?name=value or &name=value.
# A value ends at a "?" too: "?a=1?token=2" holds no token parameter, but likely a token.
_PARAMETER = re.compile(r"(?P<name>[?&](?P<key>[^\s=&#?\"',]+)=)(?P<value>[^\s&#?\"',]+)")


def _parameter(match: re.Match[str]) -> str:
    key = match.group("key")
    # As the server reads it: "?%74oken=" is the token parameter too.
    if "%" in key or "+" in key:
        key = urllib.parse.unquote_plus(key)
    if key.lower() in SECRET_PARAMETERS:
        return match.group("name") + REDACTED
    return match.group(0)


def redact_text_by_patterns(text: str) -> str:
    """What :func:`redact_text` does, by the patterns alone: its quick checks must never
    change the answer (the tests hold them to this)."""
    text = _PARAMETER.sub(_parameter, text)
    return _SECRET_TEXT.sub(lambda m: m.group("name") + REDACTED, text)


def redact_text(text: str) -> str:
    """``text`` with secret query parameters in URLs and bearer credentials replaced."""
    # Most values (ids, names, numbers as text) hold none of what a secret's pattern needs:
    # the regex, at ~0.8 µs a value, ran on every string of every line.
    if "=" in text:
        text = _PARAMETER.sub(_parameter, text)
    if ":" not in text and "bearer" not in text.lower():
        return text
    return _SECRET_TEXT.sub(lambda m: m.group("name") + REDACTED, text)


def redact(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: secrets never reach a log line, whoever logs them (our code,
    uvicorn's access log, a library)."""
    for name, value in event.items():
        if name.lower() in SECRET_FIELDS and value is not None:
            event[name] = REDACTED
        elif isinstance(value, str):
            event[name] = redact_text(value)
    return event


class _Sink:
    """Where log lines go; loggers are cached on first use, so they hold the sink, and
    ``configure_logging`` can point it at another stream (tests capture logs this way)."""

    def __init__(self) -> None:
        self.stream: Any = sys.stderr
        self.lock = threading.Lock()

    def write_line(self, line: str) -> None:
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()


_sink = _Sink()


class _LineLogger:
    """structlog's final logger for the gateway's own records: one rendered line, written
    straight to the sink. The stdlib path (a LogRecord, handler locks, a formatter) cost a
    tenth of a short request's CPU for its three lines; libraries' records still take it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def msg(self, message: str) -> None:
        _sink.write_line(message)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _line_logger(*args: Any) -> _LineLogger:
    return _LineLogger(str(args[0]) if args else "")


def _json(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def configure_logging(level: str = "info", stream: Any = None) -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    output = stream or sys.stderr
    if output.isatty():
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_json)
    # Last before rendering: tracebacks are text by now, and get redacted too.
    finish: list[structlog.types.Processor] = [structlog.processors.format_exc_info, redact]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *finish,
            renderer,
        ],
    )
    handler = logging.StreamHandler(output)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own start-up chatter repeats what the gateway says in one line; httpx's
    # line per upstream request repeats the gateway's "upstream call" line, which says more
    # (and cost a twentieth of a short request's CPU through the stdlib path).
    for name in ("uvicorn.error", "httpx"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    _sink.stream = output
    structlog.configure(
        processors=[*shared, *finish, renderer],
        logger_factory=_line_logger,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
