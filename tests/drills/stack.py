"""The production stack as subprocesses, for the fault drills (docs/faults.md).

gunicorn (2 workers, `neuronx.wsgi`), a Celery worker and Celery beat, on PostgreSQL and Redis:
either the shared services (databases `neuronx_drill*`, Redis dbs 7 and 8) or private instances on
free loopback ports that a drill may stop, kill and restart. Every process is started in a
session of its own and ended by its process group, so nothing outlives a drill.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[2]
SHARED_PG = "postgres://postgres@127.0.0.1:5432"
SHARED_REDIS = "redis://127.0.0.1:6379"
SECRET_KEY = "drill-secret-key-7d1e4c9a2b6f8053e1a7c4d9b2f6e8a3c5d7091b"
# Passed through from the caller's environment; everything else a process sees is set here.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(
    condition: Callable[[], Any], *, timeout: float, what: str, every: float = 0.1
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(every)


class Process:
    """A subprocess in its own session, its output in a log file; `kill()` ends its whole group."""

    def __init__(self, name: str, args: list[str], *, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115  (closed in stop/kill)
        self.popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # `pid (comm) state ppid …`; comm may hold spaces: split after the last ')'.
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.pid:
                found.append(int(entry.name))
        return sorted(found)

    def kill(self) -> None:
        """SIGKILL the process and every process of its group at once: a crash."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._log.close()

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then SIGKILL whatever of the group is left."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        self._log.close()


# -- services -----------------------------------------------------------------------------------


class PrivateRedis:
    """A throw-away Redis on a free loopback port, without persistence: a kill loses everything."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: Process | None = None
        self.starts = 0

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.starts += 1
        self.process = Process(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.folder),
            ],
            env=base_env(),
            log=self.folder / f"redis-{self.starts}.log",
        )
        wait_until(self.answers, timeout=10, what="private redis answers")

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a free loopback port, owned by the `postgres` OS user
    (PostgreSQL refuses to run as root), that a drill may restart or crash."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="neuronx-drill-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        self.bin = bins[-1].parent if bins else Path(shutil.which("initdb") or "initdb").parent
        if os.geteuid() == 0:
            shutil.chown(self.folder, user="postgres", group="postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        else:
            self.as_owner = []
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")

    @property
    def options(self) -> str:
        # fsync off for speed: the drills crash the server, not the machine, and committed WAL
        # is already in the kernel's buffers (synchronous_commit stays on).
        return f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"

    def url(self, name: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.as_owner, str(self.bin / tool), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )

    def pg_ctl(self, action: str, *args: str) -> None:
        self._run(
            "pg_ctl", action, "-D", str(self.data), "-w", "-l", str(self.folder / "log"), *args
        )

    def start(self) -> None:
        self.pg_ctl("start", "-o", self.options)

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("stop", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        self.pg_ctl("restart", "-m", mode, "-o", self.options)

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


def database_recreate(server_url: str, name: str) -> str:
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server_url}/{name}"


def database_drop(server_url: str, name: str) -> None:
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def redis_flushdb(url: str) -> None:
    """Empty one Redis database (only the drills' own numbers are ever passed)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


# -- the application ----------------------------------------------------------------------------


def base_env() -> dict[str, str]:
    return {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}


class Stack:
    """The API (gunicorn, 2 workers), a Celery worker and beat on the given services."""

    def __init__(
        self,
        folder: Path,
        *,
        database_url: str,
        cache_url: str,
        broker_url: str,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.folder = folder
        self.media = folder / "media"
        self.media.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url
        self.env = {
            **base_env(),
            "DJANGO_SETTINGS_MODULE": "neuronx.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": cache_url,
            "CELERY_BROKER_URL": broker_url,
            "SECRET_KEY": SECRET_KEY,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "false",
            "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
            "MEDIA_ROOT": str(self.media),
            "PYTHONUNBUFFERED": "1",
            # Fast upkeep: beat sweeps the outbox every second; an overdue enqueue is one
            # second late, a dead worker's delivery or import lease expires after two.
            "WEBHOOK_SWEEP_INTERVAL_SECONDS": "1",
            "WEBHOOK_SWEEP_GRACE_SECONDS": "1",
            "WEBHOOK_DELIVERY_LEASE_SECONDS": "2",
            "WEBHOOK_RETRY_SCHEDULE": "1,1,1,1,1",
            "WEBHOOK_RETRY_JITTER_PERCENT": "0",
            "WEBHOOK_TIMEOUT_SECONDS": "5",
            "LEAD_IMPORT_LEASE_SECONDS": "2",
            "LEAD_IMPORT_CHUNK_ROWS": "100",
            **(extra_env or {}),
        }
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.server: Process | None = None
        self.worker: Process | None = None
        self.beat: Process | None = None
        self._workers_started = 0

    # commands

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def migrate(self) -> None:
        self.manage("migrate", "--no-input", "-v", "0")

    def tenant(self, slug: str, **rate_limits: str) -> str:
        """Seed a tenant (default scoring, routing) and return a new full-scope API key."""
        key = self.manage("seed_demo", "--tenant", slug).strip().splitlines()[-1]
        for rate_class, rate in rate_limits.items():
            self.manage("set_rate_limit", slug, rate_class, rate)
        return key

    def celery_call(self, task: str) -> None:
        """Send a task by name, as celery beat does on its schedule."""
        done = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "neuronx", "call", task],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr

    # processes

    def start_server(self) -> None:
        self.server = Process(
            "gunicorn",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                "python:neuronx.gunicorn_conf",
                "neuronx.wsgi",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "2",
                "--access-logfile",
                str(self.folder / "access.log"),
                "--access-logformat",
                '%(p)s "%(r)s" %(s)s',
            ],
            env=self.env,
            log=self.folder / "gunicorn.log",
        )
        wait_until(self._server_answers, timeout=30, what="gunicorn answers /healthz")
        wait_until(lambda: len(self.server_workers()) == 2, timeout=30, what="2 gunicorn workers")

    def _server_answers(self) -> bool:
        assert self.server is not None and self.server.alive(), self.server_log()[-3000:]
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def server_workers(self) -> list[int]:
        assert self.server is not None
        return self.server.children()

    def server_log(self) -> str:
        return self.server.log() if self.server else ""

    def log_records(self, since: int = 0) -> list[dict[str, Any]]:
        """The JSON log lines the API wrote (from line `since` of its log on)."""
        records = []
        for line in self.server_log().splitlines()[since:]:
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    records.append(json.loads(line))
        return records

    def log_mark(self) -> int:
        """Where the API's log ends now, for `log_records(since=…)`."""
        return len(self.server_log().splitlines())

    def access_log(self) -> list[str]:
        """One line per request answered so far: `<pid> "METHOD /path HTTP/1.1" status`."""
        path = self.folder / "access.log"
        return [line for line in path.read_text().splitlines() if line] if path.exists() else []

    def access_pids(self) -> list[int]:
        """The gunicorn worker pid of every request answered so far, in order."""
        return [int(line.split()[0].strip("<>")) for line in self.access_log()]

    def access_pids_after(self, answered: int, count: int) -> list[int]:
        """The worker pids of the `count` requests answered after the first `answered`, once
        their lines are in the access log: a sync worker writes it after sending the response."""
        wait_until(
            lambda: len(self.access_pids()) >= answered + count,
            timeout=10,
            what=f"{count} more lines in the access log",
        )
        return self.access_pids()[answered:]

    def start_worker(self, *, wait: bool = True) -> Process:
        self._workers_started += 1
        number = self._workers_started
        self.worker = Process(
            "celery-worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "neuronx",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "2",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--hostname",
                f"drill-{os.getpid()}-{number}@%h",
            ],
            env=self.env,
            log=self.folder / f"worker-{number}.log",
        )
        if wait:
            self.wait_worker_ready()
        return self.worker

    def supervise_worker(self) -> bool:
        """Start a new worker if the current one exited, as a process supervisor (systemd,
        Kubernetes) would; True if it had exited."""
        assert self.worker is not None
        if self.worker.alive():
            return False
        self.worker.stop()
        self.start_worker(wait=False)
        return True

    def wait_worker_ready(self) -> None:
        worker = self.worker
        assert worker is not None
        wait_until(
            lambda: " ready." in worker.log() or not worker.alive(),
            timeout=60,
            what="celery worker ready",
        )
        assert worker.alive(), worker.log()[-3000:]

    def start_beat(self) -> None:
        self.beat = Process(
            "celery-beat",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "neuronx",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(self.folder / "beat-schedule"),
            ],
            env=self.env,
            log=self.folder / "beat.log",
        )

    def stop(self) -> None:
        for process in (self.beat, self.worker, self.server):
            if process is not None and process.popen.returncode is None:
                process.stop()

    # the client's view

    def client(self, key: str, timeout: float = 30) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout,
        )

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()

    def tenant_id(self, slug: str) -> str:
        return str(self.sql("SELECT id FROM neuronx_tenant WHERE slug = %s", slug)[0][0])


@contextmanager
def running(stack: Stack, *, worker: bool = True, beat: bool = True) -> Iterator[Stack]:
    try:
        # Started side by side: each takes seconds to import the project.
        if beat:
            stack.start_beat()
        if worker:
            stack.start_worker(wait=False)
        stack.start_server()
        if worker:
            stack.wait_worker_ready()
        yield stack
    finally:
        stack.stop()


def concurrently(count: int, send: Callable[[int], Any]) -> list[Any]:
    """Run `send(i)` for i in 0..count-1 on `count` threads released at once by a barrier."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    failures: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = send(index)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    return results


def lead_body(n: int | str, **extra: Any) -> dict[str, Any]:
    return {
        "email": f"lead{n}@drill-corp.com",
        "first_name": "Drill",
        "last_name": f"Lead {n}",
        "source": "drill",
        **extra,
    }


def consent(scope: str) -> dict[str, Any]:
    return {
        "scope": scope,
        "granted": True,
        "captured_at": datetime.now(UTC).isoformat(),
        "source": "drill",
    }


def is_problem(response: httpx.Response, status: int, code: str) -> bool:
    return (
        response.status_code == status
        and response.headers.get("content-type") == "application/problem+json"
        and response.json().get("code") == code
    )
