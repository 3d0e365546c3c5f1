"""The one way to write the audit log, and the check that it was not tampered with."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction
from django.db.models import OuterRef, Subquery

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


def audit_verify_events(events: Sequence[AuditEvent]) -> int | None:
    """Check some rows of the chain without walking all of it; the id of the first
    broken one, or None.

    ``audit_verify_chain`` reads and hashes every row of the log (a full scan:
    about a second per few hundred thousand rows), too slow for a page. This
    checks each given row where it sits: its hash recomputes from its contents,
    its ``prev_hash`` is the hash of the row just before it, and the row just
    after it recomputes and points back at it. So a given row that was changed,
    removed from between its neighbours, or changed with its hash recomputed, is
    found, in two queries whatever the log's size. (Rewriting the whole rest of
    the chain from a row to the newest one consistently is found only by the
    full walk.)
    """
    rows = sorted(events, key=lambda e: e.id)
    if not rows:
        return None
    ids = [e.id for e in rows]
    neighbours = {
        row["id"]: row
        for row in AuditEvent.objects.filter(id__in=ids)
        .annotate(
            before_hash=Subquery(
                AuditEvent.objects.filter(id__lt=OuterRef("id")).order_by("-id").values("hash")[:1]
            ),
            after_id=Subquery(
                AuditEvent.objects.filter(id__gt=OuterRef("id")).order_by("id").values("id")[:1]
            ),
        )
        .values("id", "before_hash", "after_id")
    }
    after_ids = {n["after_id"] for n in neighbours.values() if n["after_id"] is not None}
    after_rows = {e.id: e for e in AuditEvent.objects.filter(id__in=after_ids)}
    for event in rows:
        found = neighbours.get(event.id)
        if found is None or event.compute_hash() != event.hash:
            return event.id
        if event.prev_hash != (found["before_hash"] or GENESIS_HASH):
            return event.id
        after = after_rows.get(found["after_id"])
        if after is not None:
            if after.prev_hash != event.hash:
                return event.id  # rewritten here, hash and all
            if after.compute_hash() != after.hash:
                return after.id
    return None
