"""Webhook delivery throughput through the real pipeline, against a no-op Celery task.

Both rates are measured in the same run on the same worker pool (a `celery -A neuronx worker`
subprocess): first N no-op tasks, then N events published with `event_publish` (outbox row →
dispatch task → delivery task → signed HTTPS-less POST over the SSRF-pinned transport to a
loopback receiver → attempt logged, usage metered). Prints attempts/s, no-op tasks/s and their
ratio (target ≥ 0.3). Run it on the production stack, e.g.:

    createdb -h 127.0.0.1 -U postgres neuronx_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/neuronx_bench \
    REDIS_URL=redis://127.0.0.1:6379/9 CELERY_BROKER_URL=redis://127.0.0.1:6379/10 \
    SECRET_KEY=x .venv/bin/python bench/webhook_bench.py --events 2000 --concurrency 4

The worker imports this module (`-I bench.webhook_bench`) for the no-op task; only `main()` runs
the benchmark.
"""

import argparse
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neuronx.settings")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from celery import shared_task  # noqa: E402
from django.conf import settings  # noqa: E402

from neuronx.celery import app  # noqa: E402

COUNTER = "bench:webhook:noop"


_clients: dict[str, redis.Redis] = {}


def _redis() -> redis.Redis:
    if "broker" not in _clients:
        _clients["broker"] = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    return _clients["broker"]


@shared_task(name="bench.noop")
def noop() -> None:
    """The baseline: a task that does nothing but let the benchmark count it."""
    _redis().incr(COUNTER)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received: Any = None  # a multiprocessing counter, set in the receiver process

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with _Handler.received.get_lock():
            _Handler.received.value += 1
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _receive(port: Any, received: Any) -> None:
    """The loopback receiver, in its own process: its threads must not take the producer's GIL."""
    _Handler.received = received
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    port.value = server.server_address[1]
    server.serve_forever(0.05)


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def _worker(concurrency: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
        "LOG_LEVEL": os.environ.get("BENCH_WORKER_LOGLEVEL", "WARNING"),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "neuronx",
            "worker",
            "-I",
            "bench.webhook_bench",
            "--loglevel",
            os.environ.get("BENCH_WORKER_LOGLEVEL", "WARNING"),
            "--concurrency",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--hostname",
            f"bench-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=env,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    if not settings.CELERY_BROKER_URL or settings.DATABASES["default"]["ENGINE"].endswith(
        "sqlite3"
    ):
        raise SystemExit("run on PostgreSQL and a Redis broker (see the module docstring)")

    from django.core.management import call_command
    from django.db import transaction

    from neuronx.context import Actor
    from neuronx.models import Tenant
    from webhooks.models import Delivery, DeliveryAttempt, DeliveryStatus, Event
    from webhooks.services import event_publish, subscription_create

    call_command("migrate", verbosity=0)
    broker = _redis()
    broker.delete(COUNTER)
    port, received = multiprocessing.Value("i", 0), multiprocessing.Value("l", 0)
    receiver = multiprocessing.get_context("fork").Process(
        target=_receive, args=(port, received), daemon=True
    )
    receiver.start()
    _wait(lambda: port.value, 10, "the receiver")

    tenant, _ = Tenant.objects.get_or_create(slug="webhook-bench", defaults={"name": "Bench"})
    actor = Actor(tenant=tenant, internal="bench")
    from webhooks.models import WebhookSubscription

    WebhookSubscription.objects.filter(tenant=tenant).delete()
    Event.objects.filter(tenant=tenant).delete()  # leftovers of an interrupted run
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    subscription_create(
        actor=actor,
        url=f"http://127.0.0.1:{port.value}/hook",
        event_types=["lead.created"],
    )
    lead = {
        "id": "lead_01M8H7Q4BS2MV9G75JWSTVEAMD",
        "email": "ada.lovelace@analytical-engines.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company": "Analytical Engines Ltd",
        "attributes": {"utm_campaign": "spring", "employees": 120},
        "stage": "new",
    }

    worker = _worker(args.concurrency)
    name = f"bench-{os.getpid()}@{socket.gethostname()}"

    enqueued: list[float] = []

    def paused(enqueue: Any) -> float:
        """Enqueue a whole batch while the pool does not consume, then let it go: the clock
        measures the pool draining the queue, not the producer."""
        app.control.cancel_consumer("celery", destination=[name], reply=True, timeout=10)
        began = time.monotonic()
        enqueue()
        enqueued.append(time.monotonic() - began)
        app.control.add_consumer("celery", destination=[name], reply=True, timeout=10)
        return time.monotonic()

    def publish(count: int) -> None:
        for _ in range(count):
            with transaction.atomic():  # one change, one event, as an API call publishes it
                event_publish(actor=actor, type="lead.created", data={"lead": lead})

    def delivered() -> int:
        return Delivery.objects.filter(tenant=tenant, status=DeliveryStatus.SUCCEEDED).count()

    def attempts() -> int:
        return DeliveryAttempt.objects.filter(delivery__tenant=tenant).count()

    try:
        # Warm-up: the pool is up, every process has imported the code and connected.
        for _ in range(args.concurrency * 4):
            noop.delay()
        _wait(lambda: int(broker.get(COUNTER) or 0) >= args.concurrency * 4, 60, "warm-up")
        publish(args.concurrency * 4)
        _wait(lambda: delivered() >= args.concurrency * 4, 60, "warm-up deliveries")

        broker.set(COUNTER, 0)
        started = paused(lambda: [noop.delay() for _ in range(args.events)])
        _wait(lambda: int(broker.get(COUNTER) or 0) >= args.events, 600, "no-op tasks")
        noop_seconds = time.monotonic() - started

        done, made = delivered(), attempts()
        started = paused(lambda: publish(args.events))
        _wait(lambda: delivered() >= done + args.events, 600, "deliveries")
        webhook_seconds = time.monotonic() - started
        webhook_attempts = attempts() - made

        # The same with the producer running concurrently (an API under load), for reference.
        done, made = delivered(), attempts()
        started = time.monotonic()
        publish(args.events)
        live_published = time.monotonic() - started
        _wait(lambda: delivered() >= done + args.events, 600, "deliveries")
        live_seconds = time.monotonic() - started
        live_attempts = attempts() - made
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        receiver.terminate()

    noop_rate = args.events / noop_seconds
    webhook_rate = webhook_attempts / webhook_seconds
    print(
        f"worker pool:        celery prefork, concurrency {args.concurrency}, on {os.cpu_count()} CPUs"
    )
    print(f"no-op tasks:        {args.events} in {noop_seconds:.2f} s = {noop_rate:.0f}/s")
    print(
        f"webhook attempts:   {webhook_attempts} in {webhook_seconds:.2f} s = {webhook_rate:.0f}/s "
        f"(outbox → dispatch → signed POST → logged; {received.value} received in all)"
    )
    print(f"ratio:              {webhook_rate / noop_rate:.2f}x (target >= 0.3x)")
    print(
        f"producer alone:     {args.events} events published in {enqueued[-1]:.2f} s = "
        f"{args.events / enqueued[-1]:.0f}/s (one transaction each, no worker consuming)"
    )
    print(
        f"with the producer:  {live_attempts} in {live_seconds:.2f} s = "
        f"{live_attempts / live_seconds:.0f}/s (publishing in the same window, same CPUs: "
        f"the last event was published after {live_published:.2f} s)"
    )


if __name__ == "__main__":
    main()
