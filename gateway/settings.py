"""Gateway settings: ``GATEWAY_*`` environment variables, an optional TOML config file
(``GATEWAY_CONFIG_FILE``), and command-line flags (which win)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gateway.auth import KeyRing
from gateway.engine_defaults import engine_default
from gateway.limits.quotas import MemoryQuotas
from gateway.transport.connections import ConnectionPolicy
from gateway.transport.hosts import allowed_host_pattern
from streams.approvals import ApprovalPolicy
from streams.builtin.demo import DemoModel
from streams.builtin.tools import builtin_tools
from streams.cluster.backend import ClusterSettings
from streams.cluster.client import validate_store_url
from streams.connection import Connection
from streams.log import Retention
from streams.runs.limits import RunLimits
from streams.spec import FailoverPolicy
from streams.upstream.group import MAX_GROUP_ROUTES, ModelGroup
from streams.upstream.registry import DEFAULT_PROVIDER, PROVIDERS, known_providers
from streams.upstream.route import RetryPolicy, Route, Timeouts

__all__ = ["ModelGroupSettings", "RouteSettings", "Settings"]


class RouteSettings(BaseModel):
    """One model route: the name clients use → an upstream provider and model."""

    model_config = ConfigDict(extra="forbid")

    provider: str = Field(
        DEFAULT_PROVIDER,
        description="The upstream's API: a name in streams.upstream.registry.PROVIDERS",
        json_schema_extra={"enum": list(PROVIDERS)},
    )
    base_url: str = Field(description="e.g. https://api.openai.com/v1, http://127.0.0.1:11434/v1")
    model: str = Field(description="The upstream's model id")
    api_key_env: str | None = Field(
        default=None, description="Name of the environment variable holding the API key"
    )
    connect_timeout: float = Field(engine_default(Timeouts, "connect"), gt=0)
    first_token_timeout: float = Field(engine_default(Timeouts, "first_token"), gt=0)
    idle_timeout: float = Field(engine_default(Timeouts, "idle"), gt=0)
    total_timeout: float = Field(engine_default(Timeouts, "total"), gt=0)
    max_attempts: int = Field(engine_default(RetryPolicy, "max_attempts"), ge=1, le=10)
    retry_base_delay: float = Field(engine_default(RetryPolicy, "base_delay"), ge=0)
    retry_max_delay: float = Field(engine_default(RetryPolicy, "max_delay"), ge=0)
    max_in_flight: int = Field(engine_default(Route, "max_in_flight"), ge=1)
    failure_threshold: int = Field(engine_default(Route, "failure_threshold"), ge=1)
    reset_timeout: float = Field(engine_default(Route, "reset_timeout"), gt=0)
    max_tokens: int = Field(engine_default(Route, "max_tokens"), ge=1)
    headers: dict[str, str] = Field(default_factory=dict)
    max_sse_line_bytes: int = Field(
        engine_default(Route, "max_sse_line_bytes"),
        ge=1024,
        description="A longer line in the upstream's event stream fails the step "
        "(upstream_protocol)",
    )
    max_sse_event_bytes: int = Field(
        engine_default(Route, "max_sse_event_bytes"),
        ge=1024,
        description="A message with more data in the upstream's event stream fails the step "
        "(upstream_protocol)",
    )

    continuation: str = Field(
        "auto",
        description="How a model group with the 'continue' policy asks this route to go on "
        "with a partial answer: 'auto' (Anthropic: 'prefill'; OpenAI-compatible: 'none'), "
        "'prefill' (Anthropic), 'continue_final_message' (vLLM and other OpenAI-compatible "
        "servers that take it) or 'none' (the group restarts the step instead)",
    )

    @model_validator(mode="after")
    def _provider_continues(self) -> RouteSettings:
        known = ("auto", "none", *PROVIDERS[self.provider].continuations)
        if self.continuation not in known:
            raise ValueError(
                f"continuation {self.continuation!r}: a {self.provider!r} route continues by "
                f"{' or '.join(repr(mode) for mode in known)}"
            )
        return self

    @field_validator("provider", mode="before")
    @classmethod
    def _registered_provider(cls, provider: Any) -> Any:
        # The error a Literal of the registered names gave, when they were written here.
        if not isinstance(provider, str) or provider not in PROVIDERS:
            raise PydanticCustomError(
                "literal_error", "Input should be {expected}", {"expected": known_providers()}
            )
        return provider

    def to_route(self, name: str, environ: Mapping[str, str]) -> Route:
        api_key = None
        if self.api_key_env:
            api_key = environ.get(self.api_key_env)
            if not api_key:
                raise ValueError(
                    f"route {name!r}: the environment variable {self.api_key_env} "
                    "(api_key_env) is not set"
                )
        return Route(
            name=name,
            provider=self.provider,
            base_url=self.base_url,
            upstream_model=self.model,
            api_key=api_key,
            timeouts=Timeouts(
                connect=self.connect_timeout,
                first_token=self.first_token_timeout,
                idle=self.idle_timeout,
                total=self.total_timeout,
            ),
            retries=RetryPolicy(
                max_attempts=self.max_attempts,
                base_delay=self.retry_base_delay,
                max_delay=self.retry_max_delay,
            ),
            max_in_flight=self.max_in_flight,
            failure_threshold=self.failure_threshold,
            reset_timeout=self.reset_timeout,
            max_tokens=self.max_tokens,
            headers=self.headers,
            max_sse_line_bytes=self.max_sse_line_bytes,
            max_sse_event_bytes=self.max_sse_event_bytes,
            continuation=None if self.continuation == "none" else self.continuation,
        )


class ModelGroupSettings(BaseModel):
    """A model group: one model name for several routes, switched between when one fails
    (see streams.upstream.group)."""

    model_config = ConfigDict(extra="forbid")

    routes: list[str] = Field(
        min_length=1,
        max_length=MAX_GROUP_ROUTES,
        description="The served models (routes, or 'demo') behind the name, in the order "
        "they are tried",
    )
    weights: list[float] | None = Field(
        default=None,
        description="One positive weight per route: the first route of each step is drawn "
        "by weight (spreading load), the others follow in weighted order",
    )
    policy: FailoverPolicy = Field(
        "fail",
        description="When a route fails after its output has started: 'fail' (the step "
        "fails: message.failed), 'restart' (message.retracted, then the step again on the "
        "next route) or 'continue' (the next route goes on after the partial answer, where "
        "it can; otherwise restart). A request may say otherwise (option 'failover')",
    )
    hedge_after: float | None = Field(
        default=None,
        gt=0,
        description="Seconds without a first token before the next route is started beside "
        "it; the first to answer wins and the other is cancelled (default: no hedging)",
    )

    def to_group(self, name: str) -> ModelGroup:
        return ModelGroup(
            name=name,
            routes=tuple(self.routes),
            weights=None if self.weights is None else tuple(self.weights),
            policy=self.policy,
            hedge_after=self.hedge_after,
        )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: str = "info"
    access_log: bool = False
    config_file: Path | None = None

    # HTTP input
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Largest request body")
    max_messages_per_run: int = Field(1000, ge=1, description="Messages in one run spec")
    max_parallel_items: int = Field(
        64, ge=1, description="Items of one parallel run (model and tool calls side by side)"
    )
    max_tools_per_run: int = Field(
        128,
        ge=1,
        description="Tools a run offers its model (server and client tools; in a parallel "
        "run, each model call's)",
    )
    max_metadata_bytes: int = Field(16 * 1024, ge=64, description="Largest run metadata, as JSON")
    max_tool_arguments_bytes: int = Field(
        engine_default(RunLimits, "max_tool_arguments_bytes"),
        ge=64,
        description="Largest tool arguments (given in a spec, or streamed by a model for one "
        "call) or client tool result, as JSON",
    )

    # what one model step may produce (past it, the step fails: upstream_output_limit)
    max_tool_calls_per_step: int = Field(
        engine_default(RunLimits, "max_tool_calls_per_step"),
        ge=1,
        le=1024,
        description="Tool calls one model step may start",
    )
    max_step_text_bytes: int = Field(
        engine_default(RunLimits, "max_step_text_bytes"),
        ge=1024,
        description="Text one model step may stream, in UTF-8 bytes",
    )

    # security
    api_keys: dict[str, str] = Field(
        default_factory=dict,
        description="Key name -> 'sha256:<hex>' of the key (`gateway --hash-key KEY` prints "
        "it). With none, the gateway runs open, on a loopback address only.",
    )
    allow_open: bool = Field(
        False, description="Serve without API keys on a non-loopback address (not advised)"
    )
    stream_token_secret: str | None = Field(
        default=None,
        description="HMAC secret of stream tokens (random per process when unset; share it "
        "between instances behind one load balancer)",
    )
    stream_token_ttl: float = Field(300.0, gt=0, description="Seconds a stream token is valid")
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS and on the WebSocket"
    )
    cors_allow_credentials: bool = False
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names requests may name in Host besides localhost and IP "
        "addresses (the defence against DNS rebinding): exact names, '*.example.com' for "
        "the names under it, or '*' for any. Checked when set, and always without API keys",
    )
    runs_per_key_per_minute: float = Field(120.0, gt=0)
    max_streams_per_key: int = Field(200, ge=1, description="Open SSE streams + WS sessions")
    max_active_runs_per_key: int = Field(
        engine_default(MemoryQuotas, "max_active_runs"),
        ge=1,
        description="Runs queued or running at once per key (with Redis: on all instances), "
        "detached ones included",
    )
    ws_messages_per_second: float = Field(50.0, gt=0)
    ws_message_burst: int = Field(100, ge=1)

    # streams
    heartbeat_interval: float = Field(15.0, gt=0, description="Seconds between ': ping'")
    send_timeout: float = Field(
        10.0, gt=0, description="A reader whose send blocks this long is disconnected"
    )
    shutdown_grace: float = Field(
        5.0, ge=0, description="Seconds streams get to deliver their last events on shutdown"
    )
    drain_timeout: float = Field(
        30.0,
        ge=0,
        description="On SIGTERM, seconds running runs get to finish before they "
        "are cancelled (reason 'shutdown')",
    )
    ws_ping_interval: float = Field(20.0, gt=0)
    ws_ping_timeout: float = Field(20.0, gt=0)
    ws_max_message_bytes: int = Field(1024 * 1024, ge=1024)
    ws_close_timeout: float = Field(
        engine_default(ConnectionPolicy, "ws_close_timeout"),
        gt=0,
        description="Seconds a close frame may wait behind unread data",
    )

    # connections (gateway.connections)
    max_connections: int = Field(
        engine_default(ConnectionPolicy, "max_connections"),
        ge=1,
        description="Open connections past which a new one is answered 503 and closed",
    )
    first_byte_timeout: float = Field(
        engine_default(ConnectionPolicy, "first_byte_timeout"),
        gt=0,
        description="Seconds a new connection may take to begin its request",
    )
    header_timeout: float = Field(
        engine_default(ConnectionPolicy, "header_timeout"),
        gt=0,
        description="Seconds a request head may take from its first byte",
    )
    body_timeout: float = Field(
        engine_default(ConnectionPolicy, "body_timeout"),
        gt=0,
        description="Seconds a request body may take from the end of its head",
    )
    keep_alive_timeout: float = Field(
        engine_default(ConnectionPolicy, "keep_alive_timeout"),
        gt=0,
        description="Seconds an idle connection is kept between requests",
    )
    close_linger: float = Field(
        engine_default(ConnectionPolicy, "close_linger"),
        gt=0,
        description="Seconds a closed connection may take to deliver what is buffered "
        "before it is reset (RST): a peer that stopped reading is really gone",
    )

    # several instances (Redis)
    redis_url: str | None = Field(
        default=None,
        description="Share runs with other instances through this Redis (redis://host:port/db, "
        "rediss:// for TLS) or Redis Cluster (redis+cluster://host:port,host:port/ seed nodes, "
        "rediss+cluster:// for TLS): event logs, the run registry, cancels, leases and per-key "
        "limits. Unset: in memory.",
    )
    instance_id: str | None = Field(
        default=None,
        description="This instance's name in Redis (default: host-pid-random); with "
        "several workers, worker i is <instance_id>-w<i>",
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Processes serving the one port (every core of a host); more than one "
        "needs redis_url, through which they share runs",
    )
    redis_prefix: str = Field(
        engine_default(ClusterSettings, "prefix"),
        description="Prefix of every Redis key the gateway uses",
    )
    lease_ttl: float = Field(
        engine_default(ClusterSettings, "lease_ttl"),
        gt=0,
        description="Seconds until the runs of an instance that stopped are failed",
    )
    redis_outage_grace: float = Field(
        engine_default(ClusterSettings, "outage_grace"),
        ge=0,
        description="Seconds Redis may not answer before this instance's runs end",
    )
    redis_timeout: float = Field(
        engine_default(ClusterSettings, "timeout"), gt=0, description="Bound on one Redis call"
    )
    redis_max_blocking_reads: int = Field(
        engine_default(ClusterSettings, "max_blocking_reads"),
        ge=1,
        description="Readers of other instances' runs waiting on Redis at once (one "
        "connection each, in a pool of their own)",
    )

    # event log retention
    retention_max_events: int = Field(engine_default(Retention, "max_events"), ge=1)
    retention_max_bytes: int = Field(engine_default(Retention, "max_bytes"), ge=1024)
    retention_ttl: float = Field(
        engine_default(Retention, "ttl"), ge=0, description="Seconds a finished run stays readable"
    )

    # concurrency limits
    max_producers_per_connection: int = Field(engine_default(Connection, "max_producers"), ge=1)
    max_runs_per_connection: int = Field(engine_default(Connection, "max_runs"), ge=1)
    max_active_runs: int = Field(engine_default(RunLimits, "max_active_runs"), ge=1)

    # producers
    tool_timeout: float = Field(engine_default(RunLimits, "tool_timeout"), gt=0)
    client_tool_timeout: float = Field(engine_default(RunLimits, "client_tool_timeout"), gt=0)

    # Human approval of tool calls (streams.approvals)
    approval_tools: dict[str, Literal["always", "never"]] = Field(
        default_factory=dict,
        description="Per tool (server or client): 'always' (every call waits for a person's "
        "approval) or 'never' (only when a run or its key asks). GATEWAY_APPROVAL_TOOLS as "
        "JSON, or an [approval_tools] table",
    )
    approval_keys: dict[str, list[str] | Literal["all"]] = Field(
        default_factory=dict,
        description="Per API key name: the tools whose calls wait for approval in the runs "
        "it starts ('all': every tool)",
    )
    approvers: list[str] = Field(
        default_factory=list,
        description="API key names that may answer any run's approvals (a run's owner may "
        "always answer its own)",
    )
    approval_timeout: float = Field(
        engine_default(ApprovalPolicy, "timeout"),
        gt=0,
        description="Seconds a call waits for its approval; then approval_on_timeout",
    )
    approval_on_timeout: Literal["deny", "fail"] = Field(
        engine_default(ApprovalPolicy, "on_timeout"),
        description="An unanswered approval: 'deny' (the model reads a refusal) or 'fail' "
        "(tool.failed, code approval_expired)",
    )

    def approval_policy(self) -> ApprovalPolicy:
        return ApprovalPolicy(
            tools=dict(self.approval_tools),
            keys=dict(self.approval_keys),
            approvers=frozenset(self.approvers),
            timeout=self.approval_timeout,
            on_timeout=self.approval_on_timeout,
        )

    demo_token_delay: float = Field(
        engine_default(DemoModel, "token_delay"), ge=0, description="Seconds between demo tokens"
    )
    countdown_interval: float = Field(
        engine_default(builtin_tools, "countdown_interval"),
        ge=0,
        description="Default seconds per tick",
    )

    tools: list[str] | None = Field(
        default=None, description="The built-in tools to offer (default: all of them)"
    )

    # model routes (GATEWAY_ROUTES as JSON, or [routes.NAME] tables in the config file)
    routes: dict[str, RouteSettings] = Field(default_factory=dict)
    # model groups (GATEWAY_MODELS as JSON, or [models.NAME] tables in the config file)
    models: dict[str, ModelGroupSettings] = Field(
        default_factory=dict,
        description="Model groups: a model name clients use -> routes to switch between",
    )
    # (GATEWAY_MODEL_ALIASES as JSON, or a [model_aliases] table in the config file)
    model_aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Model ids clients send -> the served model (a route or 'demo') that "
        "answers them. Keys may be fnmatch patterns ('claude-*'); a served name wins, then "
        "the aliases in the order given",
    )

    @property
    def loopback_only(self) -> bool:
        """Whether the gateway listens on a loopback address only."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def checks_hosts(self) -> bool:
        """Whether requests are answered only for allowed ``Host`` names: always without
        API keys (a page of a name rebound to loopback could use the gateway), and with
        keys when ``allowed_hosts`` says which (a rebound page has no key to send)."""
        if "*" in self.allowed_hosts:
            return False
        return not self.api_keys or bool(self.allowed_hosts)

    def check_exposure(self) -> None:
        """Refuse to serve without API keys anywhere but on loopback, unless allowed."""
        if not self.api_keys and not self.loopback_only and not self.allow_open:
            raise ValueError(
                f"no API keys are configured and the gateway would listen on {self.host}: "
                "anyone who can reach it could use it. Configure api_keys (see `gateway "
                "--hash-key`), listen on 127.0.0.1, or set allow_open (GATEWAY_ALLOW_OPEN=1)"
            )

    def upstream_routes(self, environ: Mapping[str, str]) -> list[Route]:
        """The configured routes, with their API keys read from ``environ``; a route whose
        key variable is unset raises ``ValueError`` naming it."""
        return [config.to_route(name, environ) for name, config in self.routes.items()]

    @field_validator("redis_url")
    @classmethod
    def _store_url(cls, url: str | None) -> str | None:
        # A ValueError names the accepted schemes (or what is wrong with a cluster's URL).
        return None if url is None else validate_store_url(url)

    @field_validator("api_keys")
    @classmethod
    def _hashed_keys(cls, keys: dict[str, str]) -> dict[str, str]:
        KeyRing(keys)  # raises ValueError naming a key that is not a SHA-256 hash
        return keys

    @field_validator("allowed_hosts")
    @classmethod
    def _host_patterns(cls, patterns: list[str]) -> list[str]:
        return [allowed_host_pattern(pattern) for pattern in patterns]

    @field_validator("routes")
    @classmethod
    def _route_names(cls, routes: dict[str, RouteSettings]) -> dict[str, RouteSettings]:
        for name in routes:
            if name == "demo" or not name or len(name) > 128:
                raise ValueError(f"{name!r} cannot be a route name")
        return routes

    def model_groups(self) -> list[ModelGroup]:
        """The configured model groups."""
        return [config.to_group(name) for name, config in self.models.items()]

    @model_validator(mode="after")
    def _group_routes(self) -> Settings:
        routes = ["demo", *self.routes]
        for name, group in self.models.items():
            if name in routes or not name or len(name) > 128:
                raise ValueError(f"{name!r} cannot be a model group's name (a route has it)")
            for route in group.routes:
                if route not in routes:
                    raise ValueError(
                        f"model group {name!r}: {route!r} is not a route "
                        f"(known: {', '.join(routes)})"
                    )
            group.to_group(name)  # raises ValueError for what its fields cannot say alone
        return self

    @model_validator(mode="after")
    def _alias_targets(self) -> Settings:
        served = ["demo", *self.routes, *self.models]
        for pattern, target in self.model_aliases.items():
            if not pattern or len(pattern) > 128:
                raise ValueError(f"{pattern!r} cannot be a model alias")
            if target not in served:
                raise ValueError(
                    f"model alias {pattern!r}: {target!r} is not a served model "
                    f"(known: {', '.join(served)})"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file(init_settings, env_settings)
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)


def _config_file(*sources: PydanticBaseSettingsSource) -> Path | None:
    for source in sources:
        values: dict[str, Any] = source()
        if values.get("config_file"):
            path = Path(values["config_file"])
            if not path.is_file():
                raise FileNotFoundError(f"config file {path} does not exist")
            return path
    return None
