"""Fixtures of the bulk import tests (tests/gtm_api/test_imports*.py)."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


@pytest.fixture
def media_root(settings: Any, tmp_path: Any) -> Any:
    """Every test keeps its uploads in a folder of its own."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


@pytest.fixture
def run_tasks(django_capture_on_commit_callbacks: Any) -> Any:
    """`with run_tasks(): api.post(...)` runs the import the request enqueued (eager Celery)."""

    @contextmanager
    def running() -> Iterator[None]:
        with django_capture_on_commit_callbacks(execute=True):
            yield

    return running
