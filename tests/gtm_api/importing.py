"""Helpers for the bulk import tests: files, uploads and reading a job's outcome as a client."""

import uuid
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import Api

HEADER = "external_id,email,phone,first_name,last_name,company,country,source"


def csv_bytes(*rows: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def upload(
    api: Api,
    content: bytes,
    *,
    name: str = "leads.csv",
    content_type: str = "text/csv",
    idempotency_key: str | None = None,
    **fields: Any,
) -> Any:
    headers = {
        "Authorization": f"Bearer {api.key}",
        "Idempotency-Key": idempotency_key or f"test-{uuid.uuid4()}",
    }
    data = {"file": SimpleUploadedFile(name, content, content_type=content_type), **fields}
    return api.client.post("/v1/lead-imports", data, headers=headers)


def job(api: Api, response: Any) -> dict[str, Any]:
    """The job as `GET /v1/lead-imports/{id}` shows it now."""
    assert response.status_code == 202, response.content
    found = api.get(response["Location"])
    assert found.status_code == 200, found.content
    return found.json()


def row_errors(api: Api, job_id: str) -> list[tuple[int, str | None, str]]:
    """Every row error of the job, following the pagination."""
    found: list[tuple[int, str | None, str]] = []
    page = api.get(f"/v1/lead-imports/{job_id}/errors", {"limit": 200}).json()
    while True:
        found += [(e["row"], e["field"], e["code"]) for e in page["results"]]
        if not page["next"]:
            return found
        page = api.get(page["next"]).json()


def failed_rows(api: Api, job_id: str) -> str:
    response = api.get(f"/v1/lead-imports/{job_id}/failed-rows")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return b"".join(response.streaming_content).decode()
