"""Every write of the messaging engine. Views, consumers and other apps call these.

Events are published after commit (``telehealth.realtime``); the database has
the message before anyone hears of it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from consult import frames
from consult.models import Attachment, Message, Participant, Thread
from privacy.models import Purpose
from privacy.selectors import consent_check
from telehealth import services as kernel_services
from telehealth.db_async import async_pool, async_pool_available
from telehealth.errors import AccessDenied, Conflict, DomainError, NotFound
from telehealth.models import CareRelationship, PatientProfile, User, search_key
from telehealth.realtime import publish_committed, publish_on_commit, thread_topic, user_topic

MAX_BODY_CHARS = 8000
MAX_CLIENT_ID_CHARS = 64
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
ALLOWED_ATTACHMENT_TYPES = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/heic": ".heic",
    "application/pdf": ".pdf",
}


@dataclass(frozen=True)
class SendResult:
    message: Message
    created: bool
    frame: dict[str, Any]


def _thread_source(thread: Thread) -> str:
    return f"consult.thread:{thread.pk}"


def _grant_patient_access(thread: Thread, user: User, granted_by: User | None) -> None:
    """Clinicians in a thread about a patient may see that patient's record while they are in it."""
    # A visit's chat follows the visit: consult.visit_services grants and ends
    # that access for the visit as a whole.
    if thread.patient_id is None or user.pk == thread.patient.user_id:
        return
    if thread.kind == Thread.Kind.VISIT:
        return
    kernel_services.care_relationship_grant(
        patient=thread.patient,
        member=user,
        kind=CareRelationship.Kind.CONSULTATION,
        source=_thread_source(thread),
        granted_by=granted_by,
        reason=_("joined a conversation about the patient"),
    )


@transaction.atomic
def thread_open(
    *,
    kind: str,
    created_by: User,
    participants: Sequence[tuple[User, str]],
    subject: str = "",
    context: str = "",
    patient: PatientProfile | None = None,
) -> Thread:
    """Open a thread, or return the one already open for ``(kind, context)``.

    The creator is a host. ``participants`` are (user, role) pairs; the creator
    is added if missing. For a thread about a patient, every clinician in it
    gets a consultation (or visit) care relationship for as long as they stay.
    """
    if kind not in Thread.Kind.values:
        raise DomainError(f"Unknown thread kind {kind!r}.", code="invalid_kind")
    if context:
        existing = Thread.objects.filter(kind=kind, context=context).first()
        if existing is not None:
            return existing
    if patient is not None and kind == Thread.Kind.CASE_CONFERENCE:
        # Discussing a patient's case with mentees is a purpose of its own (privacy).
        consent_check(patient=patient, purpose=Purpose.CASE_DISCUSSION)
    thread = Thread.objects.create(
        kind=kind, subject=subject[:200], context=context, patient=patient, created_by=created_by
    )
    members: dict[int, tuple[User, str]] = {created_by.pk: (created_by, Participant.Role.MEMBER)}
    for user, role in participants:
        members[user.pk] = (user, role)
    for user, role in members.values():
        Participant.objects.create(
            thread=thread, user=user, role=role, is_host=user.pk == created_by.pk
        )
        _grant_patient_access(thread, user, created_by)
    return thread


def _role_of(user: User, patient: PatientProfile | None) -> str | None:
    if patient is not None and user.pk == patient.user_id:
        return Participant.Role.PATIENT
    clinician = getattr(user, "clinician_profile", None)
    if clinician is not None:
        return clinician.kind
    return None


def thread_open_by_user(
    *,
    user: User,
    kind: str,
    participant_ids: Sequence[int],
    subject: str = "",
    patient: PatientProfile | None = None,
) -> Thread:
    """A person opens a consultation or a case conference from the API.

    Rules: clinicians may open either kind and invite clinicians and, for a
    thread about a patient they may see, that patient. A patient may open a
    consultation about themself with clinicians of their care team. The caller
    has already passed the patient access check (``patient_get_for_user``).
    """
    if kind not in (Thread.Kind.CONSULTATION, Thread.Kind.CASE_CONFERENCE):
        raise DomainError(_("This kind of conversation is opened elsewhere."), code="invalid_kind")
    opener_role = _role_of(user, patient)
    if opener_role is None:
        raise AccessDenied(_("Only clinicians and the patient can open a conversation."))
    people = {
        u.pk: u
        for u in User.objects.filter(pk__in=set(participant_ids), is_active=True).select_related(
            "clinician_profile"
        )
    }
    missing = sorted(set(participant_ids) - set(people))
    if missing:
        raise DomainError(
            _("Some people do not exist."),
            code="invalid",
            fields={"participant_ids": [str(pk) for pk in missing]},
        )
    participants: list[tuple[User, str]] = []
    for person in people.values():
        role = _role_of(person, patient)
        if role is None:
            raise DomainError(
                _("%(name)s cannot join this conversation.") % {"name": person.display_name},
                code="invalid",
                fields={"participant_ids": [str(person.pk)]},
            )
        if opener_role == Participant.Role.PATIENT and role != Participant.Role.PATIENT:
            from telehealth.selectors import care_relationship_active

            if care_relationship_active(user=person, patient=patient) is None:
                raise DomainError(
                    _("You can only invite clinicians who care for you."),
                    code="invalid",
                    fields={"participant_ids": [str(person.pk)]},
                )
        participants.append((person, role))
    return thread_open(
        kind=kind,
        created_by=user,
        participants=[(user, opener_role), *participants],
        subject=subject,
        patient=patient,
    )


def _active_participant(thread_id: int, user_id: int) -> Participant | None:
    return (
        Participant.objects.select_related("thread")
        .filter(thread_id=thread_id, user_id=user_id, left_at__isnull=True)
        .first()
    )


@transaction.atomic
def thread_participant_add(
    *, thread_id: int, user: User, role: str, added_by: User | None
) -> Participant:
    """Add (or bring back) a participant. Only a host may add; None means the system."""
    thread = Thread.objects.select_for_update().filter(pk=thread_id).first()
    if thread is None:
        raise NotFound(_("No such conversation."))
    if added_by is not None:
        host = _active_participant(thread_id, added_by.pk)
        if host is None:
            raise NotFound(_("No such conversation."))
        if not host.is_host:
            raise AccessDenied(_("Only the host can add people to this conversation."))
    if role not in Participant.Role.values:
        raise DomainError(_("Unknown role."), code="invalid", fields={"role": [_("Unknown role.")]})
    if not user.is_active:
        raise DomainError(_("This account is not active."), code="inactive_user")
    participant, created = Participant.objects.get_or_create(
        thread=thread, user=user, defaults={"role": role}
    )
    if not created and participant.left_at is not None:
        participant.left_at = None
        participant.role = role
        participant.save(update_fields=["left_at", "role"])
    _grant_patient_access(thread, user, added_by)
    _system_message(
        thread, added_by or thread.created_by, _("%(name)s joined") % {"name": user.display_name}
    )
    return participant


@transaction.atomic
def thread_participant_remove(*, thread_id: int, user_id: int, removed_by: User | None) -> None:
    """Remove a participant: their sockets stop receiving the thread at once.

    A host may remove anyone; anyone may remove themself (leave). Idempotent.
    """
    thread = Thread.objects.select_for_update().filter(pk=thread_id).first()
    if thread is None:
        raise NotFound(_("No such conversation."))
    if removed_by is not None and removed_by.pk != user_id:
        host = _active_participant(thread_id, removed_by.pk)
        if host is None:
            raise NotFound(_("No such conversation."))
        if not host.is_host:
            raise AccessDenied(_("Only the host can remove people from this conversation."))
    participant = (
        Participant.objects.select_related("user")
        .filter(thread=thread, user_id=user_id, left_at__isnull=True)
        .first()
    )
    if participant is None:
        return
    participant.left_at = timezone.now()
    participant.save(update_fields=["left_at"])
    if thread.patient_id is not None:
        for kind in (CareRelationship.Kind.CONSULTATION, CareRelationship.Kind.VISIT):
            kernel_services.care_relationship_end(
                patient=thread.patient,
                member=participant.user,
                kind=kind,
                source=_thread_source(thread),
                ended_by=removed_by,
            )
    publish_on_commit(
        user_topic(user_id),
        {"kind": "removed", "thread": thread.pk, "frame": {"type": "removed", "thread": thread.pk}},
    )
    _system_message(
        thread,
        removed_by or thread.created_by,
        _("%(name)s left") % {"name": participant.user.display_name},
    )


def _system_message(thread: Thread, actor: User, text: str) -> None:
    """A system line in the thread ("Lan joined"), numbered like any message."""
    seq = _next_seq(thread.pk)
    message = Message.objects.create(
        thread_id=thread.pk,
        seq=seq,
        sender=actor,
        client_id=f"system:{thread.pk}:{seq}",
        kind=Message.Kind.SYSTEM,
        body=text,
        body_search=search_key(text),
    )
    frame = frames.message_frame(message, sender_name=actor.display_name, attachments=[])
    publish_on_commit(thread_topic(thread.pk), {"kind": "message", "seq": seq, "frame": frame})


_NEXT_SEQ_SQL = (
    "UPDATE consult_thread SET last_seq = last_seq + 1, last_message_at = %s "
    "WHERE id = %s RETURNING last_seq"
)
_NEXT_SEQ_FOR_SENDER_SQL = (
    "UPDATE consult_thread SET last_seq = last_seq + 1, last_message_at = %s "
    "WHERE id = %s AND is_closed = %s AND EXISTS ("
    "  SELECT 1 FROM consult_participant p"
    "  WHERE p.thread_id = consult_thread.id AND p.user_id = %s AND p.left_at IS NULL"
    ") RETURNING last_seq"
)


def _next_seq(thread_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(_NEXT_SEQ_SQL, [timezone.now(), thread_id])
        row = cursor.fetchone()
    if row is None:
        raise NotFound(_("No such conversation."))
    return int(row[0])


def _validate_send(client_id: Any, body: Any, attachment_ids: Any) -> list[str]:
    fields: dict[str, list[str]] = {}
    if not isinstance(client_id, str) or not 1 <= len(client_id) <= MAX_CLIENT_ID_CHARS:
        fields["client_id"] = [_("A text of 1 to 64 characters, unique for each message.")]
    if not isinstance(body, str):
        fields["body"] = [_("Text is required.")]
    elif len(body) > MAX_BODY_CHARS:
        raise DomainError(
            _("The message is longer than %(n)d characters.") % {"n": MAX_BODY_CHARS},
            code="too_large",
            fields={"body": [_("Too long.")]},
        )
    ids: list[str] = []
    if attachment_ids is not None:
        if not isinstance(attachment_ids, list) or len(attachment_ids) > 10:
            fields["attachments"] = [_("A list of at most 10 attachment ids.")]
        else:
            ids = [str(a) for a in attachment_ids]
    if not fields and not body.strip() and not ids:
        fields["body"] = [_("Write a message or attach a file.")]
    if fields:
        raise DomainError(_("The message has invalid fields."), code="invalid", fields=fields)
    return ids


def message_send(
    *,
    user: User,
    thread_id: int,
    client_id: Any,
    body: Any,
    attachment_ids: Any = None,
) -> SendResult:
    """Store a message with the thread's next sequence number, then publish it.

    Guarantees:
    - accepted means committed: the caller acknowledges only after this returns;
    - a retry with the same ``client_id`` returns the original message
      (``created=False``), never a second one (unique constraint on sender + client id);
    - sequence numbers of a thread are 1, 2, 3… with no gaps, in commit order: the
      thread row is locked by the UPDATE that hands out the number;
    - the sender's read mark moves to their own message.
    Raises ``NotFound`` if the user is not an active participant, ``Conflict`` if
    the thread is closed, ``DomainError`` for bad input.
    """
    ids = _validate_send(client_id, body, attachment_ids)
    try:
        with transaction.atomic():
            now = timezone.now()
            if connection.vendor == "postgresql":
                message = _store_in_one_round_trip(user, thread_id, client_id, body, now)
            else:
                message = _store_step_by_step(user, thread_id, client_id, body, now)
            if message is None:
                # Refused: a retry of a message already stored (the thread has
                # since closed) still gets its original; anything else is explained.
                existing = _message_by_client_id(user, client_id)
                if existing is not None:
                    return existing
                _explain_refused_send(thread_id, user)
            attachments = _attach(message, user, ids) if ids else []
            frame = frames.message_frame(
                message, sender_name=user.display_name, attachments=attachments
            )
            publish_on_commit(
                thread_topic(thread_id), {"kind": "message", "seq": message.seq, "frame": frame}
            )
    except IntegrityError:
        # The unique (sender, client_id) said this is a retry: return the original.
        existing = _message_by_client_id(user, client_id)
        if existing is None:
            raise
        return existing
    return SendResult(message=message, created=True, frame=frame)


# The hot path on PostgreSQL: number the message (locking the thread row and
# checking membership), store it and move the sender's read mark, in one statement.
_SEND_SQL = """
WITH numbered AS (
    UPDATE consult_thread SET last_seq = last_seq + 1, last_message_at = %(now)s
    WHERE id = %(thread)s AND NOT is_closed AND EXISTS (
        SELECT 1 FROM consult_participant p
        WHERE p.thread_id = %(thread)s AND p.user_id = %(user)s AND p.left_at IS NULL
    )
    RETURNING last_seq
), stored AS (
    INSERT INTO consult_message
        (thread_id, seq, sender_id, client_id, kind, body, body_search, created_at)
    SELECT %(thread)s, numbered.last_seq, %(user)s, %(client_id)s, 'text', %(body)s,
           %(search)s, %(now)s
    FROM numbered
    RETURNING id, seq
), marked AS (
    UPDATE consult_participant SET read_seq = stored.seq FROM stored
    WHERE consult_participant.thread_id = %(thread)s
      AND consult_participant.user_id = %(user)s AND consult_participant.read_seq < stored.seq
)
SELECT id, seq FROM stored
"""


def _store_in_one_round_trip(
    user: User, thread_id: int, client_id: str, body: str, now: Any
) -> Message | None:
    with connection.cursor() as cursor:
        cursor.execute(_SEND_SQL, _send_params(user, thread_id, client_id, body, now))
        row = cursor.fetchone()
    if row is None:
        return None
    return Message(
        id=row[0],
        thread_id=thread_id,
        seq=row[1],
        sender=user,
        client_id=client_id,
        kind=Message.Kind.TEXT,
        body=body,
        created_at=now,
    )


def _send_params(user: User, thread_id: int, client_id: str, body: str, now: Any) -> dict:
    return {
        "now": now,
        "thread": thread_id,
        "user": user.pk,
        "client_id": client_id,
        "body": body,
        "search": search_key(body),
    }


async def message_send_async(
    *,
    user: User,
    thread_id: int,
    client_id: Any,
    body: Any,
    attachment_ids: Any = None,
) -> SendResult:
    """``message_send`` for a socket, on the event loop: the same guarantees.

    On PostgreSQL a text message is stored by ``_SEND_SQL`` on this process's
    async pool (``telehealth.db_async``): one statement in autocommit, so one
    transaction and one round trip, with no thread. Accepted still means
    committed: the statement has committed when it returns, and only then is
    the message published and acknowledged. Every other case goes through
    ``message_send`` in the thread pool, which explains it or handles it: a
    retry of a stored message (the unique constraint refuses the insert and the
    whole statement rolls back, seq included), a refusal, attachments, SQLite,
    or a connection that failed (the ORM reconnects or reports the outage).
    """
    from channels.db import database_sync_to_async

    def in_thread() -> Any:
        return database_sync_to_async(message_send, thread_sensitive=False)(
            user=user,
            thread_id=thread_id,
            client_id=client_id,
            body=body,
            attachment_ids=attachment_ids,
        )

    if attachment_ids or not async_pool_available():
        return await in_thread()
    _validate_send(client_id, body, attachment_ids)
    now = timezone.now()
    import psycopg

    try:
        pool = await async_pool()
        async with pool.connection() as conn:
            cursor = await conn.execute(
                _SEND_SQL, _send_params(user, thread_id, client_id, body, now)
            )
            row = await cursor.fetchone()
    except (psycopg.errors.UniqueViolation, psycopg.OperationalError, OSError):
        row = None
    if row is None:
        return await in_thread()
    message = Message(
        id=row[0],
        thread_id=thread_id,
        seq=row[1],
        sender=user,
        client_id=client_id,
        kind=Message.Kind.TEXT,
        body=body,
        created_at=now,
    )
    frame = frames.message_frame(message, sender_name=user.display_name, attachments=[])
    publish_committed(
        thread_topic(thread_id), {"kind": "message", "seq": message.seq, "frame": frame}
    )
    return SendResult(message=message, created=True, frame=frame)


def _store_step_by_step(
    user: User, thread_id: int, client_id: str, body: str, now: Any
) -> Message | None:
    with connection.cursor() as cursor:
        cursor.execute(_NEXT_SEQ_FOR_SENDER_SQL, [now, thread_id, False, user.pk])
        row = cursor.fetchone()
    if row is None:
        return None
    seq = int(row[0])
    message = Message.objects.create(
        thread_id=thread_id,
        seq=seq,
        sender=user,
        client_id=client_id,
        body=body,
        body_search=search_key(body),
        created_at=now,
    )
    Participant.objects.filter(thread_id=thread_id, user=user, read_seq__lt=seq).update(
        read_seq=seq
    )
    return message


def _message_by_client_id(user: User, client_id: str) -> SendResult | None:
    message = Message.objects.filter(sender=user, client_id=client_id).first()
    if message is None:
        return None
    attachments = list(message.attachments.all())
    frame = frames.message_frame(message, sender_name=user.display_name, attachments=attachments)
    return SendResult(message=message, created=False, frame=frame)


def _explain_refused_send(thread_id: int, user: User) -> None:
    participant = _active_participant(thread_id, user.pk)
    if participant is None:
        raise NotFound(_("No such conversation."))
    raise Conflict(_("This conversation is closed."), code="closed")


def _attach(message: Message, user: User, ids: Iterable[str]) -> list[Attachment]:
    ids = list(dict.fromkeys(ids))
    try:
        found = Attachment.objects.filter(
            pk__in=ids, thread_id=message.thread_id, uploaded_by=user, message__isnull=True
        ).update(message=message)
    except Exception as exc:  # malformed UUIDs
        raise DomainError(
            _("Unknown attachment."), code="invalid", fields={"attachments": [str(exc)[:100]]}
        ) from None
    if found != len(ids):
        raise DomainError(
            _("An attachment is unknown, already sent, or not yours."),
            code="invalid",
            fields={"attachments": [_("Upload the file to this conversation first.")]},
        )
    return list(Attachment.objects.filter(message=message).order_by("created_at"))


def thread_mark_read(*, user: User, thread_id: int, seq: Any) -> int:
    """Move the user's read mark forward to ``seq`` (never back). Returns the mark."""
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise DomainError(
            _("seq must be a whole number."), code="invalid", fields={"seq": [_("Invalid.")]}
        )
    with transaction.atomic():
        participant = (
            Participant.objects.select_for_update()
            .select_related("thread")
            .filter(thread_id=thread_id, user=user, left_at__isnull=True)
            .first()
        )
        if participant is None:
            raise NotFound(_("No such conversation."))
        seq = min(seq, participant.thread.last_seq)
        if seq > participant.read_seq:
            participant.read_seq = seq
            participant.save(update_fields=["read_seq"])
            publish_on_commit(
                thread_topic(thread_id),
                {
                    "kind": "read",
                    "frame": {"type": "read", "thread": thread_id, "user": user.pk, "seq": seq},
                },
            )
        return participant.read_seq


def _sniff(head: bytes) -> str | None:
    import filetype

    kind = filetype.guess(head)
    if kind is not None and kind.mime in ALLOWED_ATTACHMENT_TYPES:
        return kind.mime
    return None


@transaction.atomic
def attachment_upload(*, user: User, thread_id: int, upload: UploadedFile) -> Attachment:
    """Store a file privately for a later ``message_send``.

    The type is sniffed from the content (the name and the browser's claim are
    ignored); only images (JPEG, PNG, WebP, HEIC) and PDF up to 10 MB are taken.
    """
    if _active_participant(thread_id, user.pk) is None:
        raise NotFound(_("No such conversation."))
    if upload.size is None or upload.size > MAX_ATTACHMENT_BYTES:
        raise DomainError(
            _("Files can be at most 10 MB."), code="too_large", fields={"file": [_("Too large.")]}
        )
    if upload.size == 0:
        raise DomainError(_("The file is empty."), code="invalid", fields={"file": [_("Empty.")]})
    head = upload.read(8192)
    upload.seek(0)
    content_type = _sniff(head)
    if content_type is None:
        raise DomainError(
            _("Only images (JPEG, PNG, WebP, HEIC) and PDF files can be attached."),
            code="unsupported_type",
            fields={"file": [_("Unsupported file type.")]},
        )
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    name = (upload.name or "file").rsplit("/", 1)[-1][:150]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    attachment = Attachment(
        thread_id=thread_id,
        uploaded_by=user,
        name=f"{stem}{ALLOWED_ATTACHMENT_TYPES[content_type]}",
        content_type=content_type,
        size=upload.size,
        sha256=digest.hexdigest(),
    )
    attachment.file.save(attachment.name, upload, save=False)
    attachment.save()
    return attachment


def thread_close(*, thread_id: int, closed_by: User | None) -> None:
    """Close a thread to new messages; history stays readable. Idempotent."""
    with transaction.atomic():
        query = Thread.objects.filter(pk=thread_id)
        if closed_by is not None:
            query = query.filter(Q(participants__user=closed_by, participants__is_host=True))
        query.update(is_closed=True)


__all__ = [
    "ALLOWED_ATTACHMENT_TYPES",
    "MAX_BODY_CHARS",
    "SendResult",
    "attachment_upload",
    "message_send",
    "thread_close",
    "thread_mark_read",
    "thread_open",
    "thread_open_by_user",
    "thread_participant_add",
    "thread_participant_remove",
]
