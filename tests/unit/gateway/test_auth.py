"""API keys, the key ring, credentials from headers and stream tokens (``gateway/auth.py``)."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.auth import (
    ANONYMOUS,
    KeyRing,
    StreamTokens,
    hash_key,
    key_from_headers,
    new_key,
)
from streams.errors import AuthenticationError

NOW = 1_700_000_000.0
TTL = 300.0
SECRET = b"stream-token-secret"


# --- hash_key / new_key ---------------------------------------------------------------------


@pytest.mark.parametrize("key", ["k", "gw-abc", "a key with spaces", "ключ"])
def test_hash_key_is_sha256_prefix_and_64_lowercase_hex(key: str) -> None:
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", hash_key(key))


def test_hash_key_is_deterministic_and_distinguishes_keys() -> None:
    assert hash_key("alpha") == hash_key("alpha")
    assert hash_key("alpha") != hash_key("beta")


def test_hash_key_of_a_known_value() -> None:
    # sha256("abc"), the FIPS 180-2 test vector
    assert hash_key("abc") == (
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_new_key_is_gw_prefix_and_43_url_safe_characters() -> None:
    assert re.fullmatch(r"gw-[A-Za-z0-9_-]{43}", new_key())


def test_new_keys_are_unique() -> None:
    keys = {new_key() for _ in range(200)}
    assert len(keys) == 200


# --- KeyRing --------------------------------------------------------------------------------


@pytest.mark.parametrize("presented", [None, "", "anything", "gw-whatever"])
def test_a_ring_without_keys_lets_everyone_in_anonymously(presented: str | None) -> None:
    ring = KeyRing({})
    assert not ring.enabled
    principal = ring.authenticate(presented)
    assert principal is ANONYMOUS
    assert principal.owner is None


@pytest.mark.parametrize("name", ["alice", "bob", "ci"])
def test_a_configured_key_authenticates_to_its_name(name: str) -> None:
    keys = {"alice": "key-a", "bob": "key-b", "ci": "key-ci"}
    ring = KeyRing({n: hash_key(k) for n, k in keys.items()})
    assert ring.enabled
    principal = ring.authenticate(keys[name])
    assert principal.name == name
    assert principal.owner == name


@pytest.mark.parametrize("presented", ["wrong", "key-a ", "KEY-A", hash_key("key-a")])
def test_a_wrong_key_is_refused_as_not_valid(presented: str) -> None:
    ring = KeyRing({"alice": hash_key("key-a")})
    with pytest.raises(AuthenticationError, match="not valid"):
        ring.authenticate(presented)


@pytest.mark.parametrize("presented", [None, ""])
def test_a_missing_key_is_refused_saying_how_to_send_one(presented: str | None) -> None:
    ring = KeyRing({"alice": hash_key("key-a")})
    with pytest.raises(AuthenticationError) as raised:
        ring.authenticate(presented)
    message = str(raised.value)
    assert "required" in message
    assert "Authorization: Bearer" in message
    assert "X-API-Key" in message


def test_authentication_error_has_the_unauthorized_code() -> None:
    assert AuthenticationError.code == "unauthorized"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("plain-secret-key", id="plain-key"),
        pytest.param("sha256:" + "ab" * 31, id="too-short"),
        pytest.param("sha256:" + "ab" * 33, id="too-long"),
        pytest.param("md5:" + "ab" * 16, id="other-algorithm"),
    ],
)
def test_a_value_that_is_not_a_sha256_hash_is_refused_naming_the_key(value: str) -> None:
    with pytest.raises(ValueError, match="'alice'") as raised:
        KeyRing({"alice": value})
    assert value not in str(raised.value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("sha256:" + "zz" + "0" * 62, id="bad-hex"),
        pytest.param("sha256:" + "a" * 63, id="odd-length"),
    ],
)
def test_a_value_with_bad_hex_is_refused_naming_the_key(value: str) -> None:
    with pytest.raises(ValueError, match="'alice'") as raised:
        KeyRing({"alice": value})
    assert value not in str(raised.value)


# --- key_from_headers -----------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_a_bearer_credential_is_read_whatever_the_scheme_case(scheme: str) -> None:
    assert key_from_headers(f"{scheme} gw-secret", None) == "gw-secret"


def test_a_bearer_credential_is_stripped() -> None:
    assert key_from_headers("Bearer   gw-secret  ", None) == "gw-secret"


def test_x_api_key_wins_over_authorization() -> None:
    assert key_from_headers("Bearer from-bearer", "from-header") == "from-header"


def test_x_api_key_is_stripped() -> None:
    assert key_from_headers(None, "  gw-secret ") == "gw-secret"


@pytest.mark.parametrize(
    ("authorization", "api_key"),
    [
        (None, None),
        ("", None),
        (None, ""),
        ("", ""),
        ("Bearer", None),
        ("Bearer ", None),
        ("Bearer    ", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Token gw-secret", None),
        ("gw-secret", None),
    ],
)
def test_no_usable_credential_gives_none(authorization: str | None, api_key: str | None) -> None:
    assert key_from_headers(authorization, api_key) is None


def test_a_blank_x_api_key_does_not_hide_a_bearer_credential() -> None:
    assert key_from_headers("Bearer gw-secret", "   ") == "gw-secret"


# --- StreamTokens ---------------------------------------------------------------------------


@pytest.fixture
def tokens() -> StreamTokens:
    return StreamTokens(SECRET, ttl=TTL)


def test_an_issued_token_verifies_for_its_run(tokens: StreamTokens) -> None:
    token = tokens.issue("run-1", now=NOW)
    assert tokens.verify(token, "run-1", now=NOW)


def test_a_token_is_expiry_dot_signature(tokens: StreamTokens) -> None:
    expiry, dot, signature = tokens.issue("run-1", now=NOW).partition(".")
    assert dot == "."
    assert int(expiry) == int(NOW + TTL)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", signature)


@pytest.mark.parametrize("later", [0.0, 1.0, TTL - 1, TTL])
def test_a_token_verifies_until_its_expiry(tokens: StreamTokens, later: float) -> None:
    token = tokens.issue("run-1", now=NOW)
    assert tokens.verify(token, "run-1", now=NOW + later)


@pytest.mark.parametrize("later", [TTL + 0.001, TTL + 1, 10 * TTL])
def test_a_token_past_its_expiry_does_not_verify(tokens: StreamTokens, later: float) -> None:
    token = tokens.issue("run-1", now=NOW)
    assert not tokens.verify(token, "run-1", now=NOW + later)


def test_a_token_for_another_run_does_not_verify(tokens: StreamTokens) -> None:
    token = tokens.issue("run-1", now=NOW)
    assert not tokens.verify(token, "run-2", now=NOW)


def test_a_token_with_a_tampered_signature_does_not_verify(tokens: StreamTokens) -> None:
    expiry, _, signature = tokens.issue("run-1", now=NOW).partition(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    assert not tokens.verify(f"{expiry}.{flipped}", "run-1", now=NOW)


def test_a_token_with_an_extended_expiry_does_not_verify(tokens: StreamTokens) -> None:
    expiry, _, signature = tokens.issue("run-1", now=NOW).partition(".")
    later = int(expiry) + 3600
    assert not tokens.verify(f"{later}.{signature}", "run-1", now=NOW + TTL + 60)


@pytest.mark.parametrize(
    "token",
    ["", ".", "garbage", "not-a-number.sig", "9999999999", "9999999999.", "1.2.3", "..."],
)
def test_a_garbage_token_does_not_verify(tokens: StreamTokens, token: str) -> None:
    assert not tokens.verify(token, "run-1", now=NOW)


def test_a_token_signed_with_another_secret_does_not_verify(tokens: StreamTokens) -> None:
    other = StreamTokens(b"another-secret", ttl=TTL)
    token = other.issue("run-1", now=NOW)
    assert not tokens.verify(token, "run-1", now=NOW)


# Tokens that look like "<future expiry>.<signature>", so verification reaches the signature.
_shaped_tokens = st.builds(
    "{}.{}".format, st.integers(min_value=int(NOW), max_value=2**40), st.text()
)


@settings(deadline=None)
@given(
    st.one_of(
        st.text(alphabet=st.characters(max_codepoint=127)),
        st.builds(
            "{}.{}".format,
            st.integers(min_value=int(NOW), max_value=2**40),
            st.text(alphabet=st.characters(max_codepoint=127)),
        ),
    )
)
def test_random_ascii_strings_never_verify_and_never_raise(token: str) -> None:
    assert StreamTokens(SECRET, ttl=TTL).verify(token, "run-1", now=NOW) is False


@settings(deadline=None)
@example(f"{int(NOW) + 60}.é")
@given(st.one_of(st.text(), _shaped_tokens))
def test_random_strings_never_verify_and_never_raise(token: str) -> None:
    assert StreamTokens(SECRET, ttl=TTL).verify(token, "run-1", now=NOW) is False
