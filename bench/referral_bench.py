"""Routing referrals across the national network: real Celery workers against the ceiling.

    .venv/bin/python bench/referral_bench.py                     # 100,000 referrals
    .venv/bin/python bench/referral_bench.py --referrals 20000   # quicker

Creates a scratch PostgreSQL database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/bench_referral), dropping it first, migrates
it in a subprocess, seeds the national demo network (1,500 facilities, 4,000
doctors, 20,000 patients), and writes the referrals in bulk as submitted
(``requested``, waiting for routing). Then, in the same run, on the same
referrals:

(a) the ceiling: one process calls ``scheduler.services.referral_route_many``
    directly, batch after batch, no Celery, no broker;
(b) Celery, burst: everything is submitted at once as ``route_referrals`` tasks
    (``--batch`` ids per task) to 2 worker processes (``celery -A telehealth
    worker --concurrency N``) over Redis (REDIS_URL, default db 6): the
    throughput the workers sustain;
(c) Celery, paced: submitted at ``--rate`` referrals per second: the time from
    submission to assignment at that load.

Between runs every routing result is reset. Submission time is written to
``requested_at`` when the task is sent; assignment time is ``routed_at``,
written in the routing transaction; both come from the database. The checks:
no referral with two decisions, no ticket given twice in a queue and day, no
queue over its capacity (emergencies excepted), and no referral left unrouted.

Batching several referral ids per task is a transport saving only: the
service locks each referral (SKIP LOCKED) and decides it once whatever batch
it arrives in. Results also go to bench/results/referral_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_referral"
DEFAULT_REDIS = "redis://127.0.0.1:6379/6"
DATA_DIR = Path("/tmp/bench_referral_data")


def _database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _maintenance_url(url: str) -> str:
    parts = urlsplit(url.replace("postgres://", "postgresql://", 1))
    return urlunsplit(parts._replace(path="/postgres"))


def _env(url: str, redis_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "TELEHEALTH_DATA_DIR": str(DATA_DIR),
        "LOG_LEVEL": "WARNING",
    }


def recreate_database(*, url: str, redis_url: str) -> None:
    name = _database_name(url)
    with psycopg.connect(_maintenance_url(url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
        cwd=REPO,
        env=_env(url, redis_url),
        check=True,
    )


def seed(*, url: str, redis_url: str, facilities: int, doctors: int, patients: int) -> None:
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "seed_network",
            "--facilities",
            str(facilities),
            "--doctors",
            str(doctors),
            "--patients",
            str(patients),
        ],
        cwd=REPO,
        env=_env(url, redis_url),
        check=True,
        stdout=subprocess.DEVNULL,
    )


def setup_django(*, url: str, redis_url: str) -> None:
    os.environ.update(_env(url, redis_url))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telehealth.settings")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()


# --- The referrals ------------------------------------------------------------------------


def create_referrals(count: int, *, seed_value: int = 6) -> list[int]:
    """``count`` submitted referrals from commune stations, district and provincial
    facilities, for specialties the levels above offer; 80 % routine, 17 % urgent,
    3 % emergency. Written with bulk_create, already ``requested``."""
    import numpy as np
    from django.utils import timezone

    from scheduler.models import Referral
    from telehealth.models import ClinicianProfile, FacilitySpecialty, PatientProfile

    rng = np.random.default_rng(seed_value)
    clinicians = list(
        ClinicianProfile.objects.filter(facility__level__gte=2).values_list(
            "user_id", "facility_id", "facility__level"
        )
    )
    by_level: dict[int, list[tuple[int, int]]] = {}
    for user_id, facility_id, level in clinicians:
        by_level.setdefault(level, []).append((user_id, facility_id))
    offered = {
        level: sorted(
            set(
                FacilitySpecialty.objects.filter(
                    facility__level__lt=level, daily_referral_capacity__gt=0
                ).values_list("specialty_id", flat=True)
            )
        )
        for level in (2, 3, 4)
    }
    patients = list(PatientProfile.objects.values_list("id", flat=True))
    levels = rng.choice([4, 3, 2], size=count, p=[0.6, 0.3, 0.1])
    priorities = rng.choice(["routine", "urgent", "emergency"], size=count, p=[0.8, 0.17, 0.03])
    now = timezone.now()
    rows = []
    for n in range(count):
        level = int(levels[n])
        user_id, facility_id = by_level[level][int(rng.integers(len(by_level[level])))]
        rows.append(
            Referral(
                patient_id=patients[int(rng.integers(len(patients)))],
                requester_id=user_id,
                requesting_facility_id=facility_id,
                specialty_id=offered[level][int(rng.integers(len(offered[level])))],
                priority=str(priorities[n]),
                requested_mode="remote_first" if n % 3 else "physical",
                reason="Chuyển tuyến (benchmark)",
                status="requested",
                routing_state="pending",
                requested_at=now,
            )
        )
    created = Referral.objects.bulk_create(rows, batch_size=5000)
    return [r.pk for r in created]


def reset_routing() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE scheduler_routingdecision")
        cursor.execute(
            "UPDATE scheduler_referral SET routing_state = 'pending', route_generation = 0, "
            "target_facility_id = NULL, queue_id = NULL, queue_day = NULL, ticket_number = NULL, "
            "routed_at = NULL, accept_due_at = NULL, no_slot_since = NULL, contact_due_at = NULL"
        )
        cursor.execute("DELETE FROM scheduler_queue")
        cursor.execute("VACUUM ANALYZE scheduler_referral")
        cursor.execute("VACUUM ANALYZE scheduler_queue")


def mark_submitted(ids: list[int]) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE scheduler_referral SET requested_at = clock_timestamp() WHERE id = ANY(%s)",
            [ids],
        )


def _chunks(ids: list[int], size: int) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


# --- Measuring ---------------------------------------------------------------------------------


def measure(ids: list[int]) -> dict:
    """Read the outcome of a run back from the database, with the correctness checks."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXTRACT(EPOCH FROM routed_at - requested_at) FROM scheduler_referral "
            "WHERE routed_at IS NOT NULL AND id = ANY(%s)",
            [ids],
        )
        latencies = sorted(float(r[0]) for r in cursor.fetchall())
        cursor.execute(
            "SELECT EXTRACT(EPOCH FROM max(routed_at) - min(requested_at)) FROM scheduler_referral "
            "WHERE id = ANY(%s)",
            [ids],
        )
        span = float(cursor.fetchone()[0] or 0)
        cursor.execute(
            "SELECT routing_state, count(*) FROM scheduler_referral WHERE id = ANY(%s) "
            "GROUP BY routing_state",
            [ids],
        )
        states = dict(cursor.fetchall())
        cursor.execute(
            "SELECT count(*) FROM (SELECT referral_id FROM scheduler_routingdecision "
            "GROUP BY referral_id HAVING count(*) > 1) d"
        )
        double_decisions = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM (SELECT queue_id, queue_day, ticket_number "
            "FROM scheduler_referral WHERE ticket_number IS NOT NULL "
            "GROUP BY 1, 2, 3 HAVING count(*) > 1) t"
        )
        double_tickets = cursor.fetchone()[0]
        # One pass over the referrals per check (grouped, then joined), not a
        # subquery per queue: on 100,000 fresh rows without statistics the
        # correlated form took minutes.
        cursor.execute(
            "WITH per_queue AS ("
            "  SELECT queue_id, count(*) FILTER (WHERE priority = 'emergency') AS emergencies"
            "  FROM scheduler_referral WHERE queue_id IS NOT NULL GROUP BY queue_id)"
            " SELECT count(*) FROM scheduler_queue q JOIN telehealth_facilityspecialty o"
            " ON o.facility_id = q.facility_id AND o.specialty_id = q.specialty_id"
            " LEFT JOIN per_queue p ON p.queue_id = q.id"
            " WHERE q.assigned_today > o.daily_referral_capacity + COALESCE(p.emergencies, 0)"
        )
        over_capacity = cursor.fetchone()[0]
        cursor.execute(
            "WITH per_queue AS ("
            "  SELECT queue_id, count(*) AS routed FROM scheduler_referral"
            "  WHERE routing_state = 'routed' GROUP BY queue_id)"
            " SELECT count(*) FROM scheduler_queue q LEFT JOIN per_queue p ON p.queue_id = q.id"
            " WHERE q.assigned_today <> COALESCE(p.routed, 0)"
        )
        counter_mismatch = cursor.fetchone()[0]
    routed = states.get("routed", 0) + states.get("no_slot", 0)

    def pct(p: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    return {
        "referrals": len(ids),
        "decided": routed,
        "assigned": states.get("routed", 0),
        "no_slot": states.get("no_slot", 0),
        "lost": len(ids) - routed,
        "double_assignments": double_decisions,
        "double_tickets": double_tickets,
        "queues_over_capacity": over_capacity,
        "counter_mismatches": counter_mismatch,
        "seconds": span,
        "per_second": routed / span if span else float("nan"),
        "p50_ms": median(latencies) * 1000 if latencies else float("nan"),
        "p99_ms": pct(0.99) * 1000,
        "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
    }


# --- (a) the ceiling -----------------------------------------------------------------------------


def run_ceiling(ids: list[int], batch: int) -> dict:
    from scheduler.services import referral_route_many

    for chunk in _chunks(ids, batch):
        mark_submitted(chunk)
        referral_route_many(referral_ids=chunk)
    return measure(ids)


# --- (b), (c) Celery -----------------------------------------------------------------------------


def start_workers(*, url: str, redis_url: str, workers: int, concurrency: int) -> list:
    processes = []
    for n in range(workers):
        processes.append(
            subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "celery"),
                    "-A",
                    "telehealth",
                    "worker",
                    "--concurrency",
                    str(concurrency),
                    "--hostname",
                    f"bench{n}@%h",
                    "--without-gossip",
                    "--without-mingle",
                    "--loglevel",
                    "WARNING",
                ],
                cwd=REPO,
                env=_env(url, redis_url),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        )
    from telehealth.celery import app

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        if len(replies) >= workers:
            break
    else:
        raise RuntimeError("the Celery workers did not start")
    return processes


def stop_workers(processes: list) -> None:
    for process in processes:
        os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_until_decided(ids: list[int], timeout: float) -> None:
    from django.db import connection

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM scheduler_referral WHERE routing_state = 'pending' "
                "AND id = ANY(%s)",
                [ids],
            )
            if cursor.fetchone()[0] == 0:
                return
        time.sleep(0.2)


def run_celery(ids: list[int], *, batch: int, rate: float | None, timeout: float) -> dict:
    """Submit ``route_referrals`` tasks (all at once, or at ``rate`` per second)."""
    from scheduler.tasks import route_referrals

    chunks = _chunks(ids, batch)
    started = time.monotonic()
    for n, chunk in enumerate(chunks):
        if rate:
            due = started + n * batch / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        mark_submitted(chunk)
        route_referrals.delay(chunk)
    wait_until_decided(ids, timeout)
    return measure(ids)


# --- Report --------------------------------------------------------------------------------------


def print_table(results: dict[str, dict], *, ceiling: str) -> None:
    base = results[ceiling]["per_second"]
    header = (
        f"{'run':<34} {'referrals':>9} {'assigned':>8} {'no slot':>7} {'s':>6} "
        f"{'per s':>7} {'p50 ms':>7} {'p99 ms':>7} {'vs ceiling':>10} {'lost':>4} {'double':>6}"
    )
    print()
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        # A paced run goes as fast as it is fed: its ratio says nothing of capacity.
        ratio = "paced" if "offered" in name else f"{r['per_second'] / base:.2f}×"
        print(
            f"{name:<34} {r['referrals']:>9,} {r['assigned']:>8,} {r['no_slot']:>7,} "
            f"{r['seconds']:>6.1f} {r['per_second']:>7,.0f} {r['p50_ms']:>7,.0f} "
            f"{r['p99_ms']:>7,.0f} {ratio:>10} {r['lost']:>4} "
            f"{r['double_assignments'] + r['double_tickets']:>6}"
        )
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--referrals", type=int, default=100_000)
    parser.add_argument("--facilities", type=int, default=1500)
    parser.add_argument("--doctors", type=int, default=4000)
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100, help="referral ids per task")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--concurrency", type=int, default=1, help="pool size per worker")
    parser.add_argument("--rate", type=float, default=1000.0, help="paced run: referrals/s")
    parser.add_argument("--skip-paced", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="keep the seeded database")
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    args = parser.parse_args(argv)
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS)
    DATA_DIR.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    if not args.reuse:
        print(f"Creating {_database_name(url)} and seeding the network…", flush=True)
        recreate_database(url=url, redis_url=redis_url)
        seed(
            url=url,
            redis_url=redis_url,
            facilities=args.facilities,
            doctors=args.doctors,
            patients=args.patients,
        )
    setup_django(url=url, redis_url=redis_url)
    from django.db import connection

    from scheduler.models import Referral
    from telehealth.celery import app
    from telehealth.models import Facility, FacilitySpecialty

    if args.reuse:
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE scheduler_routingdecision, scheduler_referral CASCADE")
    print(f"  ready in {time.perf_counter() - t0:.0f}s", flush=True)
    t0 = time.perf_counter()
    ids = create_referrals(args.referrals)
    capacity = sum(FacilitySpecialty.objects.values_list("daily_referral_capacity", flat=True))
    print(
        f"Created {len(ids):,} submitted referrals in {time.perf_counter() - t0:.1f}s; "
        f"{Facility.objects.count():,} facilities, {capacity:,} referral places a day.",
        flush=True,
    )

    results: dict[str, dict] = {}
    reset_routing()
    print("(a) ceiling: one process, the service called directly…", flush=True)
    results["ceiling: one process, no Celery"] = run_ceiling(ids, args.batch)

    app.control.purge()
    workers = start_workers(
        url=url, redis_url=redis_url, workers=args.workers, concurrency=args.concurrency
    )
    try:
        reset_routing()
        print(
            f"(b) Celery burst: {args.workers} workers × {args.concurrency}, "
            f"{args.batch} per task…",
            flush=True,
        )
        results[f"celery {args.workers}×{args.concurrency}, burst"] = run_celery(
            ids, batch=args.batch, rate=None, timeout=900
        )
        if not args.skip_paced:
            reset_routing()
            print(f"(c) Celery paced at {args.rate:,.0f}/s…", flush=True)
            results[f"celery {args.workers}×{args.concurrency}, {args.rate:,.0f}/s offered"] = (
                run_celery(ids, batch=args.batch, rate=args.rate, timeout=900)
            )
    finally:
        stop_workers(workers)
    print_table(results, ceiling="ceiling: one process, no Celery")
    checks = {
        name: {
            k: r[k]
            for k in (
                "lost",
                "double_assignments",
                "double_tickets",
                "queues_over_capacity",
                "counter_mismatches",
            )
        }
        for name, r in results.items()
    }
    print("checks:", json.dumps(checks, indent=1))
    out = REPO / "bench" / "results" / "referral_bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "referrals": len(ids),
                "facilities": Facility.objects.count(),
                "capacity_per_day": capacity,
                "batch": args.batch,
                "workers": args.workers,
                "concurrency": args.concurrency,
                "results": results,
                "pending_left": Referral.objects.filter(routing_state="pending").count(),
            },
            indent=2,
        )
    )
    failed = any(
        r["lost"] or r["double_assignments"] or r["double_tickets"] or r["queues_over_capacity"]
        for r in results.values()
    )
    if not args.keep:
        connection.close()
        with psycopg.connect(_maintenance_url(url), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(_database_name(url))
                )
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
