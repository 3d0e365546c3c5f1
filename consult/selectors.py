"""Every protected read of the messaging engine: checked against participation, history audited."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db.models import F, Prefetch, QuerySet
from django.utils.translation import gettext as _

from consult import frames
from consult.models import Attachment, Message, Participant, Thread
from telehealth.audit import audit_record
from telehealth.errors import DomainError, NotFound
from telehealth.models import AuditEvent, User, search_key

HISTORY_PAGE_MAX = 200


def thread_get_for_user(*, user: User, thread_id: int) -> Thread:
    """The thread, if ``user`` is an active participant; else ``NotFound`` (never telling which)."""
    if not user.is_authenticated:
        raise NotFound(_("No such conversation."))
    thread = (
        Thread.objects.select_related("patient__user")
        .filter(pk=thread_id, participants__user=user, participants__left_at__isnull=True)
        .first()
    )
    if thread is None:
        raise NotFound(_("No such conversation."))
    return thread


def thread_list_for_user(*, user: User) -> QuerySet[Thread]:
    """The user's threads, newest activity first, each with ``my_read_seq`` and ``unread``."""
    return (
        Thread.objects.filter(participants__user=user, participants__left_at__isnull=True)
        .annotate(my_read_seq=F("participants__read_seq"))
        .annotate(unread=F("last_seq") - F("participants__read_seq"))
        .prefetch_related(
            Prefetch(
                "participants",
                queryset=Participant.objects.filter(left_at__isnull=True).select_related("user"),
                to_attr="active_participants",
            )
        )
        .order_by(F("last_message_at").desc(nulls_last=True), "-id")
    )


def participants_of(*, thread_id: int) -> list[Participant]:
    return list(
        Participant.objects.filter(thread_id=thread_id, left_at__isnull=True)
        .select_related("user")
        .order_by("joined_at")
    )


def _audit_history(user: User, thread: Thread, what: str, request: Any) -> None:
    audit_record(
        actor=user,
        action=AuditEvent.Action.READ,
        target=f"consult.thread:{thread.pk}:{what}",
        patient=thread.patient,
        reason=_("conversation history"),
        request=request,
    )


def _frames(messages: list[Message]) -> list[dict[str, Any]]:
    attachments: dict[int, list[Attachment]] = defaultdict(list)
    for attachment in Attachment.objects.filter(message__in=messages).order_by("created_at"):
        attachments[attachment.message_id].append(attachment)
    return [
        frames.message_frame(m, sender_name=m.sender.display_name, attachments=attachments[m.pk])
        for m in messages
    ]


@dataclass(frozen=True)
class HistoryPage:
    messages: list[dict[str, Any]]
    has_more: bool


def _parse_cursor(name: str, value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if number < 0:
        raise DomainError(
            _("%(name)s must be a sequence number.") % {"name": name},
            code="invalid",
            fields={name: [_("A whole number, 0 or more.")]},
        )
    return number


def message_history(
    *,
    user: User,
    thread_id: int,
    before: Any = None,
    after: Any = None,
    limit: Any = 50,
    request: Any = None,
) -> HistoryPage:
    """A page of a thread's messages in seq order, cursor-paginated by seq. Audited.

    ``before``: the page just before that seq (scrolling back; newest page when
    both are absent). ``after``: the page just after that seq (catching up).
    """
    thread = thread_get_for_user(user=user, thread_id=thread_id)
    before_seq = _parse_cursor("before", before)
    after_seq = _parse_cursor("after", after)
    size = _parse_cursor("limit", limit) or 50
    size = min(size, HISTORY_PAGE_MAX)
    query = Message.objects.filter(thread_id=thread.pk).select_related("sender")
    if after_seq is not None:
        rows = list(query.filter(seq__gt=after_seq).order_by("seq")[: size + 1])
        has_more = len(rows) > size
        rows = rows[:size]
    else:
        if before_seq is not None:
            query = query.filter(seq__lt=before_seq)
        rows = list(query.order_by("-seq")[: size + 1])
        has_more = len(rows) > size
        rows = list(reversed(rows[:size]))
    _audit_history(user, thread, "history", request)
    return HistoryPage(messages=_frames(rows), has_more=has_more)


def message_search(*, user: User, thread_id: int, query: Any, request: Any = None) -> list[dict]:
    """Messages of one thread containing every word of ``query``, accents ignored. Audited."""
    thread = thread_get_for_user(user=user, thread_id=thread_id)
    if not isinstance(query, str) or not query.strip():
        raise DomainError(_("Type something to search for."), code="invalid", fields={"q": ["?"]})
    rows = Message.objects.filter(thread_id=thread.pk).select_related("sender")
    for word in search_key(query).split()[:10]:
        rows = rows.filter(body_search__contains=word)
    _audit_history(user, thread, f"search:{query[:40]}", request)
    return _frames(list(rows.order_by("-seq")[:HISTORY_PAGE_MAX]))


def messages_after_for_replay(*, thread_id: int, after: int, limit: int) -> list[dict[str, Any]]:
    """Frames after ``after``, for a socket whose access was already checked at subscribe."""
    rows = list(
        Message.objects.filter(thread_id=thread_id, seq__gt=after)
        .select_related("sender")
        .order_by("seq")[:limit]
    )
    return _frames(rows)


def attachment_get_for_user(*, user: User, attachment_id: Any, request: Any = None) -> Attachment:
    """An attachment, for active participants of its thread only. Audited."""
    attachment = (
        Attachment.objects.select_related("thread__patient")
        .filter(
            pk=attachment_id,
            thread__participants__user=user,
            thread__participants__left_at__isnull=True,
        )
        .first()
        if user.is_authenticated
        else None
    )
    if attachment is None:
        raise NotFound(_("No such file."))
    audit_record(
        actor=user,
        action=AuditEvent.Action.READ,
        target=f"consult.attachment:{attachment.pk}",
        patient=attachment.thread.patient,
        reason=_("attachment download"),
        request=request,
    )
    return attachment


def thread_last_seqs(*, thread_ids: list[int]) -> dict[int, int]:
    return dict(Thread.objects.filter(pk__in=thread_ids).values_list("pk", "last_seq"))
