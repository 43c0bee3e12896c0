"""Which worker a process is (``gateway/worker.py``) and how the supervisor says how one
ended (``gateway/supervisor.py``)."""

from __future__ import annotations

import re
import signal
import socket

import pytest

from gateway.settings import Settings
from gateway.supervisor import bind_socket, describe_exit
from gateway.worker import Worker, shared_store_problem


@pytest.mark.parametrize(
    ("instance_id", "index", "instance"),
    [("gw-0", 1, "gw-0-w1"), ("gw-0", 2, "gw-0-w2"), ("pod-a", 64, "pod-a-w64")],
)
def test_a_configured_instance_id_names_each_worker_after_it(
    instance_id: str, index: int, instance: str
) -> None:
    settings = Settings(instance_id=instance_id, workers=2, redis_url="redis://h:1/0")
    worker = Worker.of(settings, index)
    assert worker == Worker(index, instance)
    own = worker.settings(settings)
    assert (own.instance_id, own.workers, own.redis_url) == (instance, 1, "redis://h:1/0")
    assert settings.instance_id == instance_id  # the supervisor's settings are left alone


def test_without_an_instance_id_each_worker_has_a_name_of_its_own() -> None:
    settings = Settings(workers=2, redis_url="redis://h:1/0")
    first, second = Worker.of(settings, 1), Worker.of(settings, 1)
    assert re.fullmatch(r".+-\d+-[0-9a-f]{6}", first.instance)
    assert first.instance != second.instance


@pytest.mark.parametrize(
    ("workers", "redis_url", "problem"),
    [
        (1, None, None),
        (1, "redis://h:1/0", None),
        (2, "redis://h:1/0", None),
        (
            2,
            None,
            "--workers 2 needs a shared store: set GATEWAY_REDIS_URL (or redis_url); without it "
            "each worker would keep its own runs, and a resume or a cancel that lands on "
            "another worker would not find them",
        ),
        (
            8,
            None,
            "--workers 8 needs a shared store: set GATEWAY_REDIS_URL (or redis_url); without it "
            "each worker would keep its own runs, and a resume or a cancel that lands on "
            "another worker would not find them",
        ),
    ],
)
def test_several_workers_need_a_shared_store(
    workers: int, redis_url: str | None, problem: str | None
) -> None:
    assert shared_store_problem(Settings(workers=workers, redis_url=redis_url)) == problem


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (0, "exit code 0"),
        (3, "exit code 3"),
        (-signal.SIGKILL, "signal SIGKILL"),
        (-signal.SIGTERM, "signal SIGTERM"),
        (-200, "signal 200"),
        (None, "still running"),
    ],
)
def test_an_exit_is_described_by_its_code_or_signal(code: int | None, text: str) -> None:
    assert describe_exit(code) == text


def test_the_listening_socket_takes_any_free_port_and_listens() -> None:
    with bind_socket("127.0.0.1", 0) as sock:
        host, port = sock.getsockname()
        assert host == "127.0.0.1" and port > 0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
