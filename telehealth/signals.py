"""Sign-ins and sign-outs go to the audit log: who, when, from where."""

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.dispatch import receiver

from telehealth.audit import audit_record
from telehealth.models import AuditEvent


@receiver(user_logged_in)
def audit_sign_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    audit_record(actor=user, action=AuditEvent.Action.SIGN_IN, target="session", request=request)


@receiver(user_logged_out)
def audit_sign_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        audit_record(
            actor=user, action=AuditEvent.Action.SIGN_OUT, target="session", request=request
        )
