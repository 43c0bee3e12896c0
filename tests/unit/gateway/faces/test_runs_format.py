"""``?format=`` on ``GET /v1/runs/{id}/events`` (``gateway/faces/runs.py``): it takes exactly
the dialect registry's names, and the OpenAPI schema lists them as an enum."""

from __future__ import annotations

import typing

from gateway.app import create_app
from gateway.faces.runs import run_events
from streams.dialects.registry import DIALECTS, DialectName


def format_enum() -> list[str]:
    operation = create_app().openapi()["paths"]["/v1/runs/{run_id}/events"]["get"]
    (parameter,) = [p for p in operation["parameters"] if p["name"] == "format"]
    enum: list[str] = parameter["schema"]["enum"]
    return enum


def test_the_format_parameter_accepts_exactly_the_registered_names() -> None:
    annotation = typing.get_type_hints(run_events, include_extras=True)["format"]

    assert typing.get_args(typing.get_args(annotation)[0]) == tuple(DIALECTS)
    assert typing.get_args(DialectName) == tuple(DIALECTS)


def test_the_openapi_schema_lists_the_registered_names_as_the_format_enum() -> None:
    assert format_enum() == list(DIALECTS)
