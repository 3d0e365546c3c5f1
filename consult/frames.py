"""Frames of the realtime protocol (docs/protocol.md) built from models.

Live delivery and replay from the database use the same functions, so a
message looks the same whichever way it reached the client.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.urls import reverse

from consult.models import Attachment, Message

PROTOCOL_VERSION = 1


def attachment_frame(attachment: Attachment) -> dict[str, Any]:
    return {
        "id": str(attachment.pk),
        "name": attachment.name,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "url": reverse("api-attachment-download", kwargs={"attachment_id": attachment.pk}),
    }


def message_frame(
    message: Message, *, sender_name: str, attachments: Iterable[Attachment]
) -> dict[str, Any]:
    return {
        "type": "message",
        "thread": message.thread_id,
        "seq": message.seq,
        "id": message.pk,
        "client_id": message.client_id,
        "sender": {"id": message.sender_id, "name": sender_name},
        "kind": message.kind,
        "body": message.body,
        "attachments": [attachment_frame(a) for a in attachments],
        "created_at": message.created_at.isoformat().replace("+00:00", "Z"),
    }


def ack_frame(frame: dict[str, Any], *, duplicate: bool, ref: Any = None) -> dict[str, Any]:
    return {
        "type": "ack",
        "ref": ref,
        "thread": frame["thread"],
        "client_id": frame["client_id"],
        "seq": frame["seq"],
        "id": frame["id"],
        "created_at": frame["created_at"],
        "duplicate": duplicate,
    }


def error_frame(code: str, detail: str, *, ref: Any = None, fields: dict | None = None) -> dict:
    frame: dict[str, Any] = {"type": "error", "ref": ref, "code": code, "detail": detail}
    if fields:
        frame["fields"] = fields
    return frame
