"""The Celery app. Settings come from Django's, prefixed CELERY_."""

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telehealth.settings")

app = Celery("telehealth")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
MINUTE = 60.0

# Every job here is idempotent (tasks take ids or sweep by state under row locks),
# so a late or doubled run does nothing twice. Exactly one beat process runs
# (docs/architecture.md says how).
app.conf.beat_schedule = {
    "network-mentorship-requests-expire": {
        "task": "network.tasks.mentorship_requests_expire",
        "schedule": 24 * 60 * 60,
    },
    "network-assignment-runs-sweep": {
        "task": "network.tasks.assignment_runs_sweep",
        "schedule": 60.0,
    },
    "visits-relay-watchdog": {
        "task": "consult.tasks.visits_relay_watchdog",
        "schedule": 3.0,
    },
    "sessions-clear-expired": {
        "task": "telehealth.tasks.sessions_clear_expired",
        "schedule": 60 * 60,
    },
    # Referrals: a lost routing message, the service-level clock, the no-slot
    # worklist and the batch re-optimisation of routine and urgent referrals.
    "scheduler-route-sweep": {"task": "scheduler.route_sweep", "schedule": MINUTE},
    "scheduler-escalate-overdue": {"task": "scheduler.escalate_overdue", "schedule": MINUTE},
    "scheduler-retry-no-slot": {"task": "scheduler.retry_no_slot", "schedule": 15 * MINUTE},
    "scheduler-reoptimise": {"task": "scheduler.reoptimise", "schedule": 15 * MINUTE},
    # Appointments: reminders, no-shows, waiting-list offers, slots to the horizon.
    "scheduler-send-reminders": {"task": "scheduler.send_reminders", "schedule": MINUTE},
    "scheduler-mark-no-shows": {"task": "scheduler.mark_no_shows", "schedule": 5 * MINUTE},
    "scheduler-expire-offers": {"task": "scheduler.expire_offers", "schedule": MINUTE},
    "scheduler-generate-slots": {
        "task": "scheduler.generate_slots",
        "schedule": crontab(hour=1, minute=30),  # Asia/Ho_Chi_Minh (CELERY_TIMEZONE)
    },
}
