"""An incremental Server-Sent Events decoder (WHATWG rules), pure: bytes in, messages out.

Upstreams split their byte streams anywhere, also inside a UTF-8 sequence or between the
``\\r`` and ``\\n`` of a line ending; the decoder keeps what it has not finished and never
depends on where the splits fall.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SSEMessage:
    data: str
    event: str = "message"
    id: str | None = None


class SSEDecoder:
    """Feed it bytes as they arrive; it returns the messages they complete."""

    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._skip_lf = False  # the previous chunk ended on "\r": a leading "\n" is its pair
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._first = True

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        text = self._text.decode(chunk)
        if self._first and text:
            self._first = False
            text = text.removeprefix("\ufeff")
        if self._skip_lf and text:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
        buffer = self._buffer + text
        messages: list[SSEMessage] = []
        if "\r" not in buffer:
            # The usual case (upstreams end lines with "\n"): str.split beats the regex.
            lines = buffer.split("\n")
            self._buffer = lines.pop()
            for line in lines:
                message = self._line(line)
                if message is not None:
                    messages.append(message)
            return messages
        start = 0
        for match in _LINE_END.finditer(buffer):
            message = self._line(buffer[start : match.start()])
            if message is not None:
                messages.append(message)
            start = match.end()
        self._buffer = buffer[start:]
        # A "\r" ending the chunk ended a line; if the next chunk starts with "\n", that
        # "\n" belongs to it. (A "\r" at the end of the buffer is matched alone above.)
        if start and start == len(buffer) and buffer[-1] == "\r":
            self._skip_lf = True
        return messages

    def _line(self, line: str) -> SSEMessage | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            message = SSEMessage("\n".join(self._data), self._event or "message", self._id)
            self._data = []
            self._event = ""
            return message
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None
