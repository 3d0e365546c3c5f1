"""The Celery app. Settings come from Django's, prefixed CELERY_."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telehealth.settings")

app = Celery("telehealth")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.conf.beat_schedule = {
    "network-mentorship-requests-expire": {
        "task": "network.tasks.mentorship_requests_expire",
        "schedule": 24 * 60 * 60,
    },
    "visits-relay-watchdog": {
        "task": "consult.tasks.visits_relay_watchdog",
        "schedule": 3.0,
    },
    "sessions-clear-expired": {
        "task": "telehealth.tasks.sessions_clear_expired",
        "schedule": 60 * 60,
    },
}
