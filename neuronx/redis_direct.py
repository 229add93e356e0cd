"""The request path's Redis round trip on a plain socket, without redis-py's machinery around it.

Every authenticated request reads its API key's cache entry and counts itself against its rate
limit in one Redis round trip (`neuronx.ratelimit.rate_count_ahead`). On a pooled redis-py 8
connection, packing the commands, the pool's bookkeeping, observability hooks and the reply
parser cost more of a worker's CPU than the round trip itself: `rate_count_ahead` took about
170 µs of CPU that way, and takes about 90 µs on a socket written to and read from directly.

`DirectRedis` is that socket: one per process, thread and cache, speaking RESP2, for commands
sent together and answered together. It connects with the cache's own connection settings (host
and port or Unix socket path, database, username and password, timeouts); `direct_redis` gives
None for any other kind of connection (TLS, a credential provider), and for one whose setup the
server refused (logged once), which then keep redis-py.
Timeouts are the kernel's (`SO_RCVTIMEO`, `SO_SNDTIMEO`), so the blocking socket needs no poll
before each read. Any failure closes the socket, to be opened again by the next call, and
raises redis-py's `ConnectionError`, so callers treat it as they treat redis-py's.
"""

import logging
import os
import socket
import struct
import threading
from collections.abc import Sequence
from typing import Any

from django.core.cache import caches
from django_redis.cache import RedisCache
from redis.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

Command = Sequence[str | bytes | int]

logger = logging.getLogger("neuronx.redis")


class _Incomplete(Exception):
    """The replies read so far end before the last one does."""


class DirectRedis:
    def __init__(self, settings: dict[str, Any], *, unix: bool) -> None:
        self.settings = settings
        self.unix = unix
        self.sock: socket.socket | None = None
        self.pid = os.getpid()
        # The server refused to authenticate it or to select its database as given, where
        # redis-py's connections may know better (AUTH without a username on Redis 5).
        self.refused = False

    def round_trip(self, commands: Sequence[Command]) -> list[Any]:
        """The replies to `commands`, sent together: bytes, integers, lists and None as RESP2
        gives them; an error reply in its place as a `ResponseError` (`NoScriptError` for a
        script the server does not have)."""
        if self.pid != os.getpid():  # a forked child must not share its parent's stream
            self.sock, self.pid = None, os.getpid()
        try:
            sock = self.sock if self.sock is not None else self._connect()
            return _exchange(sock, commands)
        except (OSError, _Incomplete, ValueError) as error:
            self.close()
            raise RedisConnectionError(f"Redis round trip failed: {error!r}") from error
        except BaseException:
            self.close()  # replies may be on their way: the next exchange must not read them
            raise

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()

    def _connect(self) -> socket.socket:
        settings = self.settings
        timeout = settings.get("socket_timeout")
        connect_timeout = settings.get("socket_connect_timeout") or timeout
        sock: socket.socket
        if self.unix:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(connect_timeout)
            sock.connect(settings["path"])
        else:
            address = (settings.get("host", "localhost"), settings.get("port", 6379))
            sock = socket.create_connection(address, timeout=connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)
        if timeout:
            seconds = int(timeout)
            limit = struct.pack("ll", seconds, int((timeout - seconds) * 1_000_000))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)
        setup: list[Command] = []
        username, password = settings.get("username"), settings.get("password")
        if username or password:  # as redis-py authenticates
            setup.append(
                ["AUTH", username, password or ""] if username else ["AUTH", str(password)]
            )
        if settings.get("db"):
            setup.append(["SELECT", settings["db"]])
        try:
            refused = [reply for reply in _exchange(sock, setup) if isinstance(reply, Exception)]
        except BaseException:
            sock.close()
            raise
        if refused:
            sock.close()
            self.refused = True
            logger.warning(
                "Redis refused the direct connection's setup (%s); redis-py's connections "
                "carry the request path's round trip instead",
                refused[0],
            )
            raise OSError(f"the Redis server refused the connection's setup: {refused[0]}")
        self.sock = sock
        return sock


def _exchange(sock: socket.socket, commands: Sequence[Command]) -> list[Any]:
    if not commands:
        return []
    sock.sendall(b"".join(_pack(command) for command in commands))
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("the Redis server closed the connection")
        data += chunk
        try:
            replies, position = [], 0
            for _ in commands:
                reply, position = _parse(data, position)
                replies.append(reply)
        except _Incomplete:
            continue
        if position != len(data):
            raise ValueError("the Redis server sent more than the replies asked for")
        return replies


def _pack(command: Command) -> bytes:
    parts = [b"*%d\r\n" % len(command)]
    for argument in command:
        if isinstance(argument, str):
            argument = argument.encode()
        elif isinstance(argument, int):
            argument = b"%d" % argument
        parts.append(b"$%d\r\n%s\r\n" % (len(argument), argument))
    return b"".join(parts)


def _parse(data: bytes, position: int) -> tuple[Any, int]:
    """The RESP2 reply starting at `position`, and where the next one starts."""
    end = data.find(b"\r\n", position)
    if end < 0:
        raise _Incomplete
    kind, line, position = data[position : position + 1], data[position + 1 : end], end + 2
    if kind == b"$":
        length = int(line)
        if length < 0:
            return None, position
        if len(data) < position + length + 2:
            raise _Incomplete
        return data[position : position + length], position + length + 2
    if kind == b":":
        return int(line), position
    if kind == b"+":
        return line, position
    if kind == b"-":
        message = line.decode(errors="replace")
        if message.startswith("NOSCRIPT "):
            return NoScriptError(message.removeprefix("NOSCRIPT ")), position
        return ResponseError(message), position
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, position
        items = []
        for _ in range(count):
            item, position = _parse(data, position)
            items.append(item)
        return items, position
    raise ValueError(f"not a RESP2 reply: {data[position - 2 - len(line) - 1 :][:20]!r}")


# Per thread: a connection carries one exchange at a time (gunicorn's threaded workers).
_LOCAL = threading.local()


def direct_redis(redis: Any) -> DirectRedis | None:
    """The direct connection for the server of the redis-py client `redis`, one per process
    and thread; None if its connections are of a kind `DirectRedis` does not make (TLS, a
    credential provider)."""
    pool = redis.connection_pool
    connections: dict[int, tuple[Any, DirectRedis | None]] | None = getattr(
        _LOCAL, "connections", None
    )
    if connections is None:
        connections = _LOCAL.connections = {}
    known = connections.get(id(pool))
    if known is not None and known[0] is pool:
        direct = known[1]
        return None if direct is None or direct.refused else direct
    settings = pool.connection_kwargs
    kind = pool.connection_class
    direct = None
    if kind in (Connection, UnixDomainSocketConnection) and not settings.get("credential_provider"):
        direct = DirectRedis(dict(settings), unix=kind is UnixDomainSocketConnection)
    connections[id(pool)] = (pool, direct)
    return direct


def cache_add(alias: str, key: str, value: Any, timeout: float) -> bool:
    """`cache.add(key, value, timeout=timeout)` on the cache `alias`: on a django-redis cache,
    in one round trip on the direct connection where its connections allow one; whether the
    entry was absent (and now is `value` for `timeout` seconds)."""
    cache = caches[alias]
    client: Any = None
    direct = None
    # No expiry, none left, or one under a millisecond: left to django-redis's own rules.
    if isinstance(cache, RedisCache) and isinstance(timeout, int | float) and timeout >= 0.001:
        client = cache.client
        direct = direct_redis(client.get_client(write=True))
    if direct is None:
        return bool(cache.add(key, value, timeout=timeout))
    (reply,) = direct.round_trip(
        [("SET", client.make_key(key), client.encode(value), "NX", "PX", int(timeout * 1000))]
    )
    if isinstance(reply, Exception):
        raise reply
    return reply is not None
