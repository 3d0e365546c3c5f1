"""Sign-ins and sign-outs go to the audit log: who, when, from where, and why a session
ended. A sign-in starts the session's idle and absolute clocks. Deactivating an account
by saving ``is_active=False`` anywhere closes its sessions, sockets and tokens."""

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from telehealth.audit import audit_record
from telehealth.models import AuditEvent, User
from telehealth.session_security import session_mark_signed_in


@receiver(user_logged_in)
def audit_sign_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    session = getattr(request, "session", None)
    if session is not None:
        session_mark_signed_in(session)
    audit_record(
        actor=user,
        action=AuditEvent.Action.SIGN_IN,
        target="session",
        reason=getattr(request, "th_sign_in_method", "password"),
        request=request,
    )


@receiver(user_logged_out)
def audit_sign_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        audit_record(
            actor=user,
            action=AuditEvent.Action.SIGN_OUT,
            target="session",
            # Set by telehealth.session_middleware when a limit ended the session.
            reason=getattr(request, "th_sign_out_reason", ""),
            request=request,
        )


@receiver(pre_save, sender=User)
def _remember_was_active(sender: Any, instance: User, update_fields: Any = None, **kwargs: Any):  # type: ignore[no-untyped-def]
    if instance.pk is None or instance.is_active:
        return
    if update_fields is not None and "is_active" not in update_fields:
        return
    instance._th_was_active = (  # type: ignore[attr-defined]
        User.objects.filter(pk=instance.pk, is_active=True).exists()
    )


@receiver(post_save, sender=User)
def close_everything_of_a_deactivated_user(sender: Any, instance: User, **kwargs: Any) -> None:
    """The safety net: however ``is_active`` was turned off with ``save()`` (the admin's
    form, a script), ``services.user_deactivate`` ends the sessions, sockets and tokens.
    The admin passes who did it in ``_th_deactivated_by``."""
    if not getattr(instance, "_th_was_active", False):
        return
    instance._th_was_active = False  # type: ignore[attr-defined]
    from telehealth import services

    services.user_deactivate(
        user=instance,
        by=getattr(instance, "_th_deactivated_by", None),
        reason=getattr(instance, "_th_deactivation_reason", "") or "is_active turned off",
    )
