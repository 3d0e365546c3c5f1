"""Relay node settings: environment, command line, ICE, logging hygiene.

Environment:

- ``RELAY_TOKEN_SECRET``: HS256 secret shared with the web tier (required
  unless ``--dev``, which uses :data:`relay.tokens.DEV_SECRET`)
- ``RELAY_ICE_SERVERS``: JSON list of ICE servers, each
  ``{"urls": "turn:host:3478" | [...], "username": ..., "credential": ...}``
  or a plain URL string; default none (host candidates only)
- ``RELAY_ICE_HOSTS``: comma-separated local addresses to gather host
  candidates on (default: every interface but loopback, aioice's choice);
  ``127.0.0.1`` keeps all media on loopback (tests, benchmark)
- ``RELAY_CORS_ORIGINS``: comma-separated origins allowed to call the API
  from a browser
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from .tokens import DEV_SECRET


class ConfigError(ValueError):
    """A setting is missing or malformed (the message never repeats secrets)."""


@dataclass
class RelayConfig:
    node_id: str = "relay-dev"
    public_url: str = "http://127.0.0.1:8081"
    token_secret: str = ""
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    ice_hosts: list[str] = field(default_factory=list)
    redis_url: str | None = None
    dev: bool = False
    cors_origins: list[str] = field(default_factory=list)
    #: Seconds a new session may take to connect before it is dropped.
    connect_timeout: float = 20.0
    max_sessions: int = 2000
    max_sdp_bytes: int = 64 * 1024
    #: At most one keyframe request per published video track per this many seconds.
    pli_interval: float = 1.0
    video_queue_frames: int = 30
    audio_queue_frames: int = 50
    #: Release frames from the receive jitter buffer as soon as they are complete.
    low_latency: bool = True
    #: Forward the publisher's RTP packets (rewritten per subscriber); off: forward
    #: its frames, re-packetized by each subscriber's sender (benchmark comparison).
    forward_rtp: bool = True
    #: Media packets from the socket straight to aiortc's handlers, and forwarded
    #: packets straight to the socket (``relay/fastpath.py``); off: aiortc's own
    #: queue, receive task and send coroutines (benchmark comparison).
    inline_media: bool = True
    #: Benchmark baseline: aiortc's stock path (decode once, MediaRelay, encode
    #: per subscriber) for every subscriber, even when codecs match.
    transcode_all: bool = False
    #: Give re-encoding subscribers buffered MediaRelay proxies (aiortc's
    #: default; unbounded) instead of latest-frame ones.
    transcode_buffered: bool = False

    def __post_init__(self) -> None:
        if not self.token_secret:
            if not self.dev:
                raise ConfigError("RELAY_TOKEN_SECRET is required (or run with --dev)")
            self.token_secret = DEV_SECRET
        elif len(self.token_secret.encode()) < 32:
            logging.getLogger(__name__).warning(
                "RELAY_TOKEN_SECRET is shorter than 32 bytes; use a longer random secret"
            )
        if not self.node_id:
            raise ConfigError("a node id is required")


def parse_ice_servers(raw: str | None) -> list[dict[str, Any]]:
    """``RELAY_ICE_SERVERS`` → list of ``{"urls", "username"?, "credential"?}``."""
    if not raw or not raw.strip():
        return []
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise ConfigError("RELAY_ICE_SERVERS is not valid JSON") from None
    if not isinstance(data, list):
        raise ConfigError("RELAY_ICE_SERVERS must be a JSON list")
    servers = []
    for index, item in enumerate(data):
        if isinstance(item, str):
            item = {"urls": item}
        if not isinstance(item, dict):
            raise ConfigError(f"RELAY_ICE_SERVERS[{index}] must be an object or a URL")
        urls = item.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if not urls or not all(
            isinstance(u, str) and u.split(":", 1)[0] in ("stun", "stuns", "turn", "turns")
            for u in urls
        ):
            raise ConfigError(f"RELAY_ICE_SERVERS[{index}] needs stun:/turn: urls")
        server: dict[str, Any] = {"urls": urls}
        for key in ("username", "credential"):
            if item.get(key) is not None:
                server[key] = str(item[key])
        servers.append(server)
    return servers


def split_list(raw: str | None) -> list[str]:
    return [part.strip() for part in (raw or "").split(",") if part.strip()]


def rtc_configuration(servers: list[dict[str, Any]]) -> Any:
    """An ``RTCConfiguration`` with exactly these ICE servers.

    Never ``iceServers=None``: aiortc would then use a public STUN server.
    """
    from aiortc import RTCConfiguration, RTCIceServer

    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in servers
        ]
    )


def restrict_ice_hosts(addresses: list[str]) -> None:
    """Gather host candidates only on ``addresses`` (process-wide).

    aioice looks the local addresses up through the module function
    ``aioice.ice.get_host_addresses`` (and leaves 127.0.0.1 out); replacing
    it pins the candidates, e.g. to loopback for tests and benchmarks or to
    the one public interface of a media server.
    """
    if not addresses:
        return
    import aioice.ice

    pinned = list(addresses)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in pinned if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses


# --------------------------------------------------------------------------- logging


_MEDIA_LOGGERS = ("aiortc", "aioice")
_SECRET_MARKERS = ("v=0\r\n", "\r\na=", "\na=candidate", "a=ice-pwd", "a=fingerprint", "candidate:")


class NoSdpFilter(logging.Filter):
    """Drops log records that carry SDP or ICE data, and media-stack debug chatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".", 1)[0] in _MEDIA_LOGGERS and record.levelno < logging.WARNING:
            return False
        try:
            message = record.getMessage()
        except Exception:
            return False
        return not any(marker in message for marker in _SECRET_MARKERS)


def quiet_media_loggers() -> None:
    """aiortc logs whole SDP bodies and aioice candidates at DEBUG/INFO: keep them off."""
    for name in _MEDIA_LOGGERS:
        media_logger = logging.getLogger(name)
        if media_logger.level == logging.NOTSET or media_logger.level < logging.WARNING:
            media_logger.setLevel(logging.WARNING)


def config_from_env(**overrides: Any) -> RelayConfig:
    env = os.environ
    values: dict[str, Any] = {
        "token_secret": env.get("RELAY_TOKEN_SECRET", ""),
        "ice_servers": parse_ice_servers(env.get("RELAY_ICE_SERVERS")),
        "ice_hosts": split_list(env.get("RELAY_ICE_HOSTS")),
        "cors_origins": split_list(env.get("RELAY_CORS_ORIGINS")),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return RelayConfig(**values)
