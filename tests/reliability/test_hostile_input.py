"""Hostile input against a real gateway: huge, deeply nested, not-UTF-8 and lying bodies, huge
headers, thousands of items in a run spec, unicode and control characters in ids.

Every answer over HTTP is a clear 4xx JSON error (``{"error": {"code", "message", ...}}``),
never a 5xx, a hang or a dropped connection; over the WebSocket it is an error message and
the session goes on (it still answers ``ping``). One gateway serves the whole module: after
it, the gateway has no task left over and still serves a normal run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.support import RunningGateway, agent_spec, run_events

TIMEOUT = 10.0  # no answer within this is a hang, and fails the test
RUN_ENDPOINTS = ["/v1/runs", "/v1/chat/completions", "/v1/ag-ui"]
DEEP = 10_000  # levels of nesting: past any parser's recursion limit
MIDDLING = 500  # levels: through the JSON parsers, past the event encoder's limit (255)


@pytest.fixture(scope="module")
def gateway(module_gateway: RunningGateway) -> RunningGateway:
    return module_gateway


@pytest.fixture(scope="module")
def baseline_tasks(gateway: RunningGateway) -> int:
    """The server's task count before any hostile input (taken by the module's first test)."""
    return asyncio.run(gateway.task_count())


@pytest.fixture(autouse=True)
def _baseline_first(baseline_tasks: int) -> None:
    """Every test depends on the baseline, so it is taken before the first one runs."""


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=TIMEOUT) as client:
        yield client


@pytest.fixture(scope="module")
def finished_run_id(gateway: RunningGateway) -> str:
    """A run that exists and has ended: hostile headers reach the handlers that read it."""

    async def start() -> str:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=TIMEOUT) as client:
            response = await client.post("/v1/runs", json=agent_spec("hello", []))
            assert response.status_code == 201
            run_id: str = response.json()["run_id"]
        snapshot = await gateway.wait_run(run_id)
        assert snapshot["status"] == "completed"
        return run_id

    return asyncio.run(start())


def error_of(response: httpx.Response, status: int | None = None) -> dict[str, Any]:
    """The error of a clear 4xx JSON answer (of ``status`` if given)."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    if status is not None:
        assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert isinstance(error["code"], str)
    assert error["code"]
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


def json_headers(accept: str = "application/json") -> dict[str, str]:
    return {"content-type": "application/json", "accept": accept}


def agui_input(**fields: Any) -> dict[str, Any]:
    return {
        "threadId": "thread_1",
        "runId": "run_1",
        "messages": [{"id": "m1", "role": "user", "content": "hi"}],
        "tools": [],
        "context": [],
        "forwardedProps": {"model": "demo"},
        **fields,
    }


def valid_body(endpoint: str) -> dict[str, Any]:
    """A body each run endpoint accepts; the tests below break it in one way each."""
    if endpoint == "/v1/ag-ui":
        return agui_input()
    return agent_spec("hi", [])


def with_raw_field(body: dict[str, Any], field: str, raw: bytes) -> bytes:
    """``body`` as JSON with ``field`` set to the raw JSON text ``raw`` (which need not be
    something ``json.dumps`` would write)."""
    text = json.dumps({**body, field: "@@RAW@@"}).encode()
    return text.replace(b'"@@RAW@@"', raw)


def nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


async def runs_retained(gateway: RunningGateway) -> int:
    """How many runs the gateway holds (read on its own loop): a new run adds one."""

    async def count() -> int:
        retained: int = gateway.state.manager.statistics().retained_runs
        return retained

    return await gateway.call(count())


async def wait_runs_started_by(response: httpx.Response, gateway: RunningGateway) -> None:
    """An accepted run (201) is waited for, so it does not outlive its test."""
    if response.status_code == 201:
        await gateway.wait_run(response.json()["run_id"])


# -- huge bodies -----------------------------------------------------------------------------


async def test_a_body_of_exactly_max_body_bytes_is_accepted(
    client: httpx.AsyncClient, gateway: RunningGateway
) -> None:
    limit = gateway.state.settings.max_body_bytes
    body = json.dumps(agent_spec("", [])).encode()
    padding = limit - len(body)
    body = json.dumps(agent_spec("x" * padding, [])).encode()
    assert len(body) == limit
    response = await client.post("/v1/runs", content=body, headers=json_headers())
    assert response.status_code == 201, response.text[:300]
    await wait_runs_started_by(response, gateway)


@pytest.mark.parametrize("endpoint", RUN_ENDPOINTS)
@pytest.mark.parametrize("excess", [1, 3 * 1024 * 1024], ids=["one byte over", "4x over"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_body_past_max_body_bytes_is_a_413(
    client: httpx.AsyncClient, gateway: RunningGateway, endpoint: str, excess: int, framing: str
) -> None:
    size = gateway.state.settings.max_body_bytes + excess
    body = b"[" + b" " * (size - 2) + b"]"

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    content: bytes | AsyncIterator[bytes] = body if framing == "content-length" else chunks()
    response = await client.post(endpoint, content=content, headers=json_headers())
    assert error_of(response, 413)["code"] == "body_too_large"


# -- deeply nested JSON ----------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", RUN_ENDPOINTS)
@pytest.mark.parametrize(
    "body",
    [
        nested(DEEP),
        b"[" * DEEP,
        b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    ],
    ids=["closed arrays", "unclosed arrays", "objects"],
)
@pytest.mark.parametrize("accept", ["application/json", "text/event-stream"])
async def test_a_body_nested_past_the_parser_is_a_400_invalid_json(
    client: httpx.AsyncClient, endpoint: str, body: bytes, accept: str
) -> None:
    response = await client.post(endpoint, content=body, headers=json_headers(accept))
    assert error_of(response, 400)["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("endpoint", "field"),
    [
        ("/v1/runs", "metadata"),
        ("/v1/runs", "options"),
        ("/v1/chat/completions", "response_format"),
        ("/v1/ag-ui", "state"),
        ("/v1/ag-ui", "forwardedProps"),
    ],
)
@pytest.mark.parametrize("levels", [MIDDLING, DEEP])
async def test_a_field_nested_too_deeply_is_a_400_and_starts_no_run(
    client: httpx.AsyncClient, gateway: RunningGateway, endpoint: str, field: str, levels: int
) -> None:
    value = b'{"seed":' * levels + b"1" + b"}" * levels
    content = with_raw_field(valid_body(endpoint), field, value)
    runs_before = await runs_retained(gateway)
    response = await client.post(endpoint, content=content, headers=json_headers())
    error = error_of(response, 400)
    assert error["code"] in ("invalid_json", "invalid_request")
    assert await runs_retained(gateway) == runs_before


async def test_a_message_nested_too_deeply_is_a_400_naming_the_depth(
    client: httpx.AsyncClient,
) -> None:
    part = b'{"type":"text","text":"hi","extra":' + nested(MIDDLING) + b"}"
    content = b'{"model":"demo","messages":[{"role":"user","content":[' + part + b"]}]}"
    response = await client.post("/v1/runs", content=content, headers=json_headers())
    error = error_of(response, 400)
    assert error["code"] == "invalid_request"
    assert "nested deeper than" in error["message"]


# -- invalid UTF-8 and unicode that is not text ----------------------------------------------


@pytest.mark.parametrize("endpoint", RUN_ENDPOINTS)
@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "\xff\xfe"}',
        b"\xff\xfe" + json.dumps(agent_spec("hi", [])).encode(),
        b'{"model": "demo", "messages": [{"role": "user", "content": "\xc0\xaf"}]}',
        b'{"model": "demo", "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}',
    ],
    ids=["invalid bytes", "a UTF-16 byte order mark", "overlong encoding", "encoded surrogate"],
)
async def test_a_body_that_is_not_utf8_is_a_400(
    client: httpx.AsyncClient, endpoint: str, body: bytes
) -> None:
    response = await client.post(endpoint, content=body, headers=json_headers())
    assert error_of(response, 400)["code"] in ("invalid_json", "invalid_request")


@pytest.mark.parametrize(
    ("endpoint", "field", "value"),
    [
        ("/v1/runs", "metadata", b'{"note": "\\ud800"}'),
        ("/v1/runs", "metadata", b'{"\\udfff": 1}'),
        ("/v1/runs", "messages", b'[{"role": "user", "content": "hi \\ud83d"}]'),
        ("/v1/chat/completions", "messages", b'[{"role": "user", "content": "\\ud800"}]'),
        ("/v1/ag-ui", "threadId", b'"\\ud800"'),
    ],
    ids=["metadata value", "metadata key", "message", "chat message", "ag-ui thread id"],
)
async def test_a_lone_surrogate_escape_is_a_400_and_starts_no_run(
    client: httpx.AsyncClient, gateway: RunningGateway, endpoint: str, field: str, value: bytes
) -> None:
    runs_before = await runs_retained(gateway)
    content = with_raw_field(valid_body(endpoint), field, value)
    response = await client.post(endpoint, content=content, headers=json_headers())
    error = error_of(response, 400)
    # Said by the gateway, or by pydantic for a field with a length limit.
    assert "surrogate" in error["message"] or "unicode string" in error["message"]
    assert await runs_retained(gateway) == runs_before


# -- control characters ----------------------------------------------------------------------


async def test_a_raw_control_character_inside_a_json_string_is_a_400_invalid_json(
    client: httpx.AsyncClient,
) -> None:
    body = b'{"model": "demo", "messages": [{"role": "user", "content": "a\x00b\x1bc"}]}'
    response = await client.post("/v1/runs", content=body, headers=json_headers())
    assert error_of(response, 400)["code"] == "invalid_json"


async def test_escaped_control_characters_are_text_and_the_run_completes(
    client: httpx.AsyncClient, gateway: RunningGateway
) -> None:
    spec = agent_spec("a\u0000b\u001bc\u202ed\u200b\ufeff", [], metadata={"k\u0000": "\u0007"})
    response = await client.post("/v1/runs", json=spec)
    assert response.status_code == 201
    snapshot = await gateway.wait_run(response.json()["run_id"])
    assert snapshot["status"] == "completed"


@pytest.mark.parametrize("model", ["demo\u0000", "\u202edemo", "demo\n", "🙂"])
async def test_a_model_name_with_control_or_unicode_characters_is_unknown(
    client: httpx.AsyncClient, model: str
) -> None:
    response = await client.post("/v1/runs", json={**agent_spec("hi", []), "model": model})
    assert error_of(response, 400)["code"] in ("invalid_request", "model_not_found")


# -- very long headers -----------------------------------------------------------------------

LONG = "a" * 65_536


@pytest.mark.parametrize("header", ["authorization", "x-api-key", "cookie", "user-agent"])
async def test_a_64_kib_header_does_not_break_reading_a_run(
    client: httpx.AsyncClient, finished_run_id: str, header: str
) -> None:
    value = f"Bearer {LONG}" if header == "authorization" else LONG
    response = await client.get(f"/v1/runs/{finished_run_id}", headers={header: value})
    # The gateway runs open (no API keys): a key is not needed, and a bogus one is ignored.
    assert response.status_code == 200, response.text[:300]
    assert response.json()["status"] == "completed"


async def test_a_64_kib_request_id_is_replaced_by_one_of_the_gateways(
    client: httpx.AsyncClient, finished_run_id: str
) -> None:
    response = await client.get(f"/v1/runs/{finished_run_id}", headers={"x-request-id": LONG})
    assert response.status_code == 200
    assert 0 < len(response.headers["x-request-id"]) <= 128


@pytest.mark.parametrize(
    "last_event_id",
    [LONG, "9" * 65_536, "1" + "\u00a0" * 100, "-1", "1e3", "0x10"],
    ids=["letters", "65536 digits", "nbsp", "negative", "exponent", "hex"],
)
async def test_a_hostile_last_event_id_is_a_400(
    client: httpx.AsyncClient, finished_run_id: str, last_event_id: str
) -> None:
    response = await client.get(
        f"/v1/runs/{finished_run_id}/events",
        headers={"last-event-id": last_event_id.encode()},
    )
    assert error_of(response, 400)["code"] == "invalid_request"


async def test_a_4000_digit_last_event_id_is_past_a_finished_run_s_end_a_204(
    client: httpx.AsyncClient, finished_run_id: str
) -> None:
    """A whole number, if an absurd one: past the terminal event, nothing more comes."""
    response = await client.get(
        f"/v1/runs/{finished_run_id}/events", headers={"last-event-id": "9" * 4_000}
    )
    assert response.status_code == 204
    assert response.content == b""


async def test_a_32_kib_stream_token_is_a_401(
    client: httpx.AsyncClient, finished_run_id: str
) -> None:
    token = "1." + "a" * 32_768  # a URL of 64 KiB is past what httpx sends
    response = await client.get(f"/v1/runs/{finished_run_id}/events", params={"token": token})
    assert error_of(response, 401)["code"] == "unauthorized"


async def test_two_thousand_headers_do_not_break_reading_a_run(
    client: httpx.AsyncClient, finished_run_id: str
) -> None:
    headers = [(f"x-hostile-{i}", "v") for i in range(2_000)]
    response = await client.get(f"/v1/runs/{finished_run_id}", headers=headers)
    assert response.status_code == 200


# -- thousands of items in one run spec ------------------------------------------------------


def many_messages(count: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"message {i}"} for i in range(count)]


@pytest.mark.parametrize("count", [1_001, 5_000])
@pytest.mark.parametrize("endpoint", RUN_ENDPOINTS)
async def test_more_messages_than_max_messages_per_run_is_a_413(
    client: httpx.AsyncClient, gateway: RunningGateway, endpoint: str, count: int
) -> None:
    assert count > gateway.state.settings.max_messages_per_run
    if endpoint == "/v1/ag-ui":
        messages = [{"id": f"m{i}", **m} for i, m in enumerate(many_messages(count))]
        body = agui_input(messages=messages)
    else:
        body = {"model": "demo", "messages": many_messages(count)}
    response = await client.post(endpoint, json=body)
    error = error_of(response, 413)
    assert error["code"] == "body_too_large"
    assert "messages" in error["message"]


async def test_a_parallel_run_of_thousands_of_model_calls_past_the_message_limit_is_a_413(
    client: httpx.AsyncClient,
) -> None:
    spec = {"parallel": [{"model": "demo", "messages": many_messages(1)}] * 1_001}
    response = await client.post("/v1/runs", json=spec)
    assert error_of(response, 413)["code"] == "body_too_large"


@pytest.mark.parametrize(
    "spec",
    [
        agent_spec("hi", [f"tool_{i}" for i in range(5_000)]),
        agent_spec("what time is it?", ["clock"] * 5_000),
        {
            **agent_spec("hi", []),
            "client_tools": [{"name": f"t{i}"} for i in range(5_000)],
            "client_tool_mode": "return",
        },
    ],
    ids=["5000 unknown tools", "one server tool 5000 times", "5000 client tools"],
)
async def test_thousands_of_tools_within_the_body_limit_are_a_413_naming_the_limit(
    client: httpx.AsyncClient, gateway: RunningGateway, spec: dict[str, Any]
) -> None:
    assert gateway.state.settings.max_tools_per_run < 5_000
    response = await client.post("/v1/runs", json=spec)
    assert "max_tools_per_run" in error_of(response, 413)["message"]


async def test_a_parallel_run_of_thousands_of_tool_calls_is_a_413_naming_the_limit(
    client: httpx.AsyncClient, gateway: RunningGateway
) -> None:
    count = 5_000
    assert count > gateway.state.settings.max_parallel_items
    response = await client.post("/v1/runs", json={"parallel": [{"tool": "clock"}] * count})
    assert "max_parallel_items" in error_of(response, 413)["message"]


# -- unicode and control characters in ids ---------------------------------------------------

HOSTILE_RUN_IDS = {
    "emoji": "%F0%9F%99%82",
    "right-to-left override": "run_%E2%80%AE123",
    "arabic": "%D8%B4%D8%BA%D9%84",
    "NUL": "%00",
    "newline": "run%0D%0Ax",
    "invalid UTF-8": "%FF%FE",
    "encoded surrogate": "%ED%A0%80",
    "overlong slash": "%C0%AF",
    "10k characters": "r" * 10_000,
    "quote and angle": "%22%3Cscript%3E",
}
ID_PATHS = [
    ("GET", "/v1/runs/{id}"),
    ("GET", "/v1/runs/{id}/events"),
    ("POST", "/v1/runs/{id}/cancel"),
]


@pytest.mark.parametrize(("method", "template"), ID_PATHS, ids=[p for _, p in ID_PATHS])
@pytest.mark.parametrize("run_id", HOSTILE_RUN_IDS.values(), ids=HOSTILE_RUN_IDS.keys())
async def test_a_hostile_run_id_in_a_path_is_a_json_404(
    client: httpx.AsyncClient, method: str, template: str, run_id: str
) -> None:
    url = httpx.URL(client.base_url.join(template.replace("{id}", run_id)))
    response = await client.request(method, url)
    assert error_of(response, 404)["code"] == "not_found"


# -- Content-Type lies, empty bodies, JSON that is not an object -----------------------------

SPEC_TEXT = json.dumps(agent_spec("hi", []))


@pytest.mark.parametrize("endpoint", RUN_ENDPOINTS)
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", b"model=demo&messages=hi"),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="model"\r\n\r\ndemo\r\n--x--\r\n',
        ),
        ("text/plain", SPEC_TEXT.encode()),
        ("application/xml", b"<run><model>demo</model></run>"),
        ("application/json", b"model=demo"),
    ],
    ids=["form", "multipart", "JSON as text/plain", "xml", "form as JSON"],
)
async def test_a_body_that_is_not_what_its_content_type_says_is_a_400(
    client: httpx.AsyncClient, endpoint: str, content_type: str, body: bytes
) -> None:
    response = await client.post(endpoint, content=body, headers={"content-type": content_type})
    assert error_of(response, 400)["code"] in ("invalid_json", "invalid_request")


@pytest.mark.parametrize("endpoint", RUN_ENDPOINTS)
@pytest.mark.parametrize(
    "body",
    [b"", b"   ", b"null", b"0", b"-1.5e308", b'"a run"', b"true", b"[]", b"{}", b"[{}]"],
)
@pytest.mark.parametrize("accept", ["application/json", "text/event-stream"])
async def test_an_empty_body_or_json_that_is_no_run_is_a_400(
    client: httpx.AsyncClient, endpoint: str, body: bytes, accept: str
) -> None:
    response = await client.post(endpoint, content=body, headers=json_headers(accept))
    assert error_of(response, 400)["code"] in ("invalid_json", "invalid_request")


# -- the WebSocket ---------------------------------------------------------------------------


@pytest.fixture
async def ws(gateway: RunningGateway) -> AsyncIterator[ClientConnection]:
    async with websockets.connect(
        gateway.ws_url, max_size=None, open_timeout=TIMEOUT, close_timeout=TIMEOUT
    ) as ws:
        yield ws


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.recv(), TIMEOUT)
    value: dict[str, Any] = json.loads(message)
    return value


async def answered_then_pinged(ws: ClientConnection, message: str | bytes) -> dict[str, Any]:
    """Send ``message``; return the gateway's answer to it, once the session has also
    answered a ping after it."""
    await ws.send(message)
    answer = await receive(ws)
    await ws.send(json.dumps({"type": "ping", "id": "after"}))
    assert await receive(ws) == {"type": "ack", "id": "after", "command": "ping"}
    return answer


def run_start(run: dict[str, Any], command_id: Any = 1) -> str:
    return json.dumps({"type": "run.start", "id": command_id, "run": run})


WS_BAD_MESSAGES = {
    "closed arrays": ("[" * DEEP + "]" * DEEP, "invalid_json"),
    "unclosed arrays": ("[" * DEEP, "invalid_json"),
    "objects": ('{"a":' * DEEP + "1" + "}" * DEEP, "invalid_json"),
    "empty": ("", "invalid_json"),
    "whitespace": (" \n\t", "invalid_json"),
    "null": ("null", "invalid_command"),
    "number": ("42", "invalid_command"),
    "string": ('"ping"', "invalid_command"),
    "array": ('[{"type": "ping"}]', "invalid_command"),
    "raw control character": ('{"type": "ping", "id": "a\x00b"}', "invalid_json"),
    "lone surrogate escape": ('{"type": "ping", "id": "\\ud800"}', "invalid_json"),
    "unknown type": ('{"type": "\u202eping"}', "unknown_command"),
    "deep run metadata": (
        run_start({**agent_spec("hi", []), "metadata": {"a": "@@"}}).replace(
            '"@@"', "[" * MIDDLING + "]" * MIDDLING
        ),
        "invalid_request",
    ),
    "deep run message": (
        run_start(agent_spec("hi", [])).replace(
            '"content": "hi"', '"content": [{"x": ' + "[" * MIDDLING + "]" * MIDDLING + "}]"
        ),
        "invalid_request",
    ),
    "5000 messages": (
        run_start({"model": "demo", "messages": many_messages(5_000)}),
        "body_too_large",
    ),
    "client tools awaited, 5000 of them": (
        run_start({**agent_spec("hi", []), "client_tools": [{"name": "t"}] * 5_000}),
        "invalid_command",
    ),
}


@pytest.mark.parametrize(("message", "code"), WS_BAD_MESSAGES.values(), ids=WS_BAD_MESSAGES.keys())
async def test_a_hostile_ws_message_gets_an_error_and_the_session_goes_on(
    ws: ClientConnection, message: str, code: str
) -> None:
    answer = await answered_then_pinged(ws, message)
    assert answer["type"] == "error"
    assert answer["code"] == code, answer
    assert answer["message"]


async def test_a_ws_message_past_the_size_limit_is_refused_and_the_session_goes_on(
    ws: ClientConnection, gateway: RunningGateway
) -> None:
    size = gateway.state.settings.ws_max_message_bytes + 1
    message = json.dumps({"type": "ping", "id": "x" * size})
    answer = await answered_then_pinged(ws, message)
    assert answer["code"] == "message_too_large"


async def test_a_ws_binary_frame_is_refused_and_the_session_goes_on(
    ws: ClientConnection,
) -> None:
    answer = await answered_then_pinged(ws, b'{"type": "ping", "id": 1}')
    assert answer["code"] == "binary_not_supported"


@pytest.mark.parametrize(
    "command_id", ["🙂", "\u202eevil", "\u0000", "شغل", "x" * 10_000, -(2**53), 2**62]
)
async def test_a_unicode_or_extreme_command_id_is_echoed_as_sent(
    ws: ClientConnection, command_id: str | int
) -> None:
    answer = await answered_then_pinged(ws, json.dumps({"type": "ping", "id": command_id}))
    assert answer == {"type": "ack", "id": command_id, "command": "ping"}


@pytest.mark.parametrize("run_id", ["🙂", "run_\u202e1", "\u0000", "\n", "شغل", "r" * 10_000])
@pytest.mark.parametrize(
    ("command", "code"),
    [("subscribe", "not_found"), ("run.cancel", "not_found"), ("unsubscribe", "invalid_request")],
)
async def test_a_unicode_run_id_in_a_ws_command_is_an_error_and_the_session_goes_on(
    ws: ClientConnection, run_id: str, command: str, code: str
) -> None:
    answer = await answered_then_pinged(
        ws, json.dumps({"type": command, "id": "c", "run_id": run_id})
    )
    assert answer["type"] == "error"
    assert answer["id"] == "c"
    assert answer["code"] == code


async def test_a_tool_result_nested_too_deeply_is_an_error_and_the_session_goes_on(
    ws: ClientConnection,
) -> None:
    spec = {
        **agent_spec("call get_location", []),
        "client_tools": [{"name": "get_location"}],
    }
    await ws.send(run_start(spec, "start"))
    ack = await receive(ws)
    assert ack["command"] == "run.start"
    run_id = ack["run_id"]
    deep = "[" * MIDDLING + "]" * MIDDLING
    await ws.send(
        f'{{"type": "tool.result", "id": "deep", "run_id": "{run_id}", "call_id": "call_1", '
        f'"output": {deep}}}'
    )
    while (answer := await receive(ws)).get("id") != "deep":
        pass  # the run's events
    assert answer["type"] == "error"
    assert answer["code"] == "invalid_request"
    await ws.send(json.dumps({"type": "run.cancel", "id": "cancel", "run_id": run_id}))
    while (answer := await receive(ws)).get("type") != "run.cancelled":
        pass


async def test_a_ws_text_frame_that_is_not_utf8_closes_the_session_with_1007(
    gateway: RunningGateway,
) -> None:
    """RFC 6455 (8.1): a text frame that is not UTF-8 fails the connection, with 1007. That
    is the answer due; the gateway goes on serving other sessions."""
    async with websockets.connect(gateway.ws_url, open_timeout=TIMEOUT) as ws:
        await ws.send(b'{"type": "ping", "id": "\xff\xfe"}', text=True)
        with pytest.raises(websockets.ConnectionClosedError) as closed:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1007
    async with websockets.connect(gateway.ws_url, open_timeout=TIMEOUT) as ws:
        await ws.send(json.dumps({"type": "ping", "id": 1}))
        assert await receive(ws) == {"type": "ack", "id": 1, "command": "ping"}


# -- afterwards ------------------------------------------------------------------------------


async def test_after_all_of_it_no_task_is_left_and_a_normal_run_completes(
    gateway: RunningGateway, baseline_tasks: int
) -> None:
    """Runs last in the module (pytest keeps the file's order)."""
    assert await gateway.wait_task_count(baseline_tasks) <= baseline_tasks
    events = await run_events(gateway, agent_spec("What is 6 * 7?", ["calculator"]))
    assert events[-1]["type"] == "run.completed"
    assert "42" in events[-1]["output"]
    assert await gateway.wait_task_count(baseline_tasks) <= baseline_tasks
