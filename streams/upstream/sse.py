"""An incremental Server-Sent Events decoder (WHATWG rules), pure: bytes in, messages out.

Upstreams split their byte streams anywhere, also inside a UTF-8 sequence or between the
``\\r`` and ``\\n`` of a line ending; the decoder keeps what it has not finished and never
depends on where the splits fall.

It works on bytes and decodes only what it hands out (a message's data, event type and id):
line endings are ASCII, so a line's bytes decode alone to what decoding the whole stream
would give for it, and a UTF-8 sequence split across chunks is whole by the time its line
is. Each chunk is searched once for line ends; the unfinished line is kept as a list of
pieces, joined once when its end arrives, so a long line costs time linear in its length
(joining it with every chunk and searching the whole of it again was quadratic: a 16 MiB
line took 3.6 s of CPU).

A line longer than ``max_line_bytes``, or a message whose data grows past
``max_event_bytes``, raises :class:`SSELimitError` as soon as the decoder sees it, rather
than holding an upstream's endless line until a timeout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["MAX_EVENT_BYTES", "MAX_LINE_BYTES", "SSEDecoder", "SSELimitError", "SSEMessage"]

_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"  # U+FEFF in UTF-8: ignored once, at the start of the stream

# An upstream sends one JSON chunk per line, a few hundred bytes; the longest legitimate
# line is a whole answer or tool call in one chunk, bounded by the route's max_tokens
# (4096 by default: ~16 KiB of text). 1 MiB leaves room for the longest outputs models
# give while bounding what a broken upstream can make the gateway hold per request.
MAX_LINE_BYTES = 1024 * 1024
# A message's data is its data lines joined; upstreams send one data line per message, so
# this only matters for a stream of data lines that never dispatches.
MAX_EVENT_BYTES = 4 * 1024 * 1024


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__,
# which tripled the cost of making one (made for every chunk of every upstream stream).
@dataclass(slots=True)
class SSEMessage:
    data: str
    event: str = "message"
    id: str | None = None


class SSELimitError(ValueError):
    """A line (``kind="line"``), or a message's data (``kind="event"``), is longer than the
    decoder's limit. ``messages`` are the ones the same chunk completed before it (earlier
    chunks' were returned already)."""

    def __init__(
        self, kind: Literal["line", "event"], limit: int, messages: list[SSEMessage]
    ) -> None:
        what = "an event stream line" if kind == "line" else "an event's data"
        super().__init__(f"{what} longer than {limit} bytes")
        self.kind = kind
        self.limit = limit
        self.messages = messages


class SSEDecoder:
    """Feed it bytes as they arrive; it returns the messages they complete. After it has
    raised :class:`SSELimitError`, the stream is broken: feed it no more."""

    def __init__(
        self, *, max_line_bytes: int = MAX_LINE_BYTES, max_event_bytes: int = MAX_EVENT_BYTES
    ) -> None:
        self.max_line_bytes = max_line_bytes
        self.max_event_bytes = max_event_bytes
        self._pending: list[bytes] = []  # the unfinished line, in pieces
        self._pending_size = 0
        self._skip_lf = False  # the previous chunk ended on "\r": a leading "\n" is its pair
        self._first = True  # no byte has come yet (the stream may start with a BOM)
        self._start = b""  # the stream's first bytes, while they may be a BOM
        self._data: list[bytes] = []
        self._data_size = 0  # of the data lines so far, each counted with a separator
        self._event = b""
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        if self._first:
            # A BOM starting the stream is dropped; until 3 bytes have come, it may be one.
            chunk = self._start + chunk
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._start = chunk
                return []
            self._first = False
            chunk = chunk.removeprefix(_BOM)
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[0] == 0x0A:  # "\n"
                chunk = chunk[1:]
        if not chunk:
            return []
        has_cr = 0x0D in chunk  # "\r"; an int is looked for with memchr, 8 times faster
        end = chunk.rfind(b"\n")
        if has_cr:
            end = max(end, chunk.rfind(b"\r"))
        if end < 0:  # no line ends here: all of it is the unfinished line
            self._hold(chunk, [])
            return []
        # Only this chunk was searched; the pieces held before it join its first line.
        if end + 1 == len(chunk):
            head, tail = chunk, b""
        else:
            head, tail = chunk[: end + 1], chunk[end + 1 :]
        if self._pending:
            self._pending.append(head)
            head = b"".join(self._pending)
            self._pending.clear()
            self._pending_size = 0
        if has_cr:
            lines = _LINE_END.split(head)
            # A "\r" ending the chunk ended a line; a "\n" starting the next chunk is its pair.
            self._skip_lf = chunk[-1] == 0x0D
        else:
            lines = head.split(b"\n")
        lines.pop()  # the empty text after the last line end
        messages: list[SSEMessage] = []
        # No line can be longer than the text that holds them all (the usual case).
        check = len(head) > self.max_line_bytes
        for line in lines:
            if not line:
                if self._data:
                    messages.append(self._dispatch())
                else:
                    self._event = b""
                continue
            if check and len(line) > self.max_line_bytes:
                raise SSELimitError("line", self.max_line_bytes, messages)
            if line.startswith(b"data:"):  # the usual line, without partition's copies
                value = line[6:] if line.startswith(b" ", 5) else line[5:]
                self._data.append(value)
                self._data_size += len(value) + 1
                if self._data_size > self.max_event_bytes + 1:
                    raise SSELimitError("event", self.max_event_bytes, messages)
                continue
            if line[0] == 0x3A:  # ":" starts a comment
                continue
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":  # "data" without a colon: empty data
                self._data.append(value)
                self._data_size += 1
                if self._data_size > self.max_event_bytes + 1:
                    raise SSELimitError("event", self.max_event_bytes, messages)
            elif name == b"event":
                self._event = value
            elif name == b"id" and b"\0" not in value:
                self._id = value.decode("utf-8", "replace")
        if tail:
            self._hold(tail, messages)
        return messages

    def _hold(self, piece: bytes, messages: list[SSEMessage]) -> None:
        """Keep ``piece`` of the unfinished line (it has no line end)."""
        self._pending.append(piece)
        self._pending_size += len(piece)
        if self._pending_size > self.max_line_bytes:
            raise SSELimitError("line", self.max_line_bytes, messages)

    def _dispatch(self) -> SSEMessage:
        parts = self._data
        data = (parts[0] if len(parts) == 1 else b"\n".join(parts)).decode("utf-8", "replace")
        event = self._event.decode("utf-8", "replace") if self._event else "message"
        self._data = []
        self._data_size = 0
        self._event = b""
        return SSEMessage(data, event, self._id)
