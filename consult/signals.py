"""Signing out closes that session's sockets, on every web process."""

from typing import Any

from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from telehealth.realtime import publish_on_commit, user_topic


@receiver(user_logged_out)
def close_sockets_of_ended_session(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is None:
        return
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    publish_on_commit(user_topic(user.pk), {"kind": "session_ended", "session_key": session_key})
