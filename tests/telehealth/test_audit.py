"""The audit log is append-only and tamper-evident."""

import pytest
from django.db import IntegrityError, InternalError, ProgrammingError, connection, transaction

from telehealth.audit import GENESIS_HASH, audit_record, audit_verify_chain
from telehealth.models import AuditEvent, AuditLogIsAppendOnly

pytestmark = pytest.mark.django_db


def _three_events(patient):
    return [
        audit_record(
            actor=patient.user, action="read", target=f"patient:{patient.pk}", patient=patient
        )
        for _ in range(3)
    ]


def test_events_chain_from_the_genesis_hash(patient):
    first, second, third = _three_events(patient)

    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert third.prev_hash == second.hash
    assert audit_verify_chain() is None


def test_the_orm_refuses_to_change_or_delete_an_event(patient):
    event = _three_events(patient)[0]
    event.reason = "covering tracks"

    with pytest.raises(AuditLogIsAppendOnly):
        event.save()
    with pytest.raises(AuditLogIsAppendOnly):
        event.delete()
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.filter(pk=event.pk).update(reason="x")
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.all().delete()


@pytest.mark.postgres
def test_postgres_refuses_raw_sql_updates_and_deletes(patient):
    event = _three_events(patient)[0]

    for statement in (
        "UPDATE telehealth_auditevent SET reason = 'x'",
        "DELETE FROM telehealth_auditevent",
    ):
        with pytest.raises((InternalError, ProgrammingError, IntegrityError)), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(statement)

    assert AuditEvent.objects.get(pk=event.pk).reason == ""


def test_a_changed_row_breaks_the_chain_at_that_row(patient):
    events = list(_three_events(patient))
    events[1].reason = "edited"

    assert audit_verify_chain(events) == events[1].id


def test_a_removed_row_breaks_the_chain_after_it(patient):
    first, _, third = _three_events(patient)

    assert audit_verify_chain([first, third]) == third.id


def test_the_address_and_client_come_from_a_channels_scope_too(patient):
    scope = {"client": ("192.0.2.4", 5555), "headers": [(b"user-agent", b"TeleApp/1.0")]}

    event = audit_record(actor=patient.user, action="read", target="thread:1", request=scope)

    assert (event.ip_address, event.user_agent) == ("192.0.2.4", "TeleApp/1.0")
