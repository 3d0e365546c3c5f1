"""The HTTP API without media: authentication, authorization, bad input."""

from __future__ import annotations

import time

import pytest

from relay import testing
from relay.tokens import issue_token

ROOM = "visit-42"
SDP = {"Content-Type": "application/sdp"}


async def _valid_offer() -> str:
    pc = testing.client_pc()
    pc.addTransceiver("video", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    await pc.close()
    return offer


async def test_health_reports_node_and_load(relay) -> None:
    response = await relay.http.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["node"] == "relay-test"
    assert (body["rooms"], body["streams"]) == (0, 0)
    assert 0.0 <= body["cpu"]


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "missing_token"),
        ({"Authorization": "Bearer nonsense"}, 401, "invalid_token"),
        (
            {
                "Authorization": "Bearer "
                + issue_token(
                    "some-other-secret-of-32-bytes-or-more", room=ROOM, sub="u-1", caps=["publish"]
                )
            },
            401,
            "invalid_token",
        ),
    ],
    ids=["none", "garbage", "bad-signature"],
)
async def test_requests_without_a_good_token_get_401(relay, headers, status, code) -> None:
    response = await relay.http.post(
        f"/rooms/{ROOM}/publish", content="v=0\r\n", headers={**SDP, **headers}
    )
    assert response.status_code == status
    assert response.json()["code"] == code
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_expired_token_gets_401(relay) -> None:
    headers = relay.auth(ROOM, "u-1", ["publish"], now=time.time() - 300, ttl=60)
    response = await relay.http.post(
        f"/rooms/{ROOM}/publish", content=await _valid_offer(), headers={**SDP, **headers}
    )
    assert (response.status_code, response.json()["code"]) == (401, "token_expired")


@pytest.mark.parametrize(
    ("room", "caps", "kwargs", "code"),
    [
        ("visit-43", ["publish"], {}, "wrong_room"),
        (ROOM, ["subscribe"], {}, "missing_capability"),
        (ROOM, ["publish"], {"node": "relay-elsewhere"}, "wrong_node"),
    ],
    ids=["wrong-room", "missing-cap", "wrong-node"],
)
async def test_tokens_not_good_for_the_request_get_403(relay, room, caps, kwargs, code) -> None:
    headers = relay.auth(room, "u-1", caps, **kwargs)
    response = await relay.http.post(
        f"/rooms/{ROOM}/publish", content=await _valid_offer(), headers={**SDP, **headers}
    )
    assert (response.status_code, response.json()["code"]) == (403, code)


async def test_subscribe_and_admin_routes_check_their_capability(relay) -> None:
    publish_only = relay.auth(ROOM, "u-1", ["publish"])
    response = await relay.http.post(
        f"/rooms/{ROOM}/subscribe/u-2", content="v=0", headers={**SDP, **publish_only}
    )
    assert (response.status_code, response.json()["code"]) == (403, "missing_capability")
    for path in (f"/rooms/{ROOM}/participants/u-2", f"/rooms/{ROOM}"):
        response = await relay.http.delete(path, headers=publish_only)
        assert (response.status_code, response.json()["code"]) == (403, "missing_capability")


@pytest.mark.parametrize(
    "body",
    [
        "",
        "hello",
        "v=0\r\n",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video nonsense\r\n",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        "c=IN IP4 0.0.0.0\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n",
        "\x00\x01\x02",
    ],
    ids=["empty", "text", "bare", "broken-mline", "no-ice-dtls", "binary"],
)
async def test_malformed_sdp_gets_400(relay, body) -> None:
    headers = relay.auth(ROOM, "u-1", ["publish"])
    response = await relay.http.post(
        f"/rooms/{ROOM}/publish", content=body, headers={**SDP, **headers}
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "bad_sdp"
    assert body.strip() == "" or body[:20] not in response.text  # SDP is never echoed
    assert not relay.node.sessions and not relay.node.rooms


async def test_offer_with_nothing_to_publish_gets_400(relay) -> None:
    pc = testing.client_pc()
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    headers = relay.auth(ROOM, "u-1", ["publish"])
    response = await relay.http.post(
        f"/rooms/{ROOM}/publish", content=pc.localDescription.sdp, headers={**SDP, **headers}
    )
    await pc.close()
    assert (response.status_code, response.json()["code"]) == (400, "bad_sdp")


async def test_content_type_and_size_are_checked(relay) -> None:
    headers = relay.auth(ROOM, "u-1", ["publish"])
    response = await relay.http.post(
        f"/rooms/{ROOM}/publish",
        content="v=0",
        headers={"Content-Type": "application/json", **headers},
    )
    assert (response.status_code, response.json()["code"]) == (415, "unsupported_media_type")
    response = await relay.http.post(
        f"/rooms/{ROOM}/publish", content="v=0" + "x" * 70_000, headers={**SDP, **headers}
    )
    assert (response.status_code, response.json()["code"]) == (413, "sdp_too_large")


async def test_unknown_publisher_session_and_route(relay) -> None:
    headers = relay.auth(ROOM, "u-1", ["subscribe"])
    pc = testing.client_pc()
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    response = await relay.http.post(
        f"/rooms/{ROOM}/subscribe/u-2", content=pc.localDescription.sdp, headers={**SDP, **headers}
    )
    await pc.close()
    assert (response.status_code, response.json()["code"]) == (404, "publisher_not_found")
    response = await relay.http.delete(f"/rooms/{ROOM}/sessions/nope", headers=headers)
    assert (response.status_code, response.json()["code"]) == (404, "session_not_found")
    response = await relay.http.get("/nowhere")
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    response = await relay.http.post(f"/rooms/{ROOM}/publish/../..", headers=headers)
    assert response.status_code in (400, 404, 405)


async def test_invalid_room_ids_get_400(relay) -> None:
    headers = relay.auth("a b", "u-1", ["publish"])
    response = await relay.http.post(
        "/rooms/a%20b/publish", content="v=0", headers={**SDP, **headers}
    )
    assert (response.status_code, response.json()["code"]) == (400, "bad_id")


async def test_only_the_owner_or_an_admin_may_end_a_session(relay) -> None:
    video = testing.MarkerVideoTrack()
    pc, location = await testing.publish(
        relay.http, ROOM, relay.token(ROOM, "u-1", ["publish"]), video=video
    )
    relay.track(pc)
    response = await relay.http.delete(location, headers=relay.auth(ROOM, "u-2", ["subscribe"]))
    assert (response.status_code, response.json()["code"]) == (403, "not_owner")
    response = await relay.http.delete(location, headers=relay.auth("visit-43", "u-1", ["publish"]))
    assert response.status_code == 403
    response = await relay.http.delete(location, headers=relay.auth(ROOM, "u-1", ["publish"]))
    assert response.status_code == 204
    assert not relay.node.sessions
    response = await relay.http.delete(location, headers=relay.auth(ROOM, "u-1", ["publish"]))
    assert response.status_code == 404
