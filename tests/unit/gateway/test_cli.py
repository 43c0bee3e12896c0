"""The ``gateway`` command (``gateway/__main__.py``) and the exposure check of the settings
(``Settings.check_exposure`` / ``Settings.loopback_only``)."""

from __future__ import annotations

import os
import re
import resource
from pathlib import Path

import pytest

import gateway.__main__ as cli
from gateway.auth import hash_key
from gateway.server import RESERVED_FILES, OpenFilesLimit, raise_open_files_limit
from gateway.settings import Settings

VALID = """
port = 9001

[api_keys]
alice = "{alice}"

[routes.local]
base_url = "http://127.0.0.1:11434/v1"
model = "llama3"
"""

INVALID = """
port = 99999
bogus_setting = 1

[routes.local]
base_url = "http://127.0.0.1:11434/v1"
model = "llama3"
max_attempts = 0
"""

WITH_KEYED_ROUTE = """
[routes.gpt]
base_url = "https://api.example.test/v1"
model = "gpt-x"
api_key_env = "TEST_CLI_UPSTREAM_KEY"
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GATEWAY_* variable of the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def no_server(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Replace the server: a test that would start one records it instead."""
    started: list[Settings] = []
    monkeypatch.setattr(cli, "run", started.append)
    return started


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


# --- --hash-key -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["k", "gw-some-key", "with space"])
def test_hash_key_prints_the_hash_of_the_given_key(
    key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cli.main(["--hash-key", key])
    out = capsys.readouterr().out
    assert out == f"hash: {hash_key(key)}\n"


def test_hash_key_without_a_key_prints_a_new_key_and_its_hash(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli.main(["--hash-key"])
    out = capsys.readouterr().out
    match = re.fullmatch(r"key:  (gw-\S+)\nhash: (sha256:[0-9a-f]{64})\n", out)
    assert match is not None, out
    key, digest = match.groups()
    assert digest == hash_key(key)


def test_hash_key_without_a_key_prints_a_different_key_each_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli.main(["--hash-key"])
    first = capsys.readouterr().out
    cli.main(["--hash-key"])
    assert capsys.readouterr().out != first


def test_hash_key_starts_no_server(no_server: list[Settings]) -> None:
    cli.main(["--hash-key", "k"])
    assert no_server == []


# --- --check-config -------------------------------------------------------------------------


def test_check_config_on_a_valid_file_exits_0_with_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_server: list[Settings]
) -> None:
    path = write(tmp_path, VALID.format(alice=hash_key("key-a")))
    with pytest.raises(SystemExit) as exited:
        cli.main(["--check-config", str(path)])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: valid.")
    assert "127.0.0.1:9001" in out
    assert "routes: local" in out
    assert "API keys: alice" in out
    assert no_server == []


def test_check_config_never_prints_key_hashes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, VALID.format(alice=hash_key("key-a")))
    with pytest.raises(SystemExit):
        cli.main(["--check-config", str(path)])
    captured = capsys.readouterr()
    assert hash_key("key-a") not in captured.out + captured.err


def test_check_config_flags_win_over_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, VALID.format(alice=hash_key("key-a")))
    with pytest.raises(SystemExit) as exited:
        cli.main(["--check-config", str(path), "--port", "9100"])
    assert exited.value.code == 0
    assert "127.0.0.1:9100" in capsys.readouterr().out


def test_check_config_on_an_invalid_file_exits_1_listing_each_problem_where_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, INVALID)
    with pytest.raises(SystemExit) as exited:
        cli.main(["--check-config", str(path)])
    assert exited.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert f"{path}: 3 problem(s)" in err
    assert re.search(r"^  port: ", err, re.MULTILINE)
    assert re.search(r"^  bogus_setting: ", err, re.MULTILINE)
    assert re.search(r"^  routes\.local\.max_attempts: ", err, re.MULTILINE)


def test_check_config_on_a_file_that_is_not_toml_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "port = = 1\n")
    with pytest.raises(SystemExit) as exited:
        cli.main(["--check-config", str(path)])
    assert exited.value.code == 1
    assert str(path) in capsys.readouterr().err


def test_check_config_on_a_missing_file_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(SystemExit) as exited:
        cli.main(["--check-config", str(path)])
    assert exited.value.code == 1
    assert capsys.readouterr().err == f"{path}: no such file\n"


def test_check_config_reports_a_route_whose_api_key_variable_is_unset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_CLI_UPSTREAM_KEY", raising=False)
    path = write(tmp_path, WITH_KEYED_ROUTE)
    with pytest.raises(SystemExit) as exited:
        cli.main(["--check-config", str(path)])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "'gpt'" in err
    assert "TEST_CLI_UPSTREAM_KEY" in err


def test_check_config_accepts_a_route_whose_api_key_variable_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_CLI_UPSTREAM_KEY", "upstream-key")
    path = write(tmp_path, WITH_KEYED_ROUTE)
    with pytest.raises(SystemExit) as exited:
        cli.main(["--check-config", str(path)])
    assert exited.value.code == 0


def test_check_config_refuses_an_open_gateway_on_a_public_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, 'host = "0.0.0.0"\n')
    with pytest.raises(SystemExit) as exited:
        cli.main(["--check-config", str(path)])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "api_keys" in err
    assert "allow_open" in err


# --- starting with invalid settings ---------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "mentions"),
    [
        (["--port", "99999"], "port"),
        (["--host", "0.0.0.0"], "allow_open"),
        (["--config", "/nonexistent/gateway.toml"], "does not exist"),
    ],
)
def test_invalid_settings_exit_with_a_message_and_start_no_server(
    argv: list[str], mentions: str, no_server: list[Settings]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    message = exited.value.code
    assert isinstance(message, str)
    assert message.startswith("gateway: invalid settings:")
    assert mentions in message
    assert no_server == []


def test_a_route_whose_api_key_variable_is_unset_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_server: list[Settings]
) -> None:
    monkeypatch.delenv("TEST_CLI_UPSTREAM_KEY", raising=False)
    path = write(tmp_path, WITH_KEYED_ROUTE)
    with pytest.raises(SystemExit, match="TEST_CLI_UPSTREAM_KEY"):
        cli.main(["--config", str(path)])
    assert no_server == []


def test_valid_settings_start_the_server_with_the_flags(no_server: list[Settings]) -> None:
    cli.main(["--port", "0", "--log-level", "warning"])
    [settings] = no_server
    assert settings.port == 0
    assert settings.log_level == "warning"


def test_an_invalid_api_key_is_not_echoed_when_starting(
    monkeypatch: pytest.MonkeyPatch, no_server: list[Settings]
) -> None:
    monkeypatch.setenv("GATEWAY_API_KEYS", '{"alice": "plain-secret-key"}')
    with pytest.raises(SystemExit) as exited:
        cli.main([])
    message = str(exited.value.code)
    assert "'alice'" in message
    assert "plain-secret-key" not in message


def test_check_config_does_not_echo_an_invalid_api_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[api_keys]\nalice = "plain-secret-key"\n')
    with pytest.raises(SystemExit) as exited:
        cli.main(["--check-config", str(path)])
    assert exited.value.code == 1
    captured = capsys.readouterr()
    assert "'alice'" in captured.err
    assert "plain-secret-key" not in captured.out + captured.err


# --- Settings.check_exposure / loopback_only ------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_are_loopback_only(host: str) -> None:
    assert Settings(host=host).loopback_only


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "gateway.example.com"])
def test_other_hosts_are_not_loopback_only(host: str) -> None:
    assert not Settings(host=host).loopback_only


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_no_keys_on_loopback_is_fine(host: str) -> None:
    Settings(host=host).check_exposure()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "gateway.example.com"])
def test_no_keys_on_a_public_address_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="api_keys") as raised:
        Settings(host=host).check_exposure()
    message = str(raised.value)
    assert "allow_open" in message
    assert host in message


@pytest.mark.parametrize("host", ["0.0.0.0", "gateway.example.com"])
def test_keys_on_a_public_address_are_fine(host: str) -> None:
    Settings(host=host, api_keys={"alice": hash_key("key-a")}).check_exposure()


@pytest.mark.parametrize("host", ["0.0.0.0", "gateway.example.com"])
def test_allow_open_on_a_public_address_is_fine(host: str) -> None:
    Settings(host=host, allow_open=True).check_exposure()


def test_the_open_files_limit_is_raised_toward_what_max_connections_needs() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        limit = raise_open_files_limit(500)
        assert limit.soft == min(500 + RESERVED_FILES, hard)
        assert not limit.low or hard < 500 + RESERVED_FILES
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_low_open_files_limit_is_described_with_what_to_do() -> None:
    limit = OpenFilesLimit(soft=1024, hard=1024, needed=10_256)
    assert limit.low
    text = limit.describe()
    assert text.startswith("open files limit 1024 (hard 1024): lower than the 10256")
    assert "GATEWAY_MAX_CONNECTIONS" in text
    assert OpenFilesLimit(20_000, 20_000, 10_256).describe() == (
        "open files limit 20000 (hard 20000)"
    )


# --- --workers ------------------------------------------------------------------------------

NO_SHARED_STORE = (
    "--workers 2 needs a shared store: set GATEWAY_REDIS_URL (or redis_url); without it each "
    "worker would keep its own runs, and a resume or a cancel that lands on another worker "
    "would not find them\n"
)


def test_workers_without_redis_are_refused_with_what_to_set(
    capsys: pytest.CaptureFixture[str], no_server: list[Settings]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--workers", "2"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"gateway: {NO_SHARED_STORE}"
    assert no_server == []


def test_check_config_refuses_workers_without_redis_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "workers = 2\n")
    with pytest.raises(SystemExit) as exited:
        cli.main(["--check-config", str(path)])
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"{path}: {NO_SHARED_STORE}"


def test_workers_with_redis_are_supervised_and_one_worker_is_the_plain_server(
    monkeypatch: pytest.MonkeyPatch, no_server: list[Settings]
) -> None:
    supervised: list[Settings] = []
    monkeypatch.setattr(cli, "supervise", lambda settings: supervised.append(settings) or 0)
    monkeypatch.setenv("GATEWAY_REDIS_URL", "redis://127.0.0.1:1/0")
    with pytest.raises(SystemExit) as exited:
        cli.main(["--workers", "3"])
    assert exited.value.code == 0
    assert [settings.workers for settings in supervised] == [3]
    assert no_server == []
    cli.main(["--workers", "1"])
    assert [settings.workers for settings in no_server] == [1]


@pytest.mark.parametrize("workers", ["0", "65"])
def test_workers_out_of_bounds_are_invalid(
    workers: str, monkeypatch: pytest.MonkeyPatch, no_server: list[Settings]
) -> None:
    monkeypatch.setenv("GATEWAY_REDIS_URL", "redis://127.0.0.1:1/0")
    with pytest.raises(SystemExit) as exited:
        cli.main(["--workers", workers])
    assert str(exited.value.code).startswith("gateway: invalid settings:\n  workers: Input ")
    assert no_server == []
