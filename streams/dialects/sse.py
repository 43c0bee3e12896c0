"""The one Server-Sent Events framer: fields in, the bytes of one frame out. Pure, no I/O.

Every dialect frames through here, so the rules hold for all of them:

* Lines end in LF only. AG-UI's client splits frames on ``\\n\\n``, and a CR would be taken
  for a line end of its own by any other client.
* Fields go out in one order: comment, ``id``, ``event``, ``data``, ``retry`` (the order of
  ``sse_starlette``, whose frames the tests compare with these byte for byte).
* ``data`` and ``comment`` may hold line breaks (CRLF, CR or LF, which SSE clients all take
  for a line end): each line becomes its own ``data:`` / ``:`` line, so no text can end a
  frame early or inject a field; the client joins ``data`` lines back with ``\\n``. Only
  those three are line breaks here (not Unicode's other ones, which SSE does not know).
* ``id`` and ``event`` are one line each: one with a line break cannot be sent as it is,
  so it is refused (ValueError) rather than altered. ``retry`` is a whole number of
  milliseconds, as clients only take digits.

:func:`data_frame` is the hot path (an event's JSON, with its ``seq`` as ``id``); it makes
the same bytes as :func:`frame` with ``data`` and ``id`` only.
"""

from __future__ import annotations

__all__ = ["JSONFrameTemplate", "comment_frame", "data_frame", "frame"]

# Line breaks as ints: ``int in bytes`` is a plain memchr, where ``bytes in bytes`` first
# tries the needle as an int and pays for the TypeError (several times the search itself).
_CR = 0x0D
_LF = 0x0A


def _utf8(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _lines(field: bytes, value: bytes) -> bytes:
    """``value`` as ``<field> <line>\\n`` lines, one per line of it: CRLF, CR and LF each end
    one, as an SSE parser reads them."""
    if _CR in value:
        value = value.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if _LF in value:
        value = value.replace(b"\n", b"\n" + field + b" ")
    return b"%s %s\n" % (field, value)


def _one_line(field: bytes, value: str | bytes) -> bytes:
    encoded = _utf8(value)
    if _CR in encoded or _LF in encoded:
        raise ValueError(f"an SSE {field.decode()[:-1]} cannot hold a line break: {value!r}")
    return b"%s %s\n" % (field, encoded)


def frame(
    *,
    data: str | bytes | None = None,
    id: int | str | bytes | None = None,
    event: str | bytes | None = None,
    retry: int | None = None,
    comment: str | bytes | None = None,
) -> bytes:
    """One SSE frame with the fields given (``None``: the field is left out).

    ``str`` values go out as UTF-8; ``bytes`` as they are. A frame with no field at all is
    the bare blank line (which a client ignores).
    """
    out = b""
    if comment is not None:
        out += _lines(b":", _utf8(comment))
    if id is not None:
        out += b"id: %d\n" % id if isinstance(id, int) else _one_line(b"id:", id)
    if event is not None:
        out += _one_line(b"event:", event)
    if data is not None:
        out += _lines(b"data:", _utf8(data))
    if retry is not None:
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise ValueError(f"an SSE retry is a whole number of milliseconds, not {retry!r}")
        out += b"retry: %d\n" % retry
    return out + b"\n"


def data_frame(data: bytes, id: int | None = None) -> bytes:
    """``frame(data=data, id=id)``, made faster for the case of nearly every frame: one line
    of data (an event's JSON, which holds no raw line break) and an integer id."""
    # 0x0A and 0x0D (LF, CR) written out: constants, where _LF and _CR are global lookups.
    if 0x0A in data or 0x0D in data:
        return frame(data=data, id=id)
    if id is None:
        return b"data: %s\n\n" % data
    return b"id: %d\ndata: %s\n\n" % (id, data)


class JSONFrameTemplate:
    """Frames whose data is one JSON shape with one varying value, ``head + value + tail``,
    and whose id is an integer: the chunks of a streamed chat completion, which differ only
    in their text. One format operation a frame, the fastest way to make one.

    ``head`` and ``tail`` are checked for line breaks here, once; ``value`` must be JSON as
    :func:`streams.events.dumps` makes it, which never holds a raw line break (JSON escapes
    them), so it is not searched again per frame.
    """

    __slots__ = ("_format",)

    def __init__(self, head: bytes, tail: bytes) -> None:
        for part in (head, tail):
            if 0x0A in part or 0x0D in part:
                raise ValueError(f"a one-line JSON frame cannot hold a line break: {part!r}")
        # "%" in the JSON around the value (a model named "50%") is a literal here.
        self._format = (
            b"id: %d\ndata: " + head.replace(b"%", b"%%") + b"%s" + tail.replace(b"%", b"%%")
        ) + b"\n\n"

    def frame(self, id: int, value: bytes) -> bytes:
        """``frame(id=id, data=head + value + tail)``."""
        return self._format % (id, value)


def comment_frame(text: str) -> bytes:
    """A frame of comment lines only (clients ignore it; it keeps proxies from timing out)."""
    return frame(comment=text)
