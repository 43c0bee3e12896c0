"""API keys, run ownership and stream tokens.

* **API keys** are configured as hashes (``sha256:<hex>``), never in plain text. A presented
  key is hashed and compared with every configured hash in constant time.
* A run belongs to the key that started it (its *owner*); another key asking for it gets
  404, exactly as for a run that does not exist.
* **Stream tokens** let a browser's ``EventSource`` (which cannot set headers) read one run:
  ``<expiry>.<signature>``, an HMAC-SHA256 over the run id and the expiry, accepted only by
  ``GET /v1/runs/{id}/events?token=``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from streams.errors import AuthenticationError

__all__ = [
    "ANONYMOUS",
    "HASH_PREFIX",
    "KeyRing",
    "Principal",
    "StreamTokens",
    "hash_key",
    "key_from_headers",
    "new_key",
]

HASH_PREFIX = "sha256:"


def hash_key(key: str) -> str:
    """The form an API key is configured in: ``sha256:<hex digest>``."""
    return HASH_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random API key (``gw-`` + 43 URL-safe characters)."""
    return "gw-" + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the configured key's name, or ``None`` when the gateway runs open."""

    name: str | None

    @property
    def owner(self) -> str | None:
        return self.name


ANONYMOUS = Principal(None)


class KeyRing:
    """The configured API keys, by name."""

    def __init__(self, hashes: Mapping[str, str]) -> None:
        self._digests: list[tuple[str, bytes]] = []
        for name, value in hashes.items():
            if not value.startswith(HASH_PREFIX):
                raise ValueError(
                    f"API key {name!r}: expected '{HASH_PREFIX}<hex>', got a value "
                    "that is not a hash (configure hashes, never keys)"
                )
            try:
                digest = bytes.fromhex(value.removeprefix(HASH_PREFIX))
            except ValueError:
                raise ValueError(f"API key {name!r}: the hash is not hexadecimal") from None
            if len(digest) != hashlib.sha256().digest_size:
                raise ValueError(f"API key {name!r}: not a SHA-256 digest")
            self._digests.append((name, digest))

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def authenticate(self, presented: str | None) -> Principal:
        """The principal for a presented key; :class:`AuthenticationError` if it is missing
        or matches no configured key. With no keys configured, everyone is anonymous."""
        if not self._digests:
            return ANONYMOUS
        if not presented:
            raise AuthenticationError(
                "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key'"
            )
        digest = hashlib.sha256(presented.encode()).digest()
        found: str | None = None
        for name, expected in self._digests:  # compare with all of them: constant time
            if hmac.compare_digest(digest, expected) and found is None:
                found = name
        if found is None:
            raise AuthenticationError("the API key is not valid")
        return Principal(found)


def key_from_headers(authorization: str | None, api_key: str | None) -> str | None:
    if api_key and api_key.strip():
        return api_key.strip()
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return None


class StreamTokens:
    """Short-lived tokens that open one run's event stream."""

    def __init__(self, secret: bytes, ttl: float) -> None:
        self._secret = secret
        self.ttl = ttl

    def _sign(self, run_id: str, expiry: int) -> str:
        mac = hmac.new(self._secret, f"{run_id}.{expiry}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def issue(self, run_id: str, now: float | None = None) -> str:
        expiry = int((now if now is not None else time.time()) + self.ttl)
        return f"{expiry}.{self._sign(run_id, expiry)}"

    def verify(self, token: str, run_id: str, now: float | None = None) -> bool:
        expiry_text, _, signature = token.partition(".")
        try:
            expiry = int(expiry_text)
        except ValueError:
            return False
        if expiry < (now if now is not None else time.time()):
            return False
        # As bytes: compare_digest refuses non-ASCII str, and a token is client input.
        return hmac.compare_digest(signature.encode(), self._sign(run_id, expiry).encode())
