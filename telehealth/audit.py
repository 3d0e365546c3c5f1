"""The one way to write the audit log, and the check that it was not tampered with."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction

from telehealth.models import AuditEvent, PatientProfile

if TYPE_CHECKING:
    from telehealth.models import User

GENESIS_HASH = "0" * 64
# Any fixed number: the key of the PostgreSQL advisory lock that orders chain writes.
_CHAIN_LOCK_KEY = 7_331_001


def _client_address(request: Any) -> tuple[str | None, str]:
    if request is None:
        return None, ""
    meta = getattr(request, "META", None)
    if meta is None:  # a Channels scope
        client = request.get("client") or (None, None)
        headers = dict(request.get("headers") or [])
        agent = headers.get(b"user-agent", b"").decode("latin-1")
        return client[0], agent[:255]
    return meta.get("REMOTE_ADDR") or None, meta.get("HTTP_USER_AGENT", "")[:255]


def audit_record(
    *,
    actor: User | None,
    action: str,
    target: str,
    patient: PatientProfile | None = None,
    reason: str = "",
    request: Any = None,
) -> AuditEvent:
    """Append one event to the audit log and return it.

    ``target`` names what was touched ("patient:12", "consult.thread:7:history").
    ``request`` is a Django request, a DRF request or a Channels scope; the
    address and client are taken from it.

    Guarantees: the row is chained to the one before it. Writers are serialised
    by a transaction-scoped advisory lock on PostgreSQL (SQLite serialises
    writers itself), so two concurrent writers never fork the chain. Call it
    inside the transaction that does the audited change, so both commit or
    neither does.
    """
    address, agent = _client_address(request)
    label = actor.username if actor is not None else "system"
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])
        last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        event = AuditEvent(
            actor=actor,
            actor_label=label,
            patient=patient,
            action=action,
            target=target[:120],
            reason=reason[:255],
            ip_address=address,
            user_agent=agent,
            prev_hash=last or GENESIS_HASH,
        )
        event.hash = event.compute_hash()
        event.save(force_insert=True)
    return event


def audit_verify_chain(events: Iterable[AuditEvent] | None = None) -> int | None:
    """Walk the chain in order. Return the id of the first broken row, or None if intact."""
    expected_prev = GENESIS_HASH
    rows = events if events is not None else AuditEvent.objects.order_by("id").iterator()
    for event in rows:
        if event.prev_hash != expected_prev or event.compute_hash() != event.hash:
            return event.id
        expected_prev = event.hash
    return None
