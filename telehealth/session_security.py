"""Idle and absolute limits of a signed-in session, the same over HTTP and the websocket.

A session remembers when it signed in (``STARTED_KEY``) and when it was last used
(``SEEN_KEY``), both as Unix seconds. It ends when it has not been used for
``SESSION_IDLE_TIMEOUT`` or when ``SESSION_ABSOLUTE_TIMEOUT`` has passed since the
sign-in, whichever comes first. "Used" means a request the person made, or a frame
they sent on the socket (``ACTIVITY_FRAMES`` in ``consult.consumers``); what the
server pushes never counts. The last use is written to the session at most once per
``SESSION_ACTIVITY_RESOLUTION``, so a busy page does not write its session on
every request.

Who reads this: ``telehealth.session_middleware.SessionSecurityMiddleware`` (pages and
the API) and ``consult.consumers.RealtimeConsumer`` (through
``socket_session_check``). Ending a session is ``telehealth.services.session_end``
(or Django's ``logout`` inside a request); both audit a sign-out with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import UpdateError

STARTED_KEY = "_th_started"
SEEN_KEY = "_th_seen"

IDLE = "idle"
ABSOLUTE = "absolute"
ENDED = "ended"  # the session no longer exists: signed out, deleted, deactivated

# What the audit log says for each reason a session ends (AuditEvent.reason).
REASON_LABELS = {
    IDLE: "session idle timeout",
    ABSOLUTE: "session absolute lifetime reached",
    ENDED: "session ended elsewhere",
}


def _idle_seconds() -> float:
    return settings.SESSION_IDLE_TIMEOUT.total_seconds()


def _absolute_seconds() -> float:
    return settings.SESSION_ABSOLUTE_TIMEOUT.total_seconds()


def _resolution_seconds() -> float:
    return settings.SESSION_ACTIVITY_RESOLUTION.total_seconds()


def session_mark_signed_in(session: MutableMapping[str, Any], *, now: float | None = None) -> None:
    """Start both clocks: called when a person signs in."""
    now = time.time() if now is None else now
    session[STARTED_KEY] = int(now)
    session[SEEN_KEY] = int(now)


def session_expiry_reason(
    session: Mapping[str, Any], *, now: float | None = None, seen: float | None = None
) -> str | None:
    """``IDLE`` or ``ABSOLUTE`` when the session is over, else None.

    ``seen`` is a later use known to the caller but not yet written (a socket's
    last frame). A session without clocks (signed in before they existed) is not
    over; ``session_touch`` starts its clocks."""
    now = time.time() if now is None else now
    started = session.get(STARTED_KEY)
    if started is not None and now - float(started) >= _absolute_seconds():
        return ABSOLUTE
    last = max(float(session.get(SEEN_KEY) or 0), seen or 0)
    if last and now - last >= _idle_seconds():
        return IDLE
    return None


def session_touch(
    session: MutableMapping[str, Any], *, now: float | None = None, seen: float | None = None
) -> bool:
    """Record a use at ``seen`` (default now) if the stored one is older than the
    resolution. Returns True when the session was changed (and must be saved)."""
    now = time.time() if now is None else now
    seen = now if seen is None else seen
    changed = False
    if STARTED_KEY not in session:
        session[STARTED_KEY] = int(now)
        changed = True
    stored = float(session.get(SEEN_KEY) or 0)
    if seen - stored >= _resolution_seconds():
        session[SEEN_KEY] = int(seen)
        changed = True
    return changed


def session_store(session_key: str | None = None) -> Any:
    """A store of the configured engine for ``session_key`` (not loaded yet)."""
    engine = import_module(settings.SESSION_ENGINE)
    return engine.SessionStore(session_key)


@dataclass
class SocketSessionState:
    """What a socket learns from one look at its session."""

    reason: str | None  # None: still good; IDLE, ABSOLUTE or ENDED: close with 4401
    started: float = 0.0
    seen: float = 0.0


def socket_session_check(
    *, session_key: str | None, user: Any, activity: float | None = None
) -> SocketSessionState:
    """The websocket's look at its session (runs in a worker thread).

    Ends the session when it is over (``services.session_end``: deleted, a
    sign-out audited with the reason, its other sockets told); records the
    socket's own last use (``activity``) when it is newer than the stored one by
    the resolution; says ENDED when the session no longer exists or belongs to
    someone else, or lacks a second factor its user needs."""
    from telehealth import services, two_factor

    if not session_key:
        return SocketSessionState(ENDED)
    store = session_store(session_key)
    data = dict(store.items())  # loads once; later reads and the save reuse it
    if not data or str(data.get(SESSION_KEY)) != str(user.pk):
        return SocketSessionState(ENDED)
    now = time.time()
    reason = session_expiry_reason(data, now=now, seen=activity)
    if reason is not None:
        services.session_end(session_key=session_key, user=user, reason=reason)
        return SocketSessionState(reason)
    # The second factor, at most once per resolution, as the pages' middleware does:
    # a look at the TOTP device is a database query, and every socket checks often.
    changed = False
    if now - float(data.get(two_factor.CHECKED_KEY) or 0) >= _resolution_seconds():
        if not two_factor.second_factor_satisfied(user=user, session=data):
            return SocketSessionState(ENDED)
        store[two_factor.CHECKED_KEY] = int(now)
        changed = True
    if activity is not None and session_touch(store, now=now, seen=activity):
        changed = True
    if changed:
        try:
            store.save()
        except UpdateError:  # deleted between the load and the save
            return SocketSessionState(ENDED)
    return SocketSessionState(
        None, started=float(store.get(STARTED_KEY) or now), seen=float(store.get(SEEN_KEY) or now)
    )


def socket_deadline(state: SocketSessionState, activity: float | None) -> float:
    """The earliest moment the session can be over, from what the socket knows:
    before it, a frame needs no look at the store."""
    last = max(state.seen, activity or 0)
    return min(state.started + _absolute_seconds(), last + _idle_seconds())
