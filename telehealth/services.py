"""Writes to the shared kernel. Other apps call these, never the models' save()."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from telehealth.audit import audit_record
from telehealth.errors import DomainError
from telehealth.models import AuditEvent, CareRelationship, PatientProfile, User


@transaction.atomic
def care_relationship_grant(
    *,
    patient: PatientProfile,
    member: User,
    kind: str,
    source: str = "",
    ends_at: datetime | None = None,
    granted_by: User | None = None,
    reason: str = "",
) -> CareRelationship:
    """Let ``member`` see ``patient``'s record for ``kind`` (from ``source``). Idempotent.

    Granting again the same (patient, member, kind, source) re-opens it and
    moves its end; it never makes a second row. Audited as a change to the
    patient's record.
    """
    if kind not in CareRelationship.Kind.values:
        raise DomainError(f"Unknown care relationship {kind!r}.", code="invalid_kind")
    if member.pk == patient.user_id:
        raise DomainError("A patient needs no relationship with themself.", code="self_relation")
    relationship, created = CareRelationship.objects.select_for_update().get_or_create(
        patient=patient,
        member=member,
        kind=kind,
        source=source,
        defaults={"ends_at": ends_at, "granted_by": granted_by},
    )
    if not created and relationship.ends_at != ends_at:
        relationship.ends_at = ends_at
        relationship.save(update_fields=["ends_at"])
    audit_record(
        actor=granted_by,
        action=AuditEvent.Action.CREATE,
        target=f"care_relationship:{relationship.pk}:{kind}:{member.username}",
        patient=patient,
        reason=reason or source,
    )
    return relationship


@transaction.atomic
def care_relationship_end(
    *,
    patient: PatientProfile,
    member: User,
    kind: str,
    source: str = "",
    ended_by: User | None = None,
) -> None:
    """End the relationship now; access through it stops at once. Idempotent."""
    now = timezone.now()
    updated = CareRelationship.objects.filter(
        patient=patient, member=member, kind=kind, source=source, ends_at__isnull=True
    ).update(ends_at=now)
    if updated:
        audit_record(
            actor=ended_by,
            action=AuditEvent.Action.UPDATE,
            target=f"care_relationship:{kind}:{member.username}:ended",
            patient=patient,
            reason=source,
        )


_SELF_EDITABLE = {"full_name", "phone", "preferred_language"}


@transaction.atomic
def user_profile_update(*, user: User, data: dict[str, Any]) -> User:
    """Change what a person may change about themself; other fields are refused."""
    unknown = set(data) - _SELF_EDITABLE
    if unknown:
        raise DomainError(
            "These fields cannot be changed here.",
            code="read_only",
            fields={name: ["read-only"] for name in sorted(unknown)},
        )
    for name, value in data.items():
        setattr(user, name, value)
    if data:
        user.save(update_fields=sorted(data))
    return user
