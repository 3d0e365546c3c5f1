"""The web tier's side of the media contract: join tokens, ICE servers, room placement.

Relay nodes (``relay/``, no Django) verify the tokens minted here: HS256 JWTs
naming the room, the participant and what they may do, valid for a minute or
two. Nothing here logs SDP or ICE data; it never sees them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
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


def relay_remove_participant(*, room: str, participant: str) -> bool:
    """Cut a participant's media on the room's node now. Best effort: a removed
    participant is also refused new join tokens, so a failure here cannot let
    them back in."""
    try:
        node = relay_for_room(room)
    except Exception:
        logger.warning("no relay to remove %s from %s", participant, room)
        return False
    token = join_token(room=room, participant="web", caps=["admin"], node=node["id"])
    request = urllib.request.Request(  # noqa: S310 (the URL comes from our own registry)
        f"{node['url'].rstrip('/')}/rooms/{room}/participants/{participant}",
        method="DELETE",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=3) as response:  # noqa: S310
            return response.status in (200, 204)
    except Exception:
        logger.warning("relay refused or missed removal of %s from %s", participant, room)
        return False
