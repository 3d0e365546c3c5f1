"""The web tier's side of the media contract: join tokens, ICE servers, room placement,
admin requests to the room's node (remove a participant, start and stop a recording),
and checking the tokens nodes send with recording uploads.

Relay nodes (``relay/``, no Django) verify the tokens minted here: HS256 JWTs
naming the room, the participant and what they may do, valid for a minute or
two. Nothing here logs SDP or ICE data; it never sees them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import jwt
from django.conf import settings

logger = logging.getLogger(__name__)

ISSUER = "telehealth-web"
AUDIENCE = "telehealth-relay"


def join_token(*, room: str, participant: str, caps: list[str], node: str | None = None) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + settings.RELAY_TOKEN_TTL_SECONDS,
        "room": room,
        "sub": participant,
        "cap": caps,
    }
    if node:
        claims["node"] = node
    return jwt.encode(claims, settings.RELAY_TOKEN_SECRET, algorithm="HS256")


def turn_credentials(*, user_ref: str, now: float | None = None) -> dict[str, Any] | None:
    """coturn's time-limited REST credentials, or None when no TURN is configured."""
    if not (settings.TURN_URLS and settings.TURN_SHARED_SECRET):
        return None
    expiry = int(now if now is not None else time.time()) + settings.TURN_TTL_SECONDS
    username = f"{expiry}:{user_ref}"
    digest = hmac.new(settings.TURN_SHARED_SECRET.encode(), username.encode(), hashlib.sha1)
    return {
        "urls": list(settings.TURN_URLS),
        "username": username,
        "credential": base64.b64encode(digest.digest()).decode(),
    }


def ice_servers(*, user_ref: str) -> list[dict[str, Any]]:
    servers: list[dict[str, Any]] = []
    if settings.STUN_URLS:
        servers.append({"urls": list(settings.STUN_URLS)})
    turn = turn_credentials(user_ref=user_ref)
    if turn:
        servers.append(turn)
    return servers


def _redis():  # type: ignore[no-untyped-def]
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def relay_for_room(room: str) -> dict[str, str | None]:
    """The relay node serving ``room``: placed on the least loaded live node with Redis,
    the one local node otherwise. Returns {"id", "url"}; the id is None for the one
    local node, so tokens for it carry no node claim."""
    if not settings.REDIS_URL:
        return {"id": None, "url": settings.RELAY_URL}
    from relay.registry import NoRelayAvailable, place_room_sync

    try:
        node = place_room_sync(_redis(), room)
    except NoRelayAvailable:
        # Nothing registered: the configured node serves (one-node setups), unless
        # production asks for registered nodes only.
        if settings.RELAY_URL and not settings.RELAY_REQUIRE_REGISTRY:
            return {"id": None, "url": settings.RELAY_URL}
        from telehealth.errors import DomainError

        raise DomainError(
            "No video relay is available right now. Please try again shortly.",
            code="relay_unavailable",
        ) from None
    return {"id": node.id, "url": node.url}


def _relay_admin_request(
    *, room: str, method: str, path: str, body: dict[str, Any] | None = None
) -> int | None:
    """An admin request (web-signed ``admin`` token for the room) to the room's node.
    Returns the HTTP status, or None if no node answered."""
    node = relay_for_room(room)
    token = join_token(room=room, participant="web", caps=["admin"], node=node["id"])
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    url = f"{node['url'].rstrip('/')}{path}"
    if not url.startswith(("http://", "https://")):
        return None  # a registry entry that is not a web address (file:, ftp:) is never opened
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        # Bandit B310 (urlopen with any scheme): the scheme is checked just above.
        with urllib.request.urlopen(request, timeout=3) as response:  # noqa: S310  # nosec B310
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except Exception:
        return None


def relay_remove_participant(*, room: str, participant: str) -> bool:
    """Cut a participant's media on the room's node now. Best effort: a removed
    participant is also refused new join tokens, so a failure here cannot let
    them back in."""
    try:
        status = _relay_admin_request(
            room=room, method="DELETE", path=f"/rooms/{room}/participants/{participant}"
        )
    except Exception:
        logger.warning("no relay to remove %s from %s", participant, room)
        return False
    if status not in (200, 204):
        logger.warning("relay refused or missed removal of %s from %s", participant, room)
        return False
    return True


def recording_upload_url(*, visit_id: int) -> str:
    """Where the room's node uploads recording files: this web tier, as the node reaches it.

    ``RELAY_RECORDING_UPLOAD_BASE`` (a setting, e.g. ``https://web.internal``) when
    set; otherwise the address ``scripts/run.py`` serves on (one machine).
    """
    base = settings.RELAY_RECORDING_UPLOAD_BASE or "http://{}:{}".format(
        os.environ.get("TELEHEALTH_HOST", "127.0.0.1"), os.environ.get("TELEHEALTH_PORT", "8000")
    )
    return f"{base.rstrip('/')}/api/v1/visits/{visit_id}/recordings/upload/"


def relay_recording_start(*, room: str, recording: str, upload_url: str) -> bool:
    """Ask the room's node to record every publisher from now on. True if it does."""
    try:
        status = _relay_admin_request(
            room=room,
            method="POST",
            path=f"/rooms/{room}/recording",
            body={"recording": recording, "upload_url": upload_url},
        )
    except Exception:
        status = None
    if status not in (200, 201):
        logger.warning("relay did not start recording %s in %s (%s)", recording, room, status)
        return False
    return True


def relay_recording_stop(*, room: str, recording: str) -> bool:
    """Ask the room's node to finish the recording's files (it then uploads them).

    A 404 counts as stopped: the node is not recording it (it never started,
    or the node was replaced and the new one never recorded).
    """
    query = urllib.parse.urlencode({"recording": recording})
    for attempt in range(3):
        try:
            status = _relay_admin_request(
                room=room, method="DELETE", path=f"/rooms/{room}/recording?{query}"
            )
        except Exception:
            status = None
        if status in (200, 204, 404):
            return True
        time.sleep(0.2 * (attempt + 1))
    logger.warning("relay did not confirm stopping recording %s in %s", recording, room)
    return False


def recording_upload_claims(authorization: str | None) -> Any:
    """The claims of a node's recording-upload token (``Authorization: Bearer``).

    Raises ``relay.tokens.TokenError`` (401) unless it is one, signed with the
    shared secret and still valid.
    """
    from relay.tokens import bearer_token, decode_upload_token

    return decode_upload_token(bearer_token(authorization), settings.RELAY_TOKEN_SECRET)
