"""Short-lived relay tokens: HS256 JWTs signed by the web tier.

The web tier signs, the relay node verifies. Claims (the contract):

- ``iss`` = ``"telehealth-web"``, ``aud`` = ``"telehealth-relay"``
- ``exp``: short (60-120 s); tokens that claim to live longer than
  :data:`MAX_LIFETIME` seconds from now are refused as well
- ``room``: the room id, e.g. ``"visit-42"``
- ``sub``: the participant id, e.g. ``"u-17"``
- ``cap``: a subset of ``["publish", "subscribe", "admin"]``
- ``node`` (optional): the relay node the room was placed on
- ``iat`` (optional, recommended): lets a node refuse tokens issued before a
  participant was removed

The other direction, node → web tier: when a node has finished a recording
file it uploads it with a *recording-upload* token it signs itself with the
same secret (:func:`issue_upload_token`, verified by the web tier with
:func:`decode_upload_token`). Its ``iss``/``aud`` are swapped
(``telehealth-relay`` → ``telehealth-web``) and it carries ``scope`` =
``"recording-upload"``, so neither kind of token passes for the other. It names
the room, the web tier's recording id, the file (id, owner, size, SHA-256,
content type, start and end) so the web tier can check the upload against it.

This module imports neither aiortc nor Starlette: the web tier may import
:func:`issue_token` and :func:`decode_upload_token` from it.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import jwt

try:
    from jwt.warnings import InsecureKeyLengthWarning
except ImportError:  # older PyJWT: no such warning
    InsecureKeyLengthWarning = UserWarning  # type: ignore[assignment,misc]

ISSUER = "telehealth-web"
AUDIENCE = "telehealth-relay"
ALGORITHM = "HS256"
# Public on purpose: what `relay --dev` and the embedded default use; production refuses it.
DEV_SECRET = "dev-relay-secret-change-me-not-for-production"  # noqa: S105  # nosec B105
CAPABILITIES = frozenset({"publish", "subscribe", "admin"})
#: Seconds of clock skew tolerated between the web tier and the node.
LEEWAY = 5
#: A token whose ``exp`` lies further ahead than this is not "short-lived".
MAX_LIFETIME = 600
MAX_ID_LENGTH = 128
#: Node → web tier tokens (recording uploads).
UPLOAD_ISSUER = "telehealth-relay"
UPLOAD_AUDIENCE = "telehealth-web"
UPLOAD_SCOPE = "recording-upload"
#: Long enough for one upload attempt of a large file; a new token is minted per attempt.
UPLOAD_TTL = 600


@contextlib.contextmanager
def _key_length_ok(secret: str) -> Iterator[None]:
    """PyJWT warns about HMAC keys under 32 bytes; the fixed dev secret is one
    (the node warns once at start-up about a short production secret instead)."""
    with warnings.catch_warnings():
        if secret == DEV_SECRET:
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        yield


class TokenError(Exception):
    """A refused token: ``status`` is 401 (not authenticated) or 403 (not allowed)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Claims:
    room: str
    sub: str
    caps: frozenset[str]
    exp: float
    iat: float | None = None
    node: str | None = None

    def can(self, cap: str) -> bool:
        return cap in self.caps


def issue_token(
    secret: str,
    *,
    room: str,
    sub: str,
    caps: Iterable[str],
    ttl: int = 90,
    node: str | None = None,
    now: float | None = None,
) -> str:
    """Sign a relay token (what the web tier does; also used by tests and the bench)."""
    caps = list(caps)
    unknown = set(caps) - CAPABILITIES
    if unknown:
        raise ValueError(f"unknown capabilities: {sorted(unknown)}")
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": issued,
        "exp": issued + int(ttl),
        "room": room,
        "sub": sub,
        "cap": caps,
    }
    if node is not None:
        claims["node"] = node
    with _key_length_ok(secret):
        return jwt.encode(claims, secret, algorithm=ALGORITHM)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or a 401."""
    if not authorization:
        raise TokenError(401, "missing_token", "Authorization: Bearer <token> is required")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise TokenError(401, "missing_token", "Authorization: Bearer <token> is required")
    return token


def _valid_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH


def decode_token(token: str, secret: str, *, now: float | None = None) -> Claims:
    """Verify signature, algorithm, ``exp``, ``iss``, ``aud`` and the claim types."""
    try:
        with _key_length_ok(secret):
            payload = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=LEEWAY,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
    except jwt.ExpiredSignatureError:
        raise TokenError(401, "token_expired", "the token has expired") from None
    except (jwt.InvalidAudienceError, jwt.InvalidIssuerError):
        raise TokenError(401, "invalid_token", "the token is not meant for relay nodes") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(401, "invalid_token", f"the token lacks the {exc.claim!r} claim") from None
    except jwt.InvalidSignatureError:
        raise TokenError(401, "invalid_token", "the token signature does not verify") from None
    except jwt.PyJWTError:
        raise TokenError(401, "invalid_token", "the token is malformed") from None

    current = time.time() if now is None else now
    exp = float(payload["exp"])
    if exp - current > MAX_LIFETIME:
        raise TokenError(401, "invalid_token", "the token lives too long for a relay token")
    room, sub, caps = payload.get("room"), payload.get("sub"), payload.get("cap")
    if not _valid_id(room):
        raise TokenError(401, "invalid_token", "the token lacks a valid 'room' claim")
    if not _valid_id(sub):
        raise TokenError(401, "invalid_token", "the token lacks a valid 'sub' claim")
    if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
        raise TokenError(401, "invalid_token", "the token lacks a valid 'cap' claim")
    node = payload.get("node")
    if node is not None and not _valid_id(node):
        raise TokenError(401, "invalid_token", "the token has an invalid 'node' claim")
    iat = payload.get("iat")
    return Claims(
        room=room,
        sub=sub,
        caps=frozenset(caps) & CAPABILITIES,
        exp=exp,
        iat=float(iat) if isinstance(iat, int | float) else None,
        node=node,
    )


def authorize(
    claims: Claims,
    *,
    room: str,
    cap: str | None = None,
    node_id: str | None = None,
) -> None:
    """403 unless the token names this room (and node, if it names one) and holds ``cap``."""
    if claims.room != room:
        raise TokenError(403, "wrong_room", "the token is for another room")
    if node_id is not None and claims.node is not None and claims.node != node_id:
        raise TokenError(403, "wrong_node", "the room was placed on another relay node")
    if cap is not None and not claims.can(cap):
        raise TokenError(403, "missing_capability", f"the token does not allow {cap!r}")


# --------------------------------------------------------------------------- recording uploads


@dataclass(frozen=True)
class UploadClaims:
    """What a recording-upload token says about the file it comes with."""

    room: str
    recording: str
    file: str
    participant: str
    size: int
    sha256: str
    content_type: str
    started_at: float
    ended_at: float
    reason: str
    node: str | None
    exp: float


def issue_upload_token(
    secret: str,
    *,
    room: str,
    recording: str,
    file: str,
    participant: str,
    size: int,
    sha256: str,
    content_type: str,
    started_at: float,
    ended_at: float,
    reason: str = "stopped",
    node: str | None = None,
    ttl: int = UPLOAD_TTL,
    now: float | None = None,
) -> str:
    """Sign the token a relay node sends with one finished recording file."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "iss": UPLOAD_ISSUER,
        "aud": UPLOAD_AUDIENCE,
        "scope": UPLOAD_SCOPE,
        "iat": issued,
        "exp": issued + int(ttl),
        "room": room,
        "recording": recording,
        "file": file,
        "sub": participant,
        "size": int(size),
        "sha256": sha256,
        "content_type": content_type,
        "started_at": float(started_at),
        "ended_at": float(ended_at),
        "reason": reason,
    }
    if node is not None:
        claims["node"] = node
    with _key_length_ok(secret):
        return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_upload_token(token: str, secret: str, *, now: float | None = None) -> UploadClaims:
    """Verify a recording-upload token (signature, ``iss``/``aud``/``scope``, lifetime,
    claim types); raises :class:`TokenError` (401) otherwise."""
    try:
        with _key_length_ok(secret):
            payload = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                audience=UPLOAD_AUDIENCE,
                issuer=UPLOAD_ISSUER,
                leeway=LEEWAY,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
    except jwt.ExpiredSignatureError:
        raise TokenError(401, "token_expired", "the token has expired") from None
    except (jwt.InvalidAudienceError, jwt.InvalidIssuerError):
        raise TokenError(401, "invalid_token", "not a recording upload token") from None
    except jwt.PyJWTError:
        raise TokenError(401, "invalid_token", "the token does not verify") from None
    current = time.time() if now is None else now
    exp = float(payload["exp"])
    if exp - current > MAX_LIFETIME + LEEWAY:
        raise TokenError(401, "invalid_token", "the token lives too long")
    if payload.get("scope") != UPLOAD_SCOPE:
        raise TokenError(401, "invalid_token", "the token is not for recording uploads")
    ids = {key: payload.get(key) for key in ("room", "recording", "file", "sub")}
    if not all(_valid_id(value) for value in ids.values()):
        raise TokenError(401, "invalid_token", "the token lacks a valid room, recording or file")
    size, sha256 = payload.get("size"), payload.get("sha256")
    content_type, reason = payload.get("content_type"), payload.get("reason", "stopped")
    started, ended = payload.get("started_at"), payload.get("ended_at")
    if (
        not isinstance(size, int)
        or size < 0
        or not isinstance(sha256, str)
        or len(sha256) != 64
        or not isinstance(content_type, str)
        or not isinstance(reason, str)
        or not isinstance(started, int | float)
        or not isinstance(ended, int | float)
    ):
        raise TokenError(401, "invalid_token", "the token does not describe a file")
    node = payload.get("node")
    return UploadClaims(
        room=ids["room"],
        recording=ids["recording"],
        file=ids["file"],
        participant=ids["sub"],
        size=size,
        sha256=sha256.lower(),
        content_type=content_type[:100],
        started_at=float(started),
        ended_at=float(ended),
        reason=reason[:40],
        node=node if _valid_id(node) else None,
        exp=exp,
    )
