"""The load generator of `bench/api_bench.py`: closed-loop HTTP/1.1 clients on asyncio, and
the CPU time of the server's processes while they run.
"""

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg


@dataclass
class Result:
    name: str
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    client_cpu: float = 0.0  # share of one CPU the load generator used while measuring
    app_cpu: float = 0.0  # CPU seconds of the gunicorn workers while measuring
    db_cpu: float = 0.0  # CPU seconds of the PostgreSQL backends serving them

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @classmethod
    def merged(cls, parts: list["Result"]) -> "Result":
        whole = cls(parts[0].name)
        for part in parts:
            whole.requests += part.requests
            whole.seconds += part.seconds
            whole.latencies += part.latencies
            for status, count in part.statuses.items():
                whole.statuses[status] = whole.statuses.get(status, 0) + count
            whole.client_cpu += part.client_cpu * part.seconds
            whole.app_cpu += part.app_cpu
            whole.db_cpu += part.db_cpu
        whole.client_cpu /= whole.seconds
        return whole

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


RequestMaker = Callable[[int], bytes]


def http_request(method: str, path: str, key: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {key}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _exchange(
    port: int, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None, request: bytes
) -> tuple[int, tuple[asyncio.StreamReader, asyncio.StreamWriter] | None]:
    """Send one request (connecting first if needed); the status and the connection to reuse."""
    if conn is None:
        conn = await asyncio.open_connection("127.0.0.1", port)
    reader, writer = conn
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, keep = 0, True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep = False
    if length:
        await reader.readexactly(length)
    if not keep:
        writer.close()
        return status, None
    return status, conn


def _cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


class CpuProbe:
    """CPU time of the server's workers and of the PostgreSQL backends of this database."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        # Its own connection: Django's may not be used from the load generator's event loop.
        self.db = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)

    def snapshot(self) -> dict[str, dict[int, float]]:
        try:
            children = Path(f"/proc/{self.server_pid}/task/{self.server_pid}/children")
            workers = [int(pid) for pid in children.read_text().split()]
        except OSError:
            workers = []
        backends = [
            row[0]
            for row in self.db.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
        ]
        return {
            "app": {pid: _cpu_seconds(pid) for pid in workers},
            "db": {pid: _cpu_seconds(pid) for pid in backends},
        }

    @staticmethod
    def spent(before: dict[int, float], after: dict[int, float]) -> float:
        """CPU seconds of the processes alive at both ends (a backend that ended is missed)."""
        return sum(after[pid] - before[pid] for pid in after if pid in before)


async def _drive(
    port: int,
    make: RequestMaker,
    concurrency: int,
    warmup: float,
    duration: float,
    result: Result,
    probe: CpuProbe | None,
) -> None:
    counter = iter(range(1 << 62))
    loop = asyncio.get_running_loop()
    begin = loop.time() + warmup
    end = begin + duration
    cpu: list[float] = []

    async def client() -> None:
        conn = None
        while True:
            started = loop.time()
            if started >= end:
                break
            request = make(next(counter))
            status, conn = await _exchange(port, conn, request)
            done = loop.time()
            if started >= begin and done <= end:
                result.requests += 1
                result.latencies.append(done - started)
                result.statuses[status] = result.statuses.get(status, 0) + 1
        if conn is not None:
            conn[1].close()

    async def clock() -> None:
        await asyncio.sleep(max(0.0, begin - loop.time()))
        cpu.append(time.process_time())
        servers.append(probe.snapshot() if probe else {})
        await asyncio.sleep(max(0.0, end - loop.time()))
        cpu.append(time.process_time())
        servers.append(probe.snapshot() if probe else {})

    servers: list[dict[str, dict[int, float]]] = []
    await asyncio.gather(clock(), *(client() for _ in range(concurrency)))
    result.seconds = duration
    result.client_cpu = (cpu[1] - cpu[0]) / duration
    if probe is not None:
        result.app_cpu = probe.spent(servers[0]["app"], servers[1]["app"])
        result.db_cpu = probe.spent(servers[0]["db"], servers[1]["db"])


def measure(
    name: str,
    port: int,
    make: RequestMaker,
    *,
    concurrency: int,
    warmup: float,
    duration: float,
    probe: CpuProbe | None = None,
) -> Result:
    result = Result(name)
    asyncio.run(_drive(port, make, concurrency, warmup, duration, result, probe))
    return result
