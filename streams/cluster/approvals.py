"""Answering a tool call's approval on the instance that runs the run: the messages.

An instance that takes an answer for a run of another instance publishes an ``approve``
command on that instance's control channel and waits for the outcome on a reply list of its
own (``reply:{token}``)::

    asker ──PUBLISH control:{owner} {op: approve, run_id, call_id, answer, reply}──▶ owner
    asker ◀──BLPOP reply:{token} ───── LPUSH {ok: true} | {ok: false, code, message} ── owner

The owner resolves every answer with :meth:`streams.runs.run.Run.answer_approval` on its
own event loop, whichever instance it came from, so that of two answers given at once on two
instances exactly one wins and the other is a 409, as on a single instance. The outcome's
error travels as its code and message and is raised again on the asker as the same error.

Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Any, TypeGuard

import orjson

from streams.approvals import ApprovalAnswer
from streams.errors import (
    ApprovalAnsweredError,
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    StoreUnavailableError,
)

__all__ = [
    "MAX_OUTCOME_MESSAGE_LENGTH",
    "approval_command",
    "encode_outcome",
    "is_reply_token",
    "parse_answer",
    "raise_for_outcome",
]

MAX_OUTCOME_MESSAGE_LENGTH = 2000  # characters of an error message sent back to the asker

# The errors an answer can end in, by code: raised again as themselves on the asker.
_ERRORS: dict[str, type[GatewayError]] = {
    cls.code: cls
    for cls in (ApprovalAnsweredError, InvalidRequestError, NotFoundError, StoreUnavailableError)
}

_REPLY_TOKEN = re.compile(r"[0-9a-f]{16,64}")


def is_reply_token(value: Any) -> TypeGuard[str]:
    """Whether ``value`` is a reply token as askers make them (hex: it goes into a key
    name, which a malformed command must not choose)."""
    return isinstance(value, str) and _REPLY_TOKEN.fullmatch(value) is not None


def approval_command(run_id: str, call_id: str, answer: ApprovalAnswer, reply: str) -> bytes:
    """The control message that asks the run's instance to deliver ``answer``."""
    return orjson.dumps(
        {
            "op": "approve",
            "run_id": run_id,
            "call_id": call_id,
            "answer": {
                "decision": answer.decision,
                "by": answer.by,
                "reason": answer.reason,
                "arguments": answer.arguments,
            },
            "reply": reply,
        }
    )


def parse_answer(value: Any) -> ApprovalAnswer:
    """The :class:`~streams.approvals.ApprovalAnswer` of an ``approve`` command (checked as
    the asker checked it: :class:`~streams.errors.InvalidRequestError` if it does not fit)."""
    if not isinstance(value, dict):
        raise InvalidRequestError("the answer must be an object")
    decision, by = value.get("decision"), value.get("by")
    reason, arguments = value.get("reason"), value.get("arguments")
    if decision != "approve" and decision != "deny":
        raise InvalidRequestError("decision must be 'approve' or 'deny'")
    if not isinstance(by, str) or not isinstance(reason, str | None):
        raise InvalidRequestError("the answer's by and reason must be strings")
    if not isinstance(arguments, dict | None):
        raise InvalidRequestError("the answer's arguments must be an object")
    return ApprovalAnswer(decision, by=by, reason=reason, arguments=arguments)


def encode_outcome(error: GatewayError | None) -> bytes:
    """What the owner pushes to the reply list: ``{"ok": true}``, or the error's code and
    message (bounded)."""
    if error is None:
        return b'{"ok":true}'
    message = str(error)[:MAX_OUTCOME_MESSAGE_LENGTH]
    return orjson.dumps({"ok": False, "code": error.code, "message": message})


def raise_for_outcome(raw: bytes | str) -> None:
    """Return if the owner delivered the answer; else raise its error (an error of another
    kind, or an outcome that cannot be read, as :class:`~streams.errors.GatewayError`)."""
    try:
        outcome = orjson.loads(raw)
        ok, code, message = outcome["ok"], outcome.get("code"), outcome.get("message")
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise GatewayError("the run's instance sent an outcome that cannot be read") from None
    if ok is True:
        return
    text = str(message or "the run's instance refused the answer")
    raise _ERRORS.get(str(code), GatewayError)(text)
