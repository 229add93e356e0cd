"""A real Celery worker process for integration tests, on the test database and a real broker.

The broker is `CELERY_TEST_BROKER_URL` when set (Redis in CI's production-stack run) and
otherwise kombu's filesystem transport in a temporary folder, so the same tests run with no
services at all under `make test`.
"""

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from kombu import pools

from neuronx.celery import app

ROOT = Path(__file__).resolve().parent.parent


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _reset_broker_connections() -> None:
    """Drop pooled broker connections so the next publish uses the current broker settings."""
    if app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
    app.amqp._producer_pool = None
    pools.reset()  # kombu keeps closed pools registered per broker URL


@contextmanager
def celery_worker(tmp_path: Path, *, concurrency: int = 2) -> Iterator["WorkerHandle"]:
    broker = os.environ.get("CELERY_TEST_BROKER_URL", "")
    options: dict[str, Any] = {}
    if not broker:
        folder = tmp_path / "broker"
        (folder / "processed").mkdir(parents=True)
        broker = "filesystem://"
        options = {
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
            "control_folder": str(folder / "control"),
        }
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "SECRET_KEY": settings.SECRET_KEY,
        "CELERY_BROKER_URL": broker,
        "CELERY_BROKER_TRANSPORT_OPTIONS": json.dumps(options),
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
    }
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115  (closed below)
    process = subprocess.Popen(
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
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--hostname",
            f"test-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    previous = {
        key: app.conf[key]
        for key in ("broker_url", "task_always_eager", "broker_transport_options")
    }
    app.conf.update(broker_url=broker, task_always_eager=False, broker_transport_options=options)
    _reset_broker_connections()
    handle = WorkerHandle(process=process, log_path=tmp_path / "worker.log")
    try:
        yield handle
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        app.conf.update(previous)
        _reset_broker_connections()


class WorkerHandle:
    def __init__(self, *, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, condition: Callable[[], Any], *, timeout: float = 90) -> Any:
        """Poll `condition` until it is truthy; fail with the worker's log if it never is. The
        time allowed includes the worker's start, slow on a loaded machine."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            assert self.process.poll() is None, f"worker died:\n{self.log()[-3000:]}"
            time.sleep(0.1)
        raise AssertionError(f"condition not met in {timeout}s; worker log:\n{self.log()[-3000:]}")
