"""Live board events over the one socket: coordinators watch their board topic."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from scheduler import events
from tests.consult.conftest import open_socket
from tests.scheduler.conftest import (
    build_network,
    facility_coordinator,
    province_coordinator,
    submitted_referral,
)

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_province_coordinator_hears_of_each_referral_routed_in_the_province():
    network = await database_sync_to_async(build_network)()
    coordinator = await database_sync_to_async(province_coordinator)()
    socket, connected, _ = await open_socket(coordinator)
    assert connected
    await socket.send({"type": "watch", "topic": "board.province.01", "ref": "w"})
    await socket.receive_until("watching")

    referral = await database_sync_to_async(submitted_referral)(network)
    await database_sync_to_async(events.flush)()
    frame, _ = await socket.receive_until("event", timeout=5)

    assert frame["topic"] == "board.province.01"
    assert frame["name"] == "referral.routed"
    assert frame["data"] == {"referrals": [referral.pk]}
    await socket.close()


async def test_only_the_scope_may_watch_a_board():
    network = await database_sync_to_async(build_network)()
    elsewhere = await database_sync_to_async(province_coordinator)("79")
    own = await database_sync_to_async(facility_coordinator)(network.district_near)
    socket, _, _ = await open_socket(elsewhere)
    mine, _, _ = await open_socket(own)

    await socket.send({"type": "watch", "topic": "board.province.01", "ref": "a"})
    refused, _ = await socket.receive_until("error")
    await mine.send({"type": "watch", "topic": "board.facility.TTYT-GAN", "ref": "b"})
    allowed, _ = await mine.receive_until("watching")
    await mine.send({"type": "watch", "topic": "board.province.01", "ref": "c"})
    not_province, _ = await mine.receive_until("error")

    assert refused["code"] == "forbidden"
    assert allowed["topic"] == "board.facility.TTYT-GAN"
    assert not_province["code"] == "forbidden"
    await socket.close()
    await mine.close()


async def test_a_facility_coordinator_hears_of_referrals_to_their_facility():
    network = await database_sync_to_async(build_network)()
    coordinator = await database_sync_to_async(facility_coordinator)(network.district_near)
    socket, _, _ = await open_socket(coordinator)
    await socket.send({"type": "watch", "topic": "board.facility.TTYT-GAN", "ref": "w"})
    await socket.receive_until("watching")

    referral = await database_sync_to_async(submitted_referral)(network)
    await database_sync_to_async(events.flush)()
    frame, _ = await socket.receive_until("event", timeout=5)

    assert (frame["topic"], frame["name"]) == ("board.facility.TTYT-GAN", "referral.routed")
    assert frame["data"]["referrals"] == [referral.pk]
    await socket.close()
