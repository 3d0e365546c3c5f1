"""Periodic housekeeping of the kernel. Tasks are thin and idempotent."""

from celery import shared_task
from django.contrib.sessions.models import Session
from django.utils import timezone


@shared_task(name="telehealth.tasks.sessions_clear_expired")
def sessions_clear_expired() -> int:
    """Delete expired sessions so the table does not grow without end. Returns how many."""
    deleted, _ = Session.objects.filter(expire_date__lt=timezone.now()).delete()
    return deleted
