"""Logging: structlog renders every record (ours and uvicorn's) as JSON lines, or as
readable console lines when a terminal is attached."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"
SECRET_FIELDS = frozenset({"authorization", "x-api-key", "api_key", "key", "token", "secret"})
# A token in a URL, a bearer credential, an API key header written out.
_SECRET_TEXT = re.compile(
    r"(?P<name>(?:[?&](?:token|key|api_key)=)|(?:\bBearer\s+)|(?:x-api-key:\s*))"
    r"(?P<value>[^\s&\"',]+)",
    re.IGNORECASE,
)


def redact_text(text: str) -> str:
    """``text`` with tokens in URLs and bearer credentials replaced."""
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
        renderer = structlog.processors.JSONRenderer()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,  # last before rendering: tracebacks are text by now, and get redacted too
            renderer,
        ],
    )
    handler = logging.StreamHandler(output)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own start-up chatter repeats what the gateway says in one line.
    logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, root.level))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
