"""The direct Redis connection of the request path, against a real Redis server."""

import os
import socket
import threading
import time

import pytest
from django.core.cache import caches
from redis import Redis, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from neuronx.redis_direct import DirectRedis, cache_add, direct_redis

URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/12")


@pytest.fixture
def server():
    """redis-py's client of the test Redis (database 12 unless TEST_REDIS_URL says otherwise)."""
    redis = Redis.from_url(URL, socket_connect_timeout=0.5, socket_timeout=2)
    try:
        redis.ping()
    except RedisError:
        pytest.skip(f"needs a Redis server: none answers at {URL} (set TEST_REDIS_URL)")
    redis.delete("direct:text", "direct:count", "direct:list", "direct:big")
    yield redis
    redis.delete("direct:text", "direct:count", "direct:list", "direct:big")


def test_replies_come_back_as_redis_py_reads_them(server):
    direct = direct_redis(server)
    assert direct is not None
    server.set("direct:text", "héllo\r\nworld")
    server.rpush("direct:list", "a", "b")
    replies = direct.round_trip(
        [
            ("GET", "direct:text"),
            ("GET", "direct:missing"),
            ("INCR", "direct:count"),
            ("INCRBY", "direct:count", 41),
            ("LRANGE", "direct:list", 0, -1),
            ("PING",),
        ]
    )
    assert replies == ["héllo\r\nworld".encode(), None, 1, 42, [b"a", b"b"], b"PONG"]
    assert server.get("direct:count") == b"42"  # the same database as the client's


def test_error_replies_take_their_place_and_the_connection_goes_on(server):
    direct = direct_redis(server)
    assert direct is not None
    server.set("direct:text", "not a number")
    missing, wrong, count = direct.round_trip(
        [
            ("EVALSHA", "0" * 40, 0),
            ("INCR", "direct:text"),
            ("INCR", "direct:count"),
        ]
    )
    assert isinstance(missing, NoScriptError)
    assert isinstance(wrong, ResponseError) and "not an integer" in str(wrong)
    assert count == 1
    assert direct.round_trip([("INCR", "direct:count")]) == [2]


def test_a_reply_larger_than_one_read_is_read_whole(server):
    direct = direct_redis(server)
    assert direct is not None
    big = os.urandom(300_000)
    server.set("direct:big", big)
    assert direct.round_trip([("GET", "direct:big"), ("PING",)]) == [big, b"PONG"]


def test_a_connection_the_server_closed_fails_once_then_connects_again(server):
    direct = direct_redis(server)
    assert direct is not None
    direct.round_trip([("PING",)])
    assert direct.sock is not None
    host, port = direct.sock.getsockname()[:2]
    assert server.client_kill(f"{host}:{port}")
    with pytest.raises(RedisConnectionError):
        direct.round_trip([("PING",)])
    assert direct.round_trip([("INCR", "direct:count")]) == [1]


def test_a_server_that_does_not_answer_times_out():
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    port = listener.getsockname()[1]
    direct = DirectRedis({"host": "127.0.0.1", "port": port, "socket_timeout": 0.3}, unix=False)
    started = time.monotonic()
    with pytest.raises(RedisConnectionError):
        direct.round_trip([("PING",)])
    assert 0.25 <= time.monotonic() - started < 10
    assert direct.sock is None
    listener.close()


def test_a_refused_password_leaves_the_round_trip_to_redis_py(server, caplog):
    settings = server.connection_pool.connection_kwargs
    refused = Redis(host=settings["host"], port=settings["port"], password="wrong")
    direct = direct_redis(refused)
    assert direct is not None
    with pytest.raises(RedisConnectionError):
        direct.round_trip([("PING",)])
    assert direct.refused and direct.sock is None
    assert direct_redis(refused) is None  # from now on
    (warning,) = [r for r in caplog.records if r.name == "neuronx.redis"]
    assert "refused the direct connection's setup" in warning.getMessage()


def test_an_interrupted_exchange_closes_the_connection(server, monkeypatch):
    direct = direct_redis(server)
    assert direct is not None
    direct.round_trip([("PING",)])

    def interrupted(sock, commands):
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        raise KeyboardInterrupt  # after the command went out, before its reply was read

    monkeypatch.setattr("neuronx.redis_direct._exchange", interrupted)
    with pytest.raises(KeyboardInterrupt):
        direct.round_trip([("PING",)])
    monkeypatch.undo()
    assert direct.sock is None
    assert direct.round_trip([("INCR", "direct:count")]) == [1]  # not the lost PING's reply


def test_tls_connections_keep_redis_py():
    assert direct_redis(Redis.from_url("rediss://127.0.0.1:6390/0")) is None
    assert direct_redis(Redis.from_url("redis://127.0.0.1:6390/0")) is not None


def test_each_thread_has_a_connection_of_its_own(server):
    here = direct_redis(server)
    there = []
    thread = threading.Thread(target=lambda: there.append(direct_redis(server)))
    thread.start()
    thread.join()
    assert here is direct_redis(server)
    assert there[0] is not None and there[0] is not here


def test_cache_add_sets_only_an_absent_entry_for_its_time(server, settings):
    settings.CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": URL}}
    cache = caches["default"]
    cache.delete("direct:flag")
    assert cache_add("default", "direct:flag", 1, timeout=5.5) is True
    assert cache_add("default", "direct:flag", 2, timeout=5.5) is False
    assert cache.get("direct:flag") == 1  # as django-redis reads what it writes
    key = cache.client.make_key("direct:flag")
    assert 0 < server.pttl(key) <= 5500
    server.pexpire(key, 1)  # its time is up
    wait = time.monotonic() + 5
    while server.exists(key) and time.monotonic() < wait:
        time.sleep(0.01)
    assert cache_add("default", "direct:flag", 3, timeout=30) is True
    assert cache.get("direct:flag") == 3
    cache.delete("direct:flag")


def test_cache_add_on_another_cache_is_its_own_add(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert cache_add("default", "direct:flag", 1, timeout=30) is True
    assert cache_add("default", "direct:flag", 1, timeout=30) is False


def test_cache_add_without_a_usable_expiry_follows_django_redis(server, settings):
    settings.CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": URL}}
    cache = caches["default"]
    cache.delete("direct:flag")
    assert cache_add("default", "direct:flag", 1, timeout=0) == cache.add("direct:flag", 1, 0)
    assert cache.get("direct:flag") is None  # no time left: nothing stored
    assert cache_add("default", "direct:flag", 1, timeout=None) is True
    assert server.pttl(cache.client.make_key("direct:flag")) == -1  # kept without expiry
    cache.delete("direct:flag")
