"""Settings: GATEWAY_* environment, a TOML config file, and model routes."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.settings import Settings
from streams.upstream.registry import known_providers

CONFIG = """
port = 9001
heartbeat_interval = 5.0

[routes.gpt]
base_url = "https://api.example.test/v1"
model = "gpt-x"
api_key_env = "EXAMPLE_KEY"
first_token_timeout = 12.5
max_in_flight = 4

[routes.local]
provider = "openai"
base_url = "http://127.0.0.1:11434/v1"
model = "llama3"

[routes.claude]
provider = "anthropic"
base_url = "https://api.anthropic.test/v1"
model = "claude-x"
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG)
    return path


def test_a_config_file_sets_values_and_routes(config_file: Path) -> None:
    settings = Settings(config_file=config_file)
    assert settings.port == 9001
    assert settings.heartbeat_interval == 5.0
    assert set(settings.routes) == {"gpt", "local", "claude"}
    assert settings.routes["claude"].provider == "anthropic"
    assert settings.routes["gpt"].first_token_timeout == 12.5


def test_environment_wins_over_the_config_file(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_CONFIG_FILE", str(config_file))
    monkeypatch.setenv("GATEWAY_PORT", "9100")
    assert Settings().port == 9100
    assert "gpt" in Settings().routes


def test_routes_can_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "GATEWAY_ROUTES", '{"fast": {"base_url": "http://127.0.0.1:8081/v1", "model": "m"}}'
    )
    route = Settings().routes["fast"].to_route("fast", {})
    assert (route.name, route.provider, route.upstream_model) == ("fast", "openai", "m")
    assert route.api_key is None


def test_a_route_reads_its_api_key_from_the_named_variable(config_file: Path) -> None:
    settings = Settings(config_file=config_file)
    route = settings.routes["gpt"].to_route("gpt", {"EXAMPLE_KEY": "sk-123"})
    assert route.api_key == "sk-123"
    assert route.timeouts.first_token == 12.5
    assert route.max_in_flight == 4


def test_a_route_whose_api_key_variable_is_unset_is_refused_by_name(config_file: Path) -> None:
    settings = Settings(config_file=config_file)
    with pytest.raises(ValueError, match="EXAMPLE_KEY"):
        settings.routes["gpt"].to_route("gpt", {})


@pytest.mark.parametrize("name", ["demo", ""])
def test_a_route_cannot_shadow_demo_or_be_unnamed(name: str) -> None:
    with pytest.raises(ValidationError):
        Settings(routes={name: {"base_url": "http://x/v1", "model": "m"}})


def test_an_unknown_route_field_is_refused() -> None:
    with pytest.raises(ValidationError, match="timeout_typo"):
        Settings(routes={"r": {"base_url": "http://x/v1", "model": "m", "timeout_typo": 1}})


@pytest.mark.parametrize("provider", ["openia", "", 5])
def test_an_unknown_provider_is_refused_naming_the_known_ones(provider: object) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(routes={"r": {"provider": provider, "base_url": "http://x/v1", "model": "m"}})
    (error,) = raised.value.errors()
    assert (error["loc"], error["type"]) == (("routes", "r", "provider"), "literal_error")
    # As pydantic words a Literal's error, over the registered providers.
    assert error["msg"] == f"Input should be {known_providers()}"


def test_a_route_names_the_openai_provider_by_default() -> None:
    settings = Settings(routes={"r": {"base_url": "http://x/v1", "model": "m"}})
    assert settings.routes["r"].provider == "openai"


def test_a_missing_config_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Settings(config_file=tmp_path / "nope.toml")


def test_the_example_config_in_the_repository_is_valid() -> None:
    example = Path(__file__).parents[3] / "gateway.example.toml"
    settings = Settings(config_file=example)
    assert {"gpt-4o-mini", "claude", "llama"} <= set(settings.routes)
    environ = {"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k"}
    assert {r.provider for r in settings.upstream_routes(environ)} == {"openai", "anthropic"}


def test_allowed_hosts_come_from_the_environment_as_json_normalized(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_ALLOWED_HOSTS", '["GW.example.com.", "*.Apps.example"]')
    assert Settings().allowed_hosts == ["gw.example.com", "*.apps.example"]


@pytest.mark.parametrize("pattern", ["gw.example.com:8000", "https://gw.example.com", "gw.*"])
def test_an_allowed_host_with_a_port_a_scheme_or_an_inner_wildcard_is_refused(
    pattern: str,
) -> None:
    with pytest.raises(ValidationError, match="allowed_hosts"):
        Settings(allowed_hosts=[pattern])


KEYS = {"alice": "sha256:" + "0" * 64}


@pytest.mark.parametrize(
    ("settings", "checked"),
    [
        ({}, True),  # open: always
        ({"allowed_hosts": ["gw.example.com"]}, True),
        ({"allowed_hosts": ["*"]}, False),
        ({"api_keys": KEYS}, False),  # the keys protect the gateway
        ({"api_keys": KEYS, "allowed_hosts": ["gw.example.com"]}, True),
        ({"api_keys": KEYS, "allowed_hosts": ["*"]}, False),
    ],
)
def test_hosts_are_checked_without_keys_or_when_allowed_hosts_are_set(
    settings: dict[str, object], checked: bool
) -> None:
    assert Settings(**settings).checks_hosts is checked


# -- model aliases --------------------------------------------------------------------------


def test_model_aliases_from_the_environment_as_json_keep_their_order(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_MODEL_ALIASES", '{"claude-haiku-*": "local", "claude-*": "claude"}')

    settings = Settings(config_file=config_file)

    assert list(settings.model_aliases.items()) == [
        ("claude-haiku-*", "local"),
        ("claude-*", "claude"),
    ]


def test_model_aliases_from_a_config_file_table(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG + '\n[model_aliases]\n"claude-sonnet-4-5" = "gpt"\n"gpt-*" = "demo"\n')

    settings = Settings(config_file=path)

    assert settings.model_aliases == {"claude-sonnet-4-5": "gpt", "gpt-*": "demo"}


def test_an_alias_of_a_model_not_served_is_refused_naming_the_served_ones(
    config_file: Path,
) -> None:
    with pytest.raises(
        ValidationError,
        match=r"model alias 'claude-\*': 'gone' is not a served model "
        r"\(known: demo, gpt, local, claude\)",
    ):
        Settings(config_file=config_file, model_aliases={"claude-*": "gone"})


GROUPS = """
[models.smart]
routes = ["gpt", "claude", "local"]
policy = "restart"
hedge_after = 0.5

[models.spread]
routes = ["gpt", "local"]
weights = [3, 1]
"""


def test_model_groups_from_a_config_file_table(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG + GROUPS)

    groups = {group.name: group for group in Settings(config_file=path).model_groups()}

    assert groups["smart"].routes == ("gpt", "claude", "local")
    assert (groups["smart"].policy, groups["smart"].hedge_after) == ("restart", 0.5)
    assert (groups["spread"].weights, groups["spread"].policy) == ((3.0, 1.0), "fail")


def test_model_groups_from_the_environment_as_json(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_MODELS", '{"smart": {"routes": ["claude", "demo"]}}')

    (group,) = Settings(config_file=config_file).model_groups()

    assert (group.name, group.routes) == ("smart", ("claude", "demo"))


@pytest.mark.parametrize(
    ("group", "message"),
    [
        ({"routes": ["gpt", "gone"]}, r"model group 'smart': 'gone' is not a route"),
        ({"routes": []}, "at least 1 item"),
        ({"routes": ["gpt"], "policy": "retry"}, "'fail', 'restart' or 'continue'"),
        ({"routes": ["gpt", "local"], "weights": [1]}, "one positive number per route"),
        ({"routes": ["gpt"], "hedge_after": 0}, "greater than 0"),
        ({"routes": ["gpt"], "retries": 2}, "Extra inputs are not permitted"),
    ],
)
def test_a_model_group_that_cannot_work_is_refused(
    config_file: Path, group: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(config_file=config_file, models={"smart": group})


@pytest.mark.parametrize("name", ["gpt", "demo"])
def test_a_model_group_cannot_take_a_routes_name(config_file: Path, name: str) -> None:
    with pytest.raises(ValidationError, match=f"'{name}' cannot be a model group's name"):
        Settings(config_file=config_file, models={name: {"routes": ["local"]}})


def test_an_alias_may_name_a_model_group(config_file: Path) -> None:
    settings = Settings(
        config_file=config_file,
        models={"smart": {"routes": ["gpt", "claude"]}},
        model_aliases={"claude-*": "smart"},
    )

    assert settings.model_aliases == {"claude-*": "smart"}


@pytest.mark.parametrize(
    ("provider", "continuation", "resolved"),
    [
        ("anthropic", "auto", "auto"),
        ("anthropic", "prefill", "prefill"),
        ("anthropic", "none", None),
        ("openai", "continue_final_message", "continue_final_message"),
        ("openai", "none", None),
    ],
)
def test_a_route_says_how_it_continues_a_partial_answer(
    provider: str, continuation: str, resolved: str | None
) -> None:
    route = {"provider": provider, "base_url": "http://x/v1", "model": "m"}
    settings = Settings(routes={"r": {**route, "continuation": continuation}})

    (config,) = settings.upstream_routes({})

    assert config.continuation == resolved


@pytest.mark.parametrize(
    ("provider", "continuation"),
    [("openai", "prefill"), ("anthropic", "continue_final_message"), ("openai", "always")],
)
def test_a_continuation_the_provider_has_not_is_refused(provider: str, continuation: str) -> None:
    route = {"provider": provider, "base_url": "http://x/v1", "model": "m"}
    with pytest.raises(ValidationError, match=f"a '{provider}' route continues by 'auto'"):
        Settings(routes={"r": {**route, "continuation": continuation}})


def test_approval_settings_make_the_engines_policy(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        'approvers = ["ops"]\napproval_timeout = 30\napproval_on_timeout = "fail"\n'
        + CONFIG
        + '[approval_tools]\nclock = "always"\ncountdown = "never"\n'
        + '[approval_keys]\nalice = ["countdown"]\nbob = "all"\n'
    )

    policy = Settings(config_file=path).approval_policy()

    assert policy.tools == {"clock": "always", "countdown": "never"}
    assert policy.keys == {"alice": ["countdown"], "bob": "all"}
    assert (policy.approvers, policy.timeout, policy.on_timeout) == (frozenset({"ops"}), 30, "fail")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("approval_tools", {"clock": "sometimes"}, "'always' or 'never'"),
        ("approval_keys", {"alice": "some"}, "'all'"),
        ("approval_timeout", 0, "greater than 0"),
        ("approval_on_timeout", "retry", "'deny' or 'fail'"),
    ],
)
def test_an_approval_setting_that_cannot_work_is_refused(
    field: str, value: object, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**{field: value})


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://cache.example:6380/1",
        "unix:///run/redis.sock",
        "redis+cluster://10.0.0.1:7000,10.0.0.2:7000/",
        "rediss+cluster://user:secret@10.0.0.1:7000/",
    ],
)
def test_a_redis_url_may_name_a_single_redis_or_a_cluster(url: str) -> None:
    assert Settings(redis_url=url).redis_url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://127.0.0.1:6379",
            "Value error, a Redis URL starts with one of redis://, rediss://, unix://, "
            "redis+cluster://, rediss+cluster://, not 'http://127.0.0.1:6379'",
        ),
        (
            "redis+cluster://a:7000/2",
            "Value error, a Redis Cluster has only database 0, not '2': 'redis+cluster://a:7000/2'",
        ),
    ],
)
def test_a_redis_url_of_another_scheme_is_refused_naming_the_accepted_ones(
    url: str, message: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(redis_url=url)
    (error,) = raised.value.errors()
    assert (error["loc"], error["msg"]) == (("redis_url",), message)
