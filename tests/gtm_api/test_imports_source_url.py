"""`{"source_url": …}`: the worker fetches the file, with the webhooks' SSRF protection.

A real HTTP server on 127.0.0.1 serves the files; loopback is only reachable with
WEBHOOK_ALLOW_PRIVATE_TARGETS (development and tests), which the tests turn on where they need it.
"""

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gtm_api.models import Lead, LeadImport
from gtm_api.services import imports_fetch
from tests.conftest import problem
from tests.gtm_api.importing import (
    csv_bytes,
    failed_rows,
    job,
    row_errors,
)
from webhooks.targets import PinnedTransport

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]

CSV = csv_bytes("crm-1,ada@acme-corp.com,,A,B,,,csv", "crm-2,bad,,A,B,,,csv")


@dataclass
class Route:
    status: int = 200
    body: bytes = CSV
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/csv"})
    delay: float = 0.0


class Files:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.routes: dict[str, Route] = {}
        self.requested: list[str] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"


@pytest.fixture
def files() -> Iterator[Files]:
    holder: dict[str, Files] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served = holder["files"]
            served.requested.append(self.path)
            route = served.routes.get(self.path, Route(status=404, body=b"no"))
            time.sleep(route.delay)
            self.send_response(route.status)
            for name, value in {"Content-Length": str(len(route.body)), **route.headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(route.body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    holder["files"] = Files(server)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield holder["files"]
    server.shutdown()
    server.server_close()


@pytest.fixture
def private_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True


def submit(api, run_tasks, url: str, **options) -> dict:
    with run_tasks():
        response = api.post("/v1/lead-imports", {"source_url": url, **options})
    return job(api, response)


def test_a_csv_is_fetched_stored_and_imported(alice, run_tasks, files, private_allowed):
    files.routes["/exports/leads.csv"] = Route()
    done = submit(alice, run_tasks, files.url("/exports/leads.csv"))
    assert (done["source"], done["source_url"], done["format"]) == (
        "url",
        files.url("/exports/leads.csv"),
        "csv",
    )
    assert done["size_bytes"] == len(CSV)
    assert done["counts"] == {"received": 2, "created": 1, "updated": 0, "failed": 1}
    assert row_errors(alice, done["id"]) == [(2, "email", "invalid_email")]
    assert "crm-2,bad" in failed_rows(alice, done["id"])  # from the stored copy
    assert files.requested == ["/exports/leads.csv"]  # fetched once


def test_ndjson_by_media_type_extension_or_option(alice, run_tasks, files, private_allowed):
    body = b'{"email": "a@acme-corp.com", "first_name": "A", "last_name": "B", "source": "x"}\n'
    files.routes["/a"] = Route(body=body, headers={"Content-Type": "application/x-ndjson"})
    files.routes["/b.jsonl"] = Route(body=body, headers={"Content-Type": "text/plain"})
    files.routes["/c"] = Route(body=body, headers={"Content-Type": "application/octet-stream"})
    for path, options in (("/a", {}), ("/b.jsonl", {}), ("/c", {"format": "ndjson"})):
        Lead.objects.all().delete()
        done = submit(alice, run_tasks, files.url(path), **options)
        assert (done["format"], done["status"]) == ("ndjson", "completed"), path


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://files.example.com/leads.csv", "https_required"),
        ("https://127.0.0.1/leads.csv", "forbidden_target"),
        ("https://[::1]/leads.csv", "forbidden_target"),
        ("https://169.254.169.254/latest/meta-data", "forbidden_target"),
        ("https://user:secret@files.example.com/leads.csv", "credentials_not_allowed"),
        ("not a url", "invalid"),
    ],
)
def test_forbidden_urls_are_refused_at_submission(alice, url, code):
    body = problem(alice.post("/v1/lead-imports", {"source_url": url}), 422, "validation_error")
    assert [(e["field"], e["code"]) for e in body["errors"]] == [("source_url", code)]
    assert not LeadImport.objects.exists()


def test_a_name_resolving_to_a_private_address_fails_the_job_at_fetch(alice, run_tasks, files):
    files.routes["/leads.csv"] = Route()
    port = files.server.server_address[1]
    done = submit(alice, run_tasks, f"https://localhost:{port}/leads.csv")
    assert (done["status"], done["error"]["code"]) == ("failed", "source_forbidden")
    assert "loopback" in done["error"]["message"]
    assert files.requested == []  # never connected


def test_a_redirect_to_a_forbidden_target_is_not_followed(
    alice, run_tasks, files, monkeypatch, settings
):
    files.routes["/start"] = Route(status=302, headers={"Location": files.url("/leads.csv")})
    files.routes["/leads.csv"] = Route()

    class FirstHopAllowed(PinnedTransport):
        """The first hop stands for a public server; every redirect is checked for real."""

        hops = 0

        def handle_request(self, request):
            FirstHopAllowed.hops += 1
            settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = FirstHopAllowed.hops == 1
            return super().handle_request(request)

    monkeypatch.setattr(imports_fetch, "PinnedTransport", FirstHopAllowed)
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True  # to submit the loopback URL
    done = submit(alice, run_tasks, files.url("/start"))
    assert (done["status"], done["error"]["code"]) == ("failed", "source_forbidden")
    assert files.requested == ["/start"]


def test_redirects_are_followed_a_few_times_only(alice, run_tasks, files, private_allowed):
    files.routes["/moved"] = Route(status=301, headers={"Location": "/leads.csv"})
    files.routes["/leads.csv"] = Route()
    files.routes["/loop"] = Route(status=302, headers={"Location": "/loop"})
    assert submit(alice, run_tasks, files.url("/moved"))["counts"]["created"] == 1
    Lead.objects.all().delete()
    done = submit(alice, run_tasks, files.url("/loop"))
    assert (done["status"], done["error"]["code"]) == ("failed", "source_unreachable")
    assert "redirected more than 3 times" in done["error"]["message"]


@pytest.mark.parametrize(
    ("route", "code"),
    [
        (Route(status=404, body=b"gone"), "source_unreachable"),
        (Route(status=500, body=b"oops"), "source_unreachable"),
        (Route(body=b"x" * 200), "source_too_large"),
        (Route(body=b""), "empty_file"),
        (Route(body=b"email,first_name,last_name,source,colour\nx,y,z,w,v\n"), "unknown_column"),
    ],
)
def test_a_source_that_cannot_be_imported_fails_the_job_precisely(
    alice, run_tasks, files, private_allowed, settings, route, code
):
    settings.LEAD_IMPORT_MAX_FILE_BYTES = 100
    files.routes["/leads.csv"] = route
    done = submit(alice, run_tasks, files.url("/leads.csv"))
    assert (done["status"], done["error"]["code"]) == ("failed", code)
    assert done["counts"] == {"received": 0, "created": 0, "updated": 0, "failed": 0}


def test_a_slow_source_times_out(alice, run_tasks, files, private_allowed, settings):
    settings.LEAD_IMPORT_FETCH_TIMEOUT_SECONDS = 1
    files.routes["/slow.csv"] = Route(delay=2)
    done = submit(alice, run_tasks, files.url("/slow.csv"))
    assert (done["status"], done["error"]["code"]) == ("failed", "source_timeout")
