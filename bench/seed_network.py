"""How much faster the bulk seed is than inserting the same kind of rows one by one.

    .venv/bin/python bench/seed_network.py              # about 600 facilities, 20,000 patients
    .venv/bin/python bench/seed_network.py --national   # 1,500 facilities, 20,000 doctors,
                                                        # 100,000 patients

Creates a scratch PostgreSQL database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/bench_seed), dropping it first if it exists,
migrates it, then in the same run times:

(a) ``telehealth.seeding.network_seed`` at the chosen size, and
(b) a baseline: a sample of patients, each a User, a PatientProfile and a primary
    CareRelationship created with ``objects.create``, once with every row committed on
    its own and once inside one transaction,

and prints rows, seconds, rows per second and the bulk / baseline ratio. The scratch
database is dropped at the end unless --keep is given. Results also go to
bench/results/seed_network.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_seed"

SIZES = {
    "default": {"facilities": 600, "doctors": 4000, "patients": 20_000, "baseline": 500},
    "national": {"facilities": 1500, "doctors": 20_000, "patients": 100_000, "baseline": 2000},
}


def _database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _maintenance_url(url: str) -> str:
    parts = urlsplit(url.replace("postgres://", "postgresql://", 1))
    return urlunsplit(parts._replace(path="/postgres"))


def recreate_database(*, url: str) -> None:
    """Drop and create the scratch database, then migrate it in a subprocess."""
    name = _database_name(url)
    with psycopg.connect(_maintenance_url(url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": url},
        check=True,
    )


def drop_database(*, url: str) -> None:
    from django.db import connections

    connections.close_all()
    with psycopg.connect(_maintenance_url(url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(_database_name(url))
            )
        )


def setup_django(*, url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telehealth.settings")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()


def time_bulk_seed(*, facilities: int, doctors: int, patients: int) -> dict[str, float]:
    from telehealth.seeding import network_seed

    started = time.perf_counter()
    summary = network_seed(
        seed=2026,
        facilities=facilities,
        doctors=doctors,
        health_workers=None,
        patients=patients,
        coordinators=None,
        stdout=sys.stdout,
    )
    seconds = time.perf_counter() - started
    return {"rows": summary.rows_inserted, "seconds": seconds}


def time_one_by_one(*, sample: int, prefix: str, in_one_transaction: bool) -> dict[str, float]:
    """Insert ``sample`` patients (user, profile, primary relationship) row by row."""
    from contextlib import nullcontext

    from django.contrib.auth.hashers import make_password
    from django.db import transaction

    from telehealth.models import (
        CareRelationship,
        ClinicianProfile,
        Commune,
        PatientProfile,
        User,
    )
    from telehealth.seeding import geography_from_database, plan_network

    # The same kind of rows as the seed's patients, planned the same way.
    plan = plan_network(
        geography=geography_from_database(),
        seed=9,
        facilities=0,
        doctors=0,
        health_workers=None,
        patients=sample,
        coordinators=0,
    )
    password_hash = make_password("bench-only-password")
    commune_ids = dict(Commune.objects.values_list("code", "id"))
    members = list(
        ClinicianProfile.objects.filter(kind=ClinicianProfile.Kind.HEALTH_WORKER).values_list(
            "user_id", flat=True
        )[:1000]
    )
    started = time.perf_counter()
    with transaction.atomic() if in_one_transaction else nullcontext():
        for number, patient in enumerate(plan.patients):
            user = User.objects.create(
                username=f"{prefix}{number:06d}",
                full_name=patient.person.full_name,
                phone=patient.person.phone,
                password=password_hash,
            )
            profile = PatientProfile.objects.create(
                user=user,
                date_of_birth=patient.date_of_birth,
                sex=patient.person.sex,
                health_insurance_number=patient.health_insurance_number,
                home_commune_id=commune_ids[patient.home_commune_code],
                address=patient.address,
            )
            CareRelationship.objects.create(
                patient=profile,
                member_id=members[number % len(members)],
                kind=CareRelationship.Kind.PRIMARY,
                source="bench",
            )
    seconds = time.perf_counter() - started
    return {"rows": 3 * sample, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--national", action="store_true", help="full national size")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    size = SIZES["national" if args.national else "default"]
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)

    print(f"Scratch database {_database_name(url)}: recreating and migrating…")
    recreate_database(url=url)
    setup_django(url=url)
    try:
        print(
            f"(a) bulk seed: {size['facilities']:,} facilities, {size['doctors']:,} doctors, "
            f"{size['patients']:,} patients"
        )
        bulk = time_bulk_seed(
            facilities=size["facilities"], doctors=size["doctors"], patients=size["patients"]
        )
        print(f"(b) baseline: {size['baseline']:,} patients one row at a time, twice")
        autocommit = time_one_by_one(
            sample=size["baseline"], prefix="base-a", in_one_transaction=False
        )
        one_transaction = time_one_by_one(
            sample=size["baseline"], prefix="base-t", in_one_transaction=True
        )
    finally:
        if not args.keep:
            drop_database(url=url)

    rows = [
        ("bulk seed (network_seed)", bulk),
        ("one by one, each row committed", autocommit),
        ("one by one, one transaction", one_transaction),
    ]
    bulk_rate = bulk["rows"] / bulk["seconds"]
    print()
    print(f"{'method':<34} {'rows':>10} {'seconds':>9} {'rows/s':>10} {'bulk is':>9}")
    for label, result in rows:
        rate = result["rows"] / result["seconds"]
        print(
            f"{label:<34} {result['rows']:>10,} {result['seconds']:>9.2f} {rate:>10,.0f} "
            f"{bulk_rate / rate:>8.1f}x"
        )
    for label, result in rows[1:]:
        rate = result["rows"] / result["seconds"]
        print(
            f"At {label!r} speed the {bulk['rows']:,} seeded rows would take "
            f"{bulk['rows'] / rate:,.0f}s instead of {bulk['seconds']:.0f}s."
        )
    results_dir = REPO / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "seed_network.json").write_text(
        json.dumps(
            {"size": size, "results": {label: result for label, result in rows}},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
