"""HTTP API of a relay node (Starlette), in the spirit of WHIP/WHEP.

- ``POST /rooms/{room}/publish`` (cap ``publish``): SDP offer in, 201 + SDP
  answer + ``Location: /rooms/{room}/sessions/{id}``. The publisher is the
  token's ``sub``.
- ``POST /rooms/{room}/subscribe/{publisher_id}`` (cap ``subscribe``): recvonly
  offer in, 201 + answer + Location; the publisher's current tracks are
  forwarded (a keyframe is requested when the subscriber's media starts).
- ``DELETE /rooms/{room}/sessions/{session_id}``: the owner (or an admin) leaves, 204.
- ``DELETE /rooms/{room}/participants/{participant_id}`` (cap ``admin``): cuts
  all of that participant's media at once, 204.
- ``DELETE /rooms/{room}`` (cap ``admin``): closes the room, 204.
- ``POST /rooms/{room}/recording`` (cap ``admin``), JSON ``{"recording", "upload_url"}``:
  records the room from now on, 201 (200 if that recording already runs);
  ``DELETE /rooms/{room}/recording[?recording=<id>]`` (cap ``admin``): finishes
  the files, 200 with their ids; they are uploaded to ``upload_url`` afterwards.
- ``POST /rooms/{room}/subscriptions/{publisher_id}/video`` (cap ``subscribe``,
  the subscriber's own token), JSON ``{"paused": bool}``: audio-only mode for
  that subscription; no video is sent while paused.
- ``GET /rooms/{room}/events`` (any cap for the room): server-sent events
  ``hello``, ``publisher-joined``, ``publisher-left``, ``participant-removed``,
  ``removed``, ``room-closed``, ``rejoin`` (the node is going away).
- ``GET /health``: ``{"node", "rooms", "streams", "cpu"}``; ``GET /stats``:
  aggregate counters.

Errors are JSON ``{"code", "detail"}``: 400 bad input (malformed SDP), 401 no
or bad token, 403 token not good for this, 404, 413, 415, 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .config import RelayConfig
from .node import RelayError, RelayNode
from .recording import valid_upload_url
from .tokens import Claims, TokenError, authorize, bearer_token, decode_token

logger = logging.getLogger(__name__)

ID_PATTERN = re.compile(r"^(?!\.+$)[A-Za-z0-9._:@-]{1,128}$")
SDP_TYPES = ("application/sdp",)
EVENTS_KEEPALIVE = 15.0
MAX_JSON_BYTES = 8 * 1024


def error(status: int, code: str, detail: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="relay"'} if status == 401 else None
    return JSONResponse({"code": code, "detail": detail}, status_code=status, headers=headers)


def _node(request: Request) -> RelayNode:
    return request.app.state.node


def _path_id(request: Request, name: str) -> str:
    value = request.path_params[name]
    if not ID_PATTERN.match(value):
        raise RelayError(400, "bad_id", f"invalid {name}")
    return value


def _claims(request: Request, room: str, cap: str | None = None) -> Claims:
    node = _node(request)
    token = bearer_token(request.headers.get("authorization"))
    claims = decode_token(token, node.config.token_secret)
    authorize(claims, room=room, cap=cap, node_id=node.config.node_id)
    node.check_not_removed(room, claims.sub, claims.iat)
    return claims


async def _offer(request: Request) -> str:
    node = _node(request)
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type not in SDP_TYPES:
        raise RelayError(415, "unsupported_media_type", "send the SDP offer as application/sdp")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > node.config.max_sdp_bytes:
        raise RelayError(413, "sdp_too_large", "the SDP offer is too large")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > node.config.max_sdp_bytes:
            raise RelayError(413, "sdp_too_large", "the SDP offer is too large")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise RelayError(400, "bad_sdp", "the SDP offer is not UTF-8 text") from None


async def _json_body(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        raise RelayError(415, "unsupported_media_type", "send a JSON body (application/json)")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BYTES:
            raise RelayError(413, "body_too_large", "the request body is too large")
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise RelayError(400, "bad_request", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise RelayError(400, "bad_request", "the body must be a JSON object")
    return data


def _answer(session: Any, answer: str) -> Response:
    return Response(
        answer,
        status_code=201,
        media_type="application/sdp",
        headers={"Location": session.location},
    )


async def publish(request: Request) -> Response:
    room = _path_id(request, "room")
    claims = _claims(request, room, "publish")
    offer = await _offer(request)
    session, answer = await _node(request).publish(room, claims.sub, offer)
    return _answer(session, answer)


async def subscribe(request: Request) -> Response:
    room = _path_id(request, "room")
    publisher_id = _path_id(request, "publisher_id")
    claims = _claims(request, room, "subscribe")
    offer = await _offer(request)
    session, answer = await _node(request).subscribe(room, claims.sub, publisher_id, offer)
    return _answer(session, answer)


async def delete_session(request: Request) -> Response:
    room = _path_id(request, "room")
    session_id = _path_id(request, "session_id")
    claims = _claims(request, room)
    node = _node(request)
    session = node.session(room, session_id)
    if session.participant != claims.sub and not claims.can("admin"):
        raise RelayError(403, "not_owner", "only its owner or an admin may end this session")
    await node.close_session(session.id, reason="deleted")
    return Response(status_code=204)


async def remove_participant(request: Request) -> Response:
    room = _path_id(request, "room")
    participant = _path_id(request, "participant_id")
    _claims(request, room, "admin")
    await _node(request).remove_participant(room, participant)
    return Response(status_code=204)


async def close_room(request: Request) -> Response:
    room = _path_id(request, "room")
    _claims(request, room, "admin")
    await _node(request).close_room(room)
    return Response(status_code=204)


async def start_recording(request: Request) -> Response:
    room = _path_id(request, "room")
    _claims(request, room, "admin")
    body = await _json_body(request)
    recording_id, upload_url = body.get("recording"), body.get("upload_url")
    if not isinstance(recording_id, str) or not ID_PATTERN.match(recording_id):
        raise RelayError(400, "bad_request", "a valid 'recording' id is required")
    if not valid_upload_url(upload_url):
        raise RelayError(400, "bad_request", "'upload_url' must be an http(s) URL")
    publishers, new = await _node(request).start_recording(room, recording_id, upload_url)
    return JSONResponse(
        {"recording": recording_id, "publishers": publishers}, status_code=201 if new else 200
    )


async def stop_recording(request: Request) -> Response:
    room = _path_id(request, "room")
    _claims(request, room, "admin")
    recording_id = request.query_params.get("recording")
    if recording_id is not None and not ID_PATTERN.match(recording_id):
        raise RelayError(400, "bad_id", "invalid recording")
    files = await _node(request).stop_recording(room, recording_id)
    return JSONResponse({"files": [{"id": f.id, "participant": f.participant} for f in files]})


async def video_subscription(request: Request) -> Response:
    room = _path_id(request, "room")
    publisher_id = _path_id(request, "publisher_id")
    claims = _claims(request, room, "subscribe")
    body = await _json_body(request)
    paused = body.get("paused")
    if not isinstance(paused, bool):
        raise RelayError(400, "bad_request", "'paused' must be true or false")
    tracks = _node(request).set_video_paused(room, claims.sub, publisher_id, paused)
    return JSONResponse({"paused": paused, "tracks": tracks})


async def events(request: Request) -> Response:
    room = _path_id(request, "room")
    claims = _claims(request, room)
    node = _node(request)
    listener = node.listen(room, claims.sub)

    async def stream() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(listener.queue.get(), EVENTS_KEEPALIVE)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if event is None:
                    break
                yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
        finally:
            node.unlisten(listener)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def health(request: Request) -> Response:
    return JSONResponse(_node(request).health())


async def stats(request: Request) -> Response:
    return JSONResponse(_node(request).stats())


async def _relay_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RelayError | TokenError)
    return error(exc.status, exc.code, exc.detail)


async def _internal_error(request: Request, exc: Exception) -> Response:
    # The exception's text may quote the request (SDP): log its type only.
    logger.error(
        "internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__
    )
    return error(500, "internal_error", "the relay node failed to handle this request")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    return error(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))


def create_app(config: RelayConfig, *, node: RelayNode | None = None) -> Starlette:
    """The ASGI app. Its lifespan starts the registry heartbeat (with ``redis_url``)
    and, on the way out, tells clients to rejoin, closes every peer connection
    and unregisters the node."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        heartbeat = None
        redis_client = None
        if config.redis_url:
            import redis.asyncio as redis_asyncio

            from .registry import Heartbeat

            redis_client = redis_asyncio.Redis.from_url(config.redis_url)
            heartbeat = Heartbeat(
                redis_client, config.node_id, config.public_url, app.state.node.load
            )
            heartbeat.start()
        app.state.heartbeat = heartbeat
        try:
            yield
        finally:
            app.state.node.begin_shutdown()
            if heartbeat is not None:
                await heartbeat.stop(unregister_node=True)
            await app.state.node.shutdown()
            if redis_client is not None:
                await redis_client.aclose()

    middleware = []
    if config.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=config.cors_origins,
                allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type"],
                expose_headers=["Location"],
            )
        )
    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/stats", stats, methods=["GET"]),
            Route("/rooms/{room}/publish", publish, methods=["POST"]),
            Route("/rooms/{room}/subscribe/{publisher_id}", subscribe, methods=["POST"]),
            Route("/rooms/{room}/sessions/{session_id}", delete_session, methods=["DELETE"]),
            Route(
                "/rooms/{room}/participants/{participant_id}",
                remove_participant,
                methods=["DELETE"],
            ),
            Route("/rooms/{room}/events", events, methods=["GET"]),
            Route("/rooms/{room}/recording", start_recording, methods=["POST"]),
            Route("/rooms/{room}/recording", stop_recording, methods=["DELETE"]),
            Route(
                "/rooms/{room}/subscriptions/{publisher_id}/video",
                video_subscription,
                methods=["POST"],
            ),
            Route("/rooms/{room}", close_room, methods=["DELETE"]),
        ],
        middleware=middleware,
        exception_handlers={
            RelayError: _relay_error,
            TokenError: _relay_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
        lifespan=lifespan,
    )
    app.state.node = node or RelayNode(config)
    app.state.config = config
    return app
