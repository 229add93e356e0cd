"""Fixtures of the fault drills: the shared-services stack most drills run against."""

import logging
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.drills.stack import (
    SHARED_PG,
    SHARED_REDIS,
    Stack,
    database_drop,
    database_recreate,
    redis_flushdb,
    running,
)

# The drills' own HTTP calls are not worth a log line each.
logging.getLogger("httpx").setLevel(logging.WARNING)

DRILL_DATABASE = "neuronx_drill"
CACHE_DB, BROKER_DB = 7, 8


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """The drills' servers keep their own caches; the test process's one is not theirs."""


@pytest.fixture(scope="session")
def drill_root(request: pytest.FixtureRequest) -> Iterator[Path]:
    """One folder for the logs and uploads of a run, outside pytest's rotating temp folders
    (which another pytest run may prune while the servers still write there). Removed when
    every drill passed; otherwise kept, and named at the end of the run."""
    root = Path(tempfile.mkdtemp(prefix="neuronx-drills-"))
    yield root
    if request.session.testsfailed:
        _kept.append(root)
    else:
        shutil.rmtree(root, ignore_errors=True)


_kept: list[Path] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for root in _kept:
        terminalreporter.write_line(f"drill logs (gunicorn, worker, beat, access) kept in {root}")


@pytest.fixture
def drill_dir(drill_root: Path, request: pytest.FixtureRequest) -> Path:
    folder = drill_root / re.sub(r"[^\w-]", "_", request.node.name)[:60]
    folder.mkdir()
    return folder


@pytest.fixture(scope="session")
def shared_stack(drill_root: Path) -> Iterator[Stack]:
    """gunicorn (2 workers), a Celery worker and beat on the shared PostgreSQL (database
    `neuronx_drill`) and Redis (cache db 7, broker db 8), for the drills that take no service
    down. Each drill uses tenants of its own."""
    folder = drill_root / "shared-stack"
    folder.mkdir()
    cache_url, broker_url = f"{SHARED_REDIS}/{CACHE_DB}", f"{SHARED_REDIS}/{BROKER_DB}"
    for url in (cache_url, broker_url):
        redis_flushdb(url)
    stack = Stack(
        folder,
        database_url=database_recreate(SHARED_PG, DRILL_DATABASE),
        cache_url=cache_url,
        broker_url=broker_url,
    )
    stack.migrate()
    try:
        with running(stack):
            yield stack
    finally:
        database_drop(SHARED_PG, DRILL_DATABASE)
        for url in (cache_url, broker_url):
            redis_flushdb(url)
