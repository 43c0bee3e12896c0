"""The gateway's own OpenAPI schema, fuzzed by schemathesis against a real gateway: for
every JSON operation, generated requests (valid and invalid) never get a 5xx, and every
answer is one the schema documents (status code, content type, body)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support import RunningGateway

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = 25  # per operation and generation mode: the whole module stays well under 60 s
REQUEST_TIMEOUT = 10.0  # a case that hangs fails instead of stalling the suite

# Every operation of the schema. The streaming ones are fuzzed too, bounded: POST /v1/runs
# is asked for JSON (its SSE face is covered by tests/reliability/test_hostile_input.py), a
# generated run id never names a run (so /events answers 404 at once), and a stream of a
# demo run ends by itself within the request timeout.
OPERATIONS = [
    ("POST", "/v1/runs"),
    ("GET", "/v1/runs/{run_id}"),
    ("GET", "/v1/runs/{run_id}/events"),
    ("POST", "/v1/runs/{run_id}/cancel"),
    ("POST", "/v1/runs/{run_id}/approvals/{call_id}"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model_id}"),
    ("GET", "/v1/tools"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/ag-ui"),
    ("POST", "/v1/responses"),
    ("GET", "/v1/responses/{response_id}"),
    ("DELETE", "/v1/responses/{response_id}"),
    ("POST", "/v1/responses/{response_id}/cancel"),
    ("GET", "/v1/responses/{response_id}/input_items"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
    ("POST", "/v1/ai-sdk/chat"),
    ("GET", "/v1/ai-sdk/chat/{chat_id}/stream"),
    ("POST", "/v1/ai-sdk/chat/{chat_id}/stop"),
]


@pytest.fixture(scope="module")
def schema(module_gateway: RunningGateway) -> Any:
    """The schema as the running gateway serves it at /openapi.json."""
    raw = httpx.get(f"{module_gateway.base_url}/openapi.json", timeout=REQUEST_TIMEOUT).json()
    return schemathesis.openapi.from_dict(raw)


def _operations(schema: Any) -> set[tuple[str, str]]:
    return {
        (result.ok().method.upper(), result.ok().path) for result in schema.get_all_operations()
    }


def test_every_operation_of_the_schema_is_fuzzed(schema: Any) -> None:
    assert _operations(schema) == set(OPERATIONS)


def _bounded(case: Case) -> None:
    """Keep a case finite: POST /v1/runs answers with JSON, not with its event stream."""
    if case.operation.path == "/v1/runs" and case.method.upper() == "POST":
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "accept"}
        case.headers = {**headers, "accept": "application/json"}


# Operations with an input that can be invalid (a body, a bounded query or header): they are
# also fuzzed with invalid requests. A bare path string or no input has no invalid form.
WITH_INVALID_FORMS = [
    ("POST", "/v1/runs"),
    ("GET", "/v1/runs/{run_id}/events"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/ag-ui"),
    ("POST", "/v1/responses"),
    ("GET", "/v1/responses/{response_id}/input_items"),
    ("GET", "/v1/models"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
    ("POST", "/v1/ai-sdk/chat"),
    ("GET", "/v1/ai-sdk/chat/{chat_id}/stream"),
    ("POST", "/v1/ai-sdk/chat/{chat_id}/stop"),
]
CASES = [
    *[pytest.param(m, p, GenerationMode.POSITIVE, id=f"valid {m} {p}") for m, p in OPERATIONS],
    *[
        pytest.param(m, p, GenerationMode.NEGATIVE, id=f"invalid {m} {p}")
        for m, p in WITH_INVALID_FORMS
    ],
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_generated_requests_get_no_5xx_and_documented_answers(
    schema: Any, module_gateway: RunningGateway, method: str, path: str, mode: GenerationMode
) -> None:
    operation = schema[path][method]
    session = requests.Session()

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases on every run: a failure reproduces
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: Case) -> None:
        _bounded(case)
        response = case.call(
            base_url=module_gateway.base_url, session=session, timeout=REQUEST_TIMEOUT
        )
        case.validate_response(response, checks=CHECKS)

    try:
        fuzz()
    finally:
        session.close()
