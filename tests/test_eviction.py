"""The start-up question to Redis about its eviction policy, against real redis-server processes.

Each test starts its own server on a free loopback port: the shared Redis
on 6379 must keep its configuration.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.test import override_settings

from django_oncejob.cache.eviction import eviction_warning
from tests.processes import Fleet, free_port, redis_server_program

TIMEOUTS = {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2}


@pytest.fixture
def redis_server() -> Iterator[Callable[..., str]]:
    """Start throwaway redis-servers; each call returns the URL of a new one."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(*extra: str) -> str:
        port = free_port()
        command = [redis_server_program(), "--port", str(port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no", *extra]
        processes.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
        client = redis.Redis(port=port, socket_connect_timeout=1, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or processes[-1].poll() is not None:
                    raise
                time.sleep(0.05)
        client.close()
        return f"redis://127.0.0.1:{port}/0"

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def django_redis(location: str | list[str], **options: Any) -> dict[str, Any]:
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": location,
        "OPTIONS": {**TIMEOUTS, **options},
    }


def warning_for(config: dict[str, Any]) -> str | None:
    with override_settings(CACHES={"default": django_redis("redis://127.0.0.1:6379/0"), **config}):
        return eviction_warning("claims")


def set_policy(url: str, policy: str) -> None:
    with redis.Redis.from_url(url) as client:
        client.config_set("maxmemory-policy", policy)


def test_noeviction_gives_no_warning(redis_server: Callable[..., str]) -> None:
    url = redis_server()
    assert warning_for({"claims": django_redis(url)}) is None


@pytest.mark.parametrize(
    "policy", ["allkeys-lru", "volatile-lru", "volatile-ttl", "volatile-random", "allkeys-lfu"]
)
def test_a_policy_that_can_evict_claims(redis_server: Callable[..., str], policy: str) -> None:
    url = redis_server()
    set_policy(url, policy)
    message = warning_for({"claims": django_redis(url)})
    assert message is not None
    assert message.startswith(f"The Redis of CACHES['claims'] has maxmemory-policy {policy!r}")
    assert "may evict claim keys, which have a timeout" in message
    assert "Set maxmemory-policy to 'noeviction'" in message


def test_djangos_redis_backend(redis_server: Callable[..., str]) -> None:
    url = redis_server()
    config = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": url,
        "OPTIONS": {"socket_timeout": 2},
    }
    assert warning_for({"claims": config}) is None
    set_policy(url, "allkeys-lru")
    message = warning_for({"claims": config})
    assert message is not None and "maxmemory-policy 'allkeys-lru'" in message


def test_the_primary_is_asked_not_a_replica(redis_server: Callable[..., str]) -> None:
    primary, other = redis_server(), redis_server()
    set_policy(primary, "volatile-lru")
    assert warning_for({"claims": django_redis([primary, other])}) is not None
    assert warning_for({"claims": django_redis([other, primary])}) is None


def test_every_shard_is_asked(redis_server: Callable[..., str]) -> None:
    first, second = redis_server(), redis_server()
    set_policy(second, "allkeys-random")
    config = django_redis([first, second], CLIENT_CLASS="django_redis.client.ShardClient")
    message = warning_for({"claims": config})
    assert message is not None and "'allkeys-random'" in message


def test_config_command_disabled(redis_server: Callable[..., str]) -> None:
    url = redis_server("--rename-command", "CONFIG", "")
    message = warning_for({"claims": django_redis(url)})
    assert message is not None
    assert message.startswith(
        "Could not ask the Redis of CACHES['claims'] for its maxmemory-policy: "
        "the server refused CONFIG GET (unknown command"
    )
    assert "Make sure it is 'noeviction'" in message


def test_config_denied_by_an_acl(redis_server: Callable[..., str]) -> None:
    url = redis_server()
    with redis.Redis.from_url(url) as admin:
        admin.acl_setuser(
            "app", enabled=True, passwords=["+secret"], keys=["*"], commands=["+@all", "-config"]
        )
    limited = url.replace("redis://", "redis://app:secret@")
    message = warning_for({"claims": django_redis(limited)})
    assert message is not None and "the server refused CONFIG GET" in message


def test_redis_not_reachable() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    message = warning_for({"claims": django_redis(url)})
    assert message is not None
    assert message.startswith(
        "Could not ask the Redis of CACHES['claims'] for its maxmemory-policy"
    )
    assert "connect" in message.lower()
    assert "ONCEJOB['ON_CACHE_ERROR']" in message
    assert ".." not in message


def test_a_cache_that_is_not_redis() -> None:
    config = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    assert warning_for({"claims": config}) is None


@pytest.mark.processes
def test_runjobs_warns_at_start_up_and_carries_on(
    redis_server: Callable[..., str], fleet: Callable[..., Fleet]
) -> None:
    url = redis_server()
    set_policy(url, "allkeys-lru")
    jobs = {"tick": {"func": "tests.jobs.record", "interval": {"hours": 1}}}
    made = fleet(jobs)
    (instance,) = made.start(env={"REDIS_URL": url})
    output = instance.output()
    assert "The Redis of CACHES['default'] has maxmemory-policy 'allkeys-lru'" in output
    assert output.index("maxmemory-policy") < output.index("scheduled 1 job (")
    assert made.stop() == [0]


@pytest.mark.processes
def test_runjobs_says_nothing_under_noeviction(
    redis_server: Callable[..., str], fleet: Callable[..., Fleet]
) -> None:
    url = redis_server()
    made = fleet({"tick": {"func": "tests.jobs.record", "interval": {"hours": 1}}})
    (instance,) = made.start(env={"REDIS_URL": url})
    assert made.stop() == [0]
    assert "maxmemory-policy" not in instance.output()
