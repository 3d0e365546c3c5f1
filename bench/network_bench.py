"""The doctor network at national size: optimal auto-assignment and suggestion latency.

    .venv/bin/python bench/network_bench.py            # reuse the scratch database if seeded
    .venv/bin/python bench/network_bench.py --fresh    # drop it and seed again

Builds (or reuses) a national-size PostgreSQL scratch database (BENCH_DATABASE_URL,
default postgres://postgres@127.0.0.1:5432/bench_network): drop/create with psycopg,
``migrate`` and ``seed_network --facilities 1500 --doctors 20000 --health-workers 4000
--patients 1000`` in subprocesses with DATABASE_URL set. (The default of one health
worker per commune station gives about 18,000 mentees; 4,000 health workers make it
over 20,000.) It checks the seeded counts give at least 2,000 mentors and 20,000
mentees, then measures in one run:

1. the full national auto-assignment, from reading the database to the stored
   proposals (``network.services.do_assignment_run_execute``, what the Celery task
   runs), with the min-cost-flow solve time separately, the total cost, the greedy
   baseline's cost on the same arcs and the coverage each achieves;
2. the latency of suggestions for 50 random doctors (median and p95), through the
   selector and through the REST endpoint, after 60 % of the proposals have been
   made accepted mentorships so mentors carry a realistic load.

Every earlier mentorship and run in the scratch database is deleted first, so runs
are comparable. Prints a table; ``--json PATH`` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_network"
SEED_FLAGS = [
    "--facilities",
    "1500",
    "--doctors",
    "20000",
    "--health-workers",
    "4000",
    "--patients",
    "1000",
]
SUGGESTION_SAMPLES = 50
ACCEPTED_SHARE = 0.6
BUDGET_SECONDS = 10.0
SUGGESTION_BUDGET_MS = 100.0


def _database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _maintenance_url(url: str) -> str:
    parts = urlsplit(url.replace("postgres://", "postgresql://", 1))
    return urlunsplit(parts._replace(path="/postgres"))


def prepare_database(*, url: str, fresh: bool) -> None:
    """Create the scratch database if missing (dropping it first with --fresh), then
    migrate and seed it in subprocesses. Seeding an already seeded database does nothing."""
    name = _database_name(url)
    with psycopg.connect(_maintenance_url(url), autocommit=True) as conn:
        if fresh:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_DEBUG": "1"}
    env.pop("REDIS_URL", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=REPO, env=env, check=True
    )
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "manage.py", "seed_network", *SEED_FLAGS, "--quiet"],
        cwd=REPO,
        env=env,
        check=True,
    )
    print(f"database ready ({time.perf_counter() - started:.1f}s to seed or confirm)")


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.pop("REDIS_URL", None)  # in-process channel layer: nothing to deliver to
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telehealth.settings")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.conf import settings

    settings.DEBUG = False  # do not keep every query in memory


def counts() -> dict[str, int]:
    from network.selectors import policy_active
    from telehealth.models import ClinicianProfile

    policy = policy_active()
    active = ClinicianProfile.objects.filter(user__is_active=True)
    return {
        "mentors": active.filter(
            facility__level__in=policy.mentor_levels, kind=ClinicianProfile.Kind.DOCTOR
        ).count(),
        "mentees": active.filter(facility__level__in=policy.mentee_levels).count(),
    }


def analyze() -> None:
    """Refresh the planner's statistics after bulk changes, as autovacuum would soon."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def reset_network() -> None:
    from network.models import AssignmentRun, Mentorship, MentorshipEvent

    MentorshipEvent.objects.all().delete()
    Mentorship.objects.all().delete()
    AssignmentRun.objects.all().delete()
    analyze()


def measure_assignment() -> dict[str, float | int]:
    from django.contrib.auth import get_user_model

    from network import services
    from network.models import AssignmentRun
    from network.selectors import policy_active

    admin, _ = get_user_model().objects.get_or_create(
        username="bench.network", defaults={"is_staff": True}
    )
    policy = policy_active()
    run = AssignmentRun.objects.create(
        policy_id=policy.id, max_distance_km=policy.max_distance_km, created_by=admin
    )
    started = time.perf_counter()
    run = services.do_assignment_run_execute(run_id=run.pk)
    wall = time.perf_counter() - started
    assert run is not None and run.state == AssignmentRun.State.PROPOSED, run
    distances = list(run.proposals.values_list("distance_km", "specialty_match"))
    return {
        "run_id": run.pk,
        "wall_s": round(wall, 3),
        **{f"{k}_s": v for k, v in run.timings.items()},
        "mentees": run.mentees,
        "mentors": run.mentors,
        "places": run.places,
        "arcs": run.arcs,
        "assigned": run.assigned,
        "coverage": run.coverage,
        "cost": run.cost,
        "greedy_assigned": run.greedy_assigned,
        "greedy_coverage": run.greedy_coverage,
        "greedy_cost": run.greedy_cost,
        "mean_km": statistics.fmean(d for d, _ in distances) if distances else 0.0,
        "specialty_match": sum(m for _, m in distances) / max(len(distances), 1),
    }


def load_mentors(run_id: int) -> int:
    """Make a share of the proposals accepted mentorships (bulk: bench setup only)."""
    from django.utils import timezone

    from network.models import AssignmentProposal, Mentorship

    proposals = list(
        AssignmentProposal.objects.filter(run_id=run_id)
        .order_by("id")
        .values_list("mentor_id", "mentee_id", "mentee_level", "mentee__user_id")
    )
    chosen = proposals[: int(len(proposals) * ACCEPTED_SHARE)]
    now = timezone.now()
    Mentorship.objects.bulk_create(
        [
            Mentorship(
                mentor_id=mentor,
                mentee_id=mentee,
                mentee_level=level,
                state=Mentorship.State.ACCEPTED,
                source=Mentorship.Source.AUTO,
                requested_by_id=user,
                requested_at=now,
                responded_at=now,
            )
            for mentor, mentee, level, user in chosen
        ],
        batch_size=5000,
    )
    return len(chosen)


def measure_suggestions() -> dict[str, float]:
    import numpy as np
    from rest_framework.test import APIClient

    from network.selectors import suggestion_list
    from telehealth.models import ClinicianProfile, User

    doctors = list(
        ClinicianProfile.objects.filter(kind=ClinicianProfile.Kind.DOCTOR, user__is_active=True)
        .order_by("id")
        .values_list("user_id", flat=True)
    )
    rng = np.random.default_rng(2026)
    sample = [int(u) for u in rng.choice(doctors, size=SUGGESTION_SAMPLES, replace=False)]
    users = {u.pk: u for u in User.objects.filter(pk__in=sample)}
    for user_id in sample[:3]:  # warm up connections and caches
        suggestion_list(user=users[user_id])

    selector_ms, found = [], []
    for user_id in sample:
        started = time.perf_counter()
        result = suggestion_list(user=users[user_id])
        selector_ms.append((time.perf_counter() - started) * 1000)
        found.append(len(result.results))

    client = APIClient()
    api_ms = []
    for user_id in sample:
        client.force_authenticate(users[user_id])
        started = time.perf_counter()
        response = client.get("/api/v1/network/suggestions/")
        api_ms.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.content[:300]

    def p95(values: list[float]) -> float:
        return float(np.percentile(values, 95))

    return {
        "selector_median_ms": statistics.median(selector_ms),
        "selector_p95_ms": p95(selector_ms),
        "api_median_ms": statistics.median(api_ms),
        "api_p95_ms": p95(api_ms),
        "mean_results": statistics.fmean(found),
    }


def print_table(seeded: dict[str, int], assignment: dict, loaded: int, suggestions: dict) -> None:
    def row(label: str, value: str) -> None:
        print(f"  {label:<52} {value:>18}")

    print()
    print("Doctor network, national size (PostgreSQL, this machine)")
    print("  " + "-" * 71)
    row("mentors (doctors at mentor levels)", f"{seeded['mentors']:,}")
    row("mentees (lower-level doctors and health workers)", f"{seeded['mentees']:,}")
    row("free places (mentor × level)", f"{assignment['places']:,}")
    row("candidate arcs (distance and specialty limited)", f"{assignment['arcs']:,}")
    print("  " + "-" * 71)
    row("auto-assignment, DB read → stored proposals", f"{assignment['wall_s']:.2f} s")
    for stage in ("read", "arcs", "solve", "greedy", "store"):
        row(f"  {stage}", f"{assignment[f'{stage}_s']:.2f} s")
    row("optimal (min-cost flow): assigned", f"{assignment['assigned']:,}")
    row("optimal: coverage of mentees", f"{assignment['coverage']:.1%}")
    row("optimal: total cost (km-equivalents)", f"{assignment['cost']:,}")
    row("greedy baseline, same arcs: assigned", f"{assignment['greedy_assigned']:,}")
    row("greedy baseline: coverage of mentees", f"{assignment['greedy_coverage']:.1%}")
    row("greedy baseline: total cost", f"{assignment['greedy_cost']:,}")
    row(
        "optimal: mean distance / specialty match",
        f"{assignment['mean_km']:.0f} km / {assignment['specialty_match']:.0%}",
    )
    print("  " + "-" * 71)
    row(f"suggestions, {SUGGESTION_SAMPLES} random doctors ({loaded:,} links loaded)", "")
    row(
        "  selector median / p95",
        f"{suggestions['selector_median_ms']:.1f} / {suggestions['selector_p95_ms']:.1f} ms",
    )
    row(
        "  REST endpoint median / p95",
        f"{suggestions['api_median_ms']:.1f} / {suggestions['api_p95_ms']:.1f} ms",
    )
    row("  suggestions per doctor (mean)", f"{suggestions['mean_results']:.1f}")
    print("  " + "-" * 71)
    ok_run = assignment["wall_s"] < BUDGET_SECONDS
    ok_suggest = suggestions["api_median_ms"] < SUGGESTION_BUDGET_MS
    print(
        f"  auto-assignment under {BUDGET_SECONDS:.0f} s: {'yes' if ok_run else 'NO'}; "
        f"suggestions median under {SUGGESTION_BUDGET_MS:.0f} ms: {'yes' if ok_suggest else 'NO'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--fresh", action="store_true", help="drop and seed the database again")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    options = parser.parse_args()

    prepare_database(url=options.url, fresh=options.fresh)
    setup_django(options.url)
    seeded = counts()
    if seeded["mentors"] < 2000 or seeded["mentees"] < 20000:
        print(f"seeded network too small for the benchmark: {seeded}", file=sys.stderr)
        return 2
    reset_network()
    assignment = measure_assignment()
    loaded = load_mentors(int(assignment["run_id"]))
    analyze()
    suggestions = measure_suggestions()
    print_table(seeded, assignment, loaded, suggestions)
    if options.json:
        options.json.write_text(
            json.dumps(
                {"seeded": seeded, "assignment": assignment, "suggestions": suggestions},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
