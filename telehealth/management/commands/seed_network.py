"""``manage.py seed_network``: a realistic demo network, built once, plus the demo logins.

All the logic lives in ``telehealth.seeding``; this command reads flags and prints.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from telehealth.seeding import DEMO_LOGINS, SeedRequestError, network_seed

# None: one health worker per commune station, and one coordinator per province and
# per central or provincial hospital.
DEFAULT_SIZES: dict[str, int | None] = {
    "facilities": 1500,
    "doctors": 4000,
    "health_workers": None,
    "patients": 5000,
    "coordinators": None,
}


class Command(BaseCommand):
    help = (
        "Seed a realistic, deterministic network of facilities, clinicians, coordinators "
        "and patients across Vietnam's 34 provinces, and ensure the demo logins. Does "
        "nothing to an already seeded network except ensuring the demo logins. Every "
        "seeded account uses TELEHEALTH_DEMO_PASSWORD, so it runs only with DEBUG on."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seed", type=int, default=2026, help="random seed (default 2026)")
        parser.add_argument(
            "--facilities",
            type=int,
            help=(
                "facilities to build, at least (default 1500). Fewer than the smallest "
                "complete network (every central hub plus a general hospital, a district "
                "centre and a commune station per province) builds that network."
            ),
        )
        parser.add_argument("--doctors", type=int, help="doctors (default 4000)")
        parser.add_argument(
            "--health-workers",
            type=int,
            help="commune health workers (default: one per commune health station)",
        )
        parser.add_argument("--patients", type=int, help="patients (default 5000)")
        parser.add_argument(
            "--coordinators",
            type=int,
            help=(
                "coordinators (default: one per province plus one per central and "
                "provincial hospital)"
            ),
        )
        parser.add_argument(
            "--demo-only",
            action="store_true",
            help=(
                "only the demo logins: if no network exists, build the smallest complete "
                "network of facilities (no generated people) for them to work in. Cannot "
                "be combined with size flags."
            ),
        )
        parser.add_argument("--quiet", action="store_true", help="print nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "seed_network creates accounts with the public demo password, so it runs "
                "only with DEBUG on (DJANGO_DEBUG=1). Never seed a production database."
            )
        sizes = {name: options[name] for name in DEFAULT_SIZES}
        if options["demo_only"]:
            given = [
                f"--{name.replace('_', '-')}" for name, value in sizes.items() if value is not None
            ]
            if given:
                raise CommandError(f"--demo-only cannot be combined with {', '.join(given)}.")
            sizes = dict.fromkeys(sizes, 0)
        else:
            sizes = {
                name: DEFAULT_SIZES[name] if value is None else value
                for name, value in sizes.items()
            }
        quiet = options["quiet"] or options["verbosity"] == 0
        try:
            summary = network_seed(
                seed=options["seed"], stdout=None if quiet else self.stdout, **sizes
            )
        except SeedRequestError as error:
            raise CommandError(str(error)) from error
        # The apps' own demo activity, through their services (each idempotent).
        # Consent first: the patients' answers to the privacy notice.
        from privacy.seeding import privacy_demo_seed
        from scheduler.seeding import scheduler_demo_seed

        consented = privacy_demo_seed()
        activity = scheduler_demo_seed()
        if quiet:
            return
        self.stdout.write(
            f"Privacy: consent to the current notice recorded for {consented:,} patients."
        )
        self.stdout.write(f"Scheduling: {activity.describe()}.")
        self.stdout.write(
            self.style.SUCCESS(
                f"Done in {summary.elapsed_seconds:.1f}s. Demo logins, all with the password "
                "in TELEHEALTH_DEMO_PASSWORD:"
            )
        )
        for username, role in DEMO_LOGINS:
            self.stdout.write(f"  {username:<24} {role}")
