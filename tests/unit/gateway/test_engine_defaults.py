"""Each setting that configures an engine field has that field's default
(``gateway/engine_defaults.py``): the two cannot drift apart."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from gateway.engine_defaults import engine_default
from gateway.limits.quotas import MemoryQuotas
from gateway.settings import RouteSettings, Settings
from gateway.transport.connections import ConnectionPolicy
from streams.approvals import ApprovalPolicy
from streams.builtin.demo import DemoModel
from streams.builtin.tools import builtin_tools
from streams.cluster.backend import ClusterSettings
from streams.connection import Connection
from streams.log import Retention
from streams.runs.limits import RunLimits
from streams.upstream.route import RetryPolicy, Route, Timeouts

# Setting → the engine field (or keyword parameter) it configures.
MIRRORED: dict[str, tuple[Any, str]] = {
    "max_tool_arguments_bytes": (RunLimits, "max_tool_arguments_bytes"),
    "max_tool_calls_per_step": (RunLimits, "max_tool_calls_per_step"),
    "max_step_text_bytes": (RunLimits, "max_step_text_bytes"),
    "max_active_runs": (RunLimits, "max_active_runs"),
    "tool_timeout": (RunLimits, "tool_timeout"),
    "client_tool_timeout": (RunLimits, "client_tool_timeout"),
    "retention_max_events": (Retention, "max_events"),
    "retention_max_bytes": (Retention, "max_bytes"),
    "retention_ttl": (Retention, "ttl"),
    "max_active_runs_per_key": (MemoryQuotas, "max_active_runs"),
    "max_producers_per_connection": (Connection, "max_producers"),
    "max_runs_per_connection": (Connection, "max_runs"),
    "max_connections": (ConnectionPolicy, "max_connections"),
    "first_byte_timeout": (ConnectionPolicy, "first_byte_timeout"),
    "header_timeout": (ConnectionPolicy, "header_timeout"),
    "body_timeout": (ConnectionPolicy, "body_timeout"),
    "keep_alive_timeout": (ConnectionPolicy, "keep_alive_timeout"),
    "close_linger": (ConnectionPolicy, "close_linger"),
    "ws_close_timeout": (ConnectionPolicy, "ws_close_timeout"),
    "redis_prefix": (ClusterSettings, "prefix"),
    "lease_ttl": (ClusterSettings, "lease_ttl"),
    "redis_outage_grace": (ClusterSettings, "outage_grace"),
    "redis_timeout": (ClusterSettings, "timeout"),
    "redis_max_blocking_reads": (ClusterSettings, "max_blocking_reads"),
    "demo_token_delay": (DemoModel, "token_delay"),
    "countdown_interval": (builtin_tools, "countdown_interval"),
    "approval_timeout": (ApprovalPolicy, "timeout"),
    "approval_on_timeout": (ApprovalPolicy, "on_timeout"),
}
ROUTE_MIRRORED: dict[str, tuple[Any, str]] = {
    "connect_timeout": (Timeouts, "connect"),
    "first_token_timeout": (Timeouts, "first_token"),
    "idle_timeout": (Timeouts, "idle"),
    "total_timeout": (Timeouts, "total"),
    "max_attempts": (RetryPolicy, "max_attempts"),
    "retry_base_delay": (RetryPolicy, "base_delay"),
    "retry_max_delay": (RetryPolicy, "max_delay"),
    "max_in_flight": (Route, "max_in_flight"),
    "failure_threshold": (Route, "failure_threshold"),
    "reset_timeout": (Route, "reset_timeout"),
    "max_tokens": (Route, "max_tokens"),
    "max_sse_line_bytes": (Route, "max_sse_line_bytes"),
    "max_sse_event_bytes": (Route, "max_sse_event_bytes"),
}


@pytest.mark.parametrize(("setting", "engine"), MIRRORED.items())
def test_a_setting_has_its_engine_field_s_default(setting: str, engine: tuple[Any, str]) -> None:
    assert Settings.model_fields[setting].default == engine_default(*engine)


@pytest.mark.parametrize(("setting", "engine"), ROUTE_MIRRORED.items())
def test_a_route_setting_has_its_engine_field_s_default(
    setting: str, engine: tuple[Any, str]
) -> None:
    assert RouteSettings.model_fields[setting].default == engine_default(*engine)


def test_a_route_of_default_settings_is_the_engine_s_default_route() -> None:
    route = RouteSettings(base_url="http://upstream/v1", model="m").to_route("r", {})
    assert route == Route("r", "openai", "http://upstream/v1", "m")


def test_every_engine_field_of_run_limits_has_a_setting() -> None:
    mirrored = {field for owner, field in MIRRORED.values() if owner is RunLimits}
    # Made of several settings each (retention_*, approval_*: mirrored above).
    fields = {f.name for f in dataclasses.fields(RunLimits)} - {"retention", "approvals"}
    assert fields <= mirrored


def test_the_default_of_a_dataclass_field() -> None:
    assert engine_default(Timeouts, "total") == Timeouts().total


def test_the_default_of_a_keyword_parameter() -> None:
    assert engine_default(builtin_tools, "countdown_interval") == 0.5


@pytest.mark.parametrize(
    ("owner", "name"),
    [(Route, "timeouts"), (Route, "no_such_field"), (MemoryQuotas, "runs_per_minute")],
)
def test_no_plain_default_is_a_lookup_error(owner: Any, name: str) -> None:
    with pytest.raises(LookupError):
        engine_default(owner, name)
