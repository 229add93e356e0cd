"""API requests/s and latency on the production stack, against a constant-JSON Django view.

    createdb -h 127.0.0.1 -U postgres neuronx_apibench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/neuronx_apibench \\
    REDIS_URL=redis://127.0.0.1:6379/5 CELERY_BROKER_URL=redis://127.0.0.1:6379/6 \\
    SECRET_KEY=x .venv/bin/python bench/api_bench.py

In one run it

1. migrates the database and makes two tenants with `seed_demo` (rate limits lifted with
   `set_rate_limit`): `apibench-small` with 10,000 leads and `apibench-large` with 1,000,000,
   COPYed straight into the leads table — created over two years, ids minted from their
   creation time as the API mints them, spread over the stages — plus the history each
   lead's stage implies (stage transitions, qualification, assignment, appointment, payment,
   consent records), then ANALYZEs; and reads them, with their indexes, into memory
   (`pg_prewarm`), as a database server's working set would be;
2. starts gunicorn (`neuronx.wsgi`, sync workers, as the README deploys it) on loopback with
   the production settings plus one `/bench/constant` view (`bench.api_bench_settings`), on the
   PostgreSQL database, Redis cache and Redis broker of the environment (no Celery worker: the
   tasks `POST /v1/leads` enqueues after commit wait in the broker);
3. drives the same closed-loop load (N connections, each sending its next request when the
   last one has been answered) at `GET /v1/leads/{id}`, `GET /v1/leads/{id}/status` and
   `GET /v1/leads?limit=50` of each tenant (ids drawn at random from the whole tenant) and at
   `POST /v1/leads` (unique bodies, fresh idempotency keys) into the large tenant, each in
   slices alternating with slices of the constant view (and of the other tenant), so that a
   change in the load of the shared machine weighs on both sides of every ratio;
4. prints requests/s, p50 and p99 of each, their ratios to the baseline measured alongside
   (targets: create ≥ 0.15×, reads ≥ 0.35×, p99 ≤ 6× the baseline's), the ratio of each read
   between the two tenants (target: within 1.2×), and the CPU time per request of the
   gunicorn workers and of their PostgreSQL backends; last, `every target met` (exit status 0)
   or the targets missed (exit status 3).

The database must be one of its own: the bench refuses one with other tenants, and empties
the lead tables before loading. `--reuse` keeps leads already loaded (for iterating; the
documented figures come from full runs). The leads the bench creates through the API are
deleted at the end.
"""

import argparse
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neuronx.settings")

import django  # noqa: E402

django.setup()

# The bench's own modules, beside this script (its folder is on sys.path).
from api_bench_data import (  # noqa: E402
    CREATED_SOURCE,
    analyze,
    cleanup,
    lead_count,
    load,
    prewarm,
    sample_ids,
    tenant_with_key,
)
from api_bench_load import CpuProbe, RequestMaker, Result, http_request, measure  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from neuronx.models import Tenant  # noqa: E402

SMALL, LARGE = "apibench-small", "apibench-large"


def create_body(run: str, i: int) -> bytes:
    return json.dumps(
        {
            "external_id": f"bench-{run}-{i}",
            "email": f"ada.lovelace.{run}.{i}@analytical-engines.com",
            "phone": f"+4930{10_000_000 + i % 89_999_999}",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "company": "Analytical Engines Ltd",
            "job_title": "VP Engineering",
            "country": "DE",
            "source": CREATED_SOURCE,
            "attributes": {"utm_campaign": "spring", "employees": 120},
            "consents": [
                {
                    "scope": "data.profiling",
                    "granted": True,
                    "captured_at": "2026-01-05T09:30:00Z",
                    "source": "web_form",
                }
            ],
        },
        separators=(",", ":"),
    ).encode()


# -- server -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    port: int, workers: int, worker_class: str, threads: int, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.api_bench_settings",
        # Loopback has no TLS terminator in front; production keeps the https redirect.
        "SECURE_SSL_REDIRECT": "false",
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:neuronx.gunicorn_conf",
        "neuronx.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        "--chdir",
        str(ROOT),
    ]
    if worker_class == "gthread":
        command += ["--threads", str(threads)]
    with log.open("ab") as out:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with {server.returncode}; see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /bench/constant HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return server
        except OSError:
            pass
        time.sleep(0.2)
    server.terminate()
    raise SystemExit(f"gunicorn did not answer within 60 s; see {log}")


# -- the run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    name: str
    make: RequestMaker
    status: int  # every answer must have it
    target: float | None = None  # minimum ratio of requests/s to the baseline's


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:6.1f} ms"


def meets(result: Result, baseline: Result, target: float) -> bool:
    ratio = result.rate / baseline.rate
    return ratio >= target and result.percentile(0.99) <= P99_LIMIT * baseline.percentile(0.99)


def report_line(result: Result, baseline: Result | None, target: float | None) -> str:
    line = (
        f"{result.name:<32} {result.rate:6.0f}/s  p50 {_ms(result.percentile(0.5))}  "
        f"p99 {_ms(result.percentile(0.99))}"
    )
    if baseline is not None:
        ratio = result.rate / baseline.rate
        p99 = result.percentile(0.99) / baseline.percentile(0.99)
        line += f"  {ratio:5.2f}×  p99 {p99:4.1f}×"
        if target is not None:
            verdict = "ok" if meets(result, baseline, target) else "MISSED"
            line += f"  {verdict} (≥ {target:.2f}×, p99 ≤ {P99_LIMIT:g}×)"
    return line + f"  [{_cpu_note(result)}]"


def _cpu_note(result: Result) -> str:
    return (
        f"CPU per request: app {result.app_cpu / result.requests * 1000:.1f} ms, "
        f"PostgreSQL {result.db_cpu / result.requests * 1000:.1f} ms; "
        f"load generator {result.client_cpu * 100:.0f} % of a CPU"
    )


BASELINE = "baseline: constant JSON view"
READ_TARGET, CREATE_TARGET = 0.35, 0.15  # requests/s as a share of the baseline's
P99_LIMIT = 6.0
SCALE_LIMIT = 1.2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=10_000, help="leads of the small tenant")
    parser.add_argument("--large", type=int, default=1_000_000, help="leads of the large tenant")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--worker-class", default="sync", choices=["sync", "gthread"])
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker")
    parser.add_argument("--concurrency", type=int, default=8, help="connections of the load")
    parser.add_argument("--duration", type=float, default=9.0, help="seconds measured per endpoint")
    parser.add_argument("--rounds", type=int, default=3, help="slices the duration is cut in")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds before each slice")
    parser.add_argument("--sample", type=int, default=50_000, help="lead ids drawn per tenant")
    parser.add_argument("--reuse", action="store_true", help="keep already-loaded leads")
    parser.add_argument("--only", default="", help="measure only endpoints whose name has this")
    args = parser.parse_args()
    if connection.vendor != "postgresql" or not settings.CELERY_BROKER_URL:
        print("Run on PostgreSQL with a Redis broker (see the module docstring).", file=sys.stderr)
        return 2
    if not str(settings.CACHES["default"]["BACKEND"]).endswith("RedisCache"):
        print("Set REDIS_URL: rate limits are counted in Redis in production.", file=sys.stderr)
        return 2

    call_command("migrate", verbosity=0)
    others = Tenant.objects.exclude(slug__in=[SMALL, LARGE])
    if others.exists():
        print(
            f"The database holds {others.count()} other tenants: use one of its own.",
            file=sys.stderr,
        )
        return 2
    (small, small_key), (large, large_key) = tenant_with_key(SMALL), tenant_with_key(LARGE)
    cleanup([small, large])  # leftovers of an interrupted run
    wanted = [(small, args.small, 1), (large, args.large, 2)]
    started = time.perf_counter()
    if args.reuse and all(lead_count(tenant) == count for tenant, count, _ in wanted):
        print("reusing the loaded leads", flush=True)
    else:
        print("loading the leads (the database is of its own: checked above) …", flush=True)
        load(wanted)
        analyze()
    pools = {SMALL: sample_ids(small, args.sample), LARGE: sample_ids(large, args.sample)}
    megabytes, seconds = prewarm()
    print(f"{megabytes:,} MB of leads, history and indexes read into memory in {seconds:.1f} s")
    print(f"data ready in {time.perf_counter() - started:.1f} s", flush=True)
    connection.close()

    rng = random.Random(3)
    run = f"{int(time.time())}"
    constant = http_request("GET", "/bench/constant", small_key)
    baseline = Phase(BASELINE, lambda i: constant, 200)

    def read(path: str, target: str, size: str, key: str) -> Phase:
        pool = pools[SMALL if size == "10k" else LARGE]
        return Phase(
            f"{target} ({size})",
            lambda i: http_request("GET", path.replace("{id}", rng.choice(pool)), key),
            200,
            READ_TARGET,
        )

    groups: list[list[Phase]] = [
        [baseline, *(read(path, name, size, key) for size, key in sizes)]
        for path, name in (
            ("/v1/leads/{id}", "GET /v1/leads/{id}"),
            ("/v1/leads/{id}/status", "GET /v1/leads/{id}/status"),
            ("/v1/leads?limit=50", "GET /v1/leads?limit=50"),
        )
        for sizes in [(("10k", small_key), ("1M", large_key))]
    ]
    # One numbering for every create of the run (warm-up and slices alike): each request is a
    # new lead under a new idempotency key, never the replay of an earlier one.
    creates = itertools.count()

    def create(_: int) -> bytes:
        n = next(creates)
        return http_request(
            "POST", "/v1/leads", large_key, create_body(run, n), Idempotency_Key=f"bench-{run}-{n}"
        )

    groups.append([baseline, Phase("POST /v1/leads (1M)", create, 201, CREATE_TARGET)])
    if args.only:
        groups = [group for group in groups if any(args.only in p.name for p in group[1:])]

    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="api-bench-")) / "gunicorn.log"
    server = start_server(port, args.workers, args.worker_class, args.threads, log)
    probe = CpuProbe(server.pid)
    loads = os.getloadavg()
    # Each endpoint is measured in slices alternating with the baseline's (and the two tenants'
    # with each other), so that a change in the machine's load affects both sides of a ratio.
    slices: dict[tuple[int, str], list[Result]] = {}
    seconds = args.duration / args.rounds
    try:
        print("warming up every worker on every endpoint …", flush=True)
        for group in groups:
            for phase in group:
                measure(
                    phase.name, port, phase.make, concurrency=args.concurrency, warmup=0, duration=1
                )
        for number, group in enumerate(groups):
            print(f"  {', '.join(phase.name for phase in group[1:])} and the baseline", flush=True)
            for _ in range(args.rounds):
                for phase in group:
                    slices.setdefault((number, phase.name), []).append(
                        measure(
                            phase.name,
                            port,
                            phase.make,
                            concurrency=args.concurrency,
                            warmup=args.warmup,
                            duration=seconds,
                            probe=probe,
                        )
                    )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    server_errors = sum(1 for line in log.read_text().splitlines() if '"level": "ERROR"' in line)
    sent = next(creates)
    made = lead_count(large, source=CREATED_SOURCE)
    cleanup([small, large])

    results = {key: Result.merged(parts) for key, parts in slices.items()}
    wrong = {
        phase.name: results[number, phase.name].statuses
        for number, group in enumerate(groups)
        for phase in group
        if set(results[number, phase.name].statuses) != {phase.status}
    }
    threads = f" × {args.threads} threads" if args.worker_class == "gthread" else ""
    print(
        f"\ngunicorn {args.worker_class}, {args.workers} workers{threads}; load: "
        f"{args.concurrency} connections, closed loop; each endpoint {args.rounds} × "
        f"{seconds:g} s measured (after {args.warmup:g} s warm-up each), alternating with the "
        f"baseline; {os.cpu_count()} CPUs for everything; load average {loads[0]:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after\n"
    )
    everything = Result.merged(
        [part for (_, name), parts in slices.items() if name == BASELINE for part in parts]
    )
    print(report_line(everything, None, None))
    missed = []
    for number, group in enumerate(groups):
        paired = results[number, BASELINE]
        for phase in group[1:]:
            print(report_line(results[number, phase.name], paired, phase.target))
            if phase.target is not None and not meets(
                results[number, phase.name], paired, phase.target
            ):
                missed.append(phase.name)
    pairs = [
        (results[number, group[1].name], results[number, group[2].name])
        for number, group in enumerate(groups)
        if len(group) == 3
    ]
    if pairs:
        print(f"\nthe same reads, 1M-lead tenant vs 10k-lead tenant (within {SCALE_LIMIT}×):")
    for small_result, large_result in pairs:
        rate = large_result.rate / small_result.rate
        p50 = large_result.percentile(0.5) / small_result.percentile(0.5)
        scales = max(rate, 1 / rate, p50, 1 / p50) <= SCALE_LIMIT
        name = small_result.name.replace(" (10k)", "")
        print(
            f"  {name:<30} requests/s {rate:4.2f}×  p50 {p50:4.2f}×  {'ok' if scales else 'MISSED'}"
        )
        if not scales:
            missed.append(f"{name} 1M/10k")
    if sent:
        print(f"\nPOST /v1/leads: {sent} requests sent, {made} leads created")
    if wrong or server_errors or made != sent:
        print(f"\nunexpected statuses: {wrong}; errors in the server log: {server_errors} ({log})")
        return 1
    # The verdict of the run, and its exit status: 0 only when every target printed is met.
    if missed:
        print(f"\ntargets missed: {', '.join(missed)}")
    elif args.only:
        print(f"\nevery target measured met (only the endpoints matching {args.only!r})")
    else:
        print("\nevery target met")
    return 3 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
