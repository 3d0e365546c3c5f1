"""Settings: ICE servers from the environment, the secret, log hygiene."""

from __future__ import annotations

import logging

import pytest

from relay.config import (
    ConfigError,
    NoSdpFilter,
    RelayConfig,
    config_from_env,
    parse_ice_servers,
    rtc_configuration,
)
from relay.tokens import DEV_SECRET


def test_ice_servers_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "RELAY_ICE_SERVERS",
        '[{"urls": "turn:turn.example:3478", "username": "u", "credential": "p"},'
        ' "stun:stun.example:3478"]',
    )
    monkeypatch.setenv("RELAY_TOKEN_SECRET", "x" * 40)
    config = config_from_env(node_id="relay-9")
    assert config.ice_servers == [
        {"urls": ["turn:turn.example:3478"], "username": "u", "credential": "p"},
        {"urls": ["stun:stun.example:3478"]},
    ]
    rtc = rtc_configuration(config.ice_servers)
    assert [s.urls for s in rtc.iceServers] == [
        ["turn:turn.example:3478"],
        ["stun:stun.example:3478"],
    ]


def test_no_ice_servers_means_none_at_all() -> None:
    assert parse_ice_servers(None) == [] and parse_ice_servers("  ") == []
    # never None: aiortc would fall back to a public STUN server
    assert rtc_configuration([]).iceServers == []


@pytest.mark.parametrize(
    "raw",
    [
        '{"urls": "turn:x"}',
        "[1]",
        '[{"urls": "http://x"}]',
        "not json",
        '[{"username": "secret-user", "credential": "secret-pass"}]',
    ],
)
def test_bad_ice_servers_are_refused_without_echoing_secrets(raw: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_ice_servers(raw)
    assert "secret" not in str(refused.value)


def test_a_secret_is_required_unless_dev() -> None:
    with pytest.raises(ConfigError, match="RELAY_TOKEN_SECRET"):
        RelayConfig(node_id="relay-1")
    assert RelayConfig(node_id="relay-1", dev=True).token_secret == DEV_SECRET
    assert RelayConfig(node_id="relay-1", dev=True, token_secret="s" * 40).token_secret == "s" * 40


def test_sdp_and_candidates_never_reach_the_log() -> None:
    keep = NoSdpFilter()

    def record(name: str, level: int, msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, msg, args, None)

    assert keep.filter(record("relay.node", logging.INFO, "publish %s room=%s", "abc", "r"))
    assert not keep.filter(record("relay.app", logging.INFO, "got %s", "v=0\r\no=- 1 1 IN IP4"))
    assert not keep.filter(record("x", logging.ERROR, "a=candidate:1 1 udp 1 127.0.0.1 5 typ host"))
    assert not keep.filter(record("aiortc.rtcpeerconnection", logging.DEBUG, "anything"))
    assert not keep.filter(record("aioice.ice", logging.INFO, "Connection(0) Check pair"))
    assert keep.filter(record("aiortc.rtcrtpreceiver", logging.WARNING, "decode failed"))
