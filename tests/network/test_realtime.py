"""Live over the messaging engine's socket: mentorship requests, acceptances and ends as
`event` frames; presence of my mentors and mentees; a run's progress for coordinators."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from network import services
from network.models import AssignmentRun
from telehealth.models import ClinicianProfile, FacilityLevel
from tests.consult.conftest import open_socket
from tests.factories import CoordinatorFactory, province
from tests.network.conftest import clinician, link

pytestmark = pytest.mark.django_db(transaction=True)


async def _event(socket, name: str) -> dict:
    while True:
        frame, _ = await socket.receive_until("event")
        if frame["name"] == name:
            return frame


async def test_requests_acceptances_and_ends_arrive_live():
    mentor = await database_sync_to_async(clinician)(FacilityLevel.CENTRAL)
    mentee = await database_sync_to_async(clinician)(FacilityLevel.DISTRICT)
    mentor_socket, connected, _ = await open_socket(mentor.user)
    mentee_socket, _, _ = await open_socket(mentee.user)
    assert connected

    # when the mentee asks
    mentorship = await database_sync_to_async(services.check_mentorship_request)(
        user=mentee.user, mentor_user_id=mentor.user_id
    )
    requested = await _event(mentor_socket, "mentorship.requested")
    # when the mentor accepts
    await database_sync_to_async(services.check_mentorship_answer)(
        user=mentor.user, mentorship_id=mentorship.pk, accept=True
    )
    accepted = await _event(mentee_socket, "mentorship.accepted")
    # when the mentee ends it
    await database_sync_to_async(services.check_mentorship_end)(
        user=mentee.user, mentorship_id=mentorship.pk, reason="completed"
    )
    ended = await _event(mentor_socket, "mentorship.ended")

    assert requested["topic"] == "user"
    assert requested["data"]["mentorship"] == mentorship.pk
    assert requested["data"]["mentee"]["id"] == mentee.user_id
    assert accepted["data"]["thread"] is not None
    assert ended["data"]["end_reason"] == "completed"
    for socket in (mentor_socket, mentee_socket):
        await socket.close()


async def test_i_see_my_mentors_presence_through_our_thread():
    mentor = await database_sync_to_async(clinician)(FacilityLevel.CENTRAL)
    mentee = await database_sync_to_async(clinician)(
        FacilityLevel.COMMUNE, kind=ClinicianProfile.Kind.HEALTH_WORKER
    )
    mentorship = await database_sync_to_async(link)(mentor, mentee)
    mentor_socket, _, _ = await open_socket(mentor.user)

    # when the mentee's page subscribes to the mentorship thread (only new messages)
    mentee_socket, _, _ = await open_socket(mentee.user)
    await mentee_socket.send({"type": "subscribe", "thread": mentorship.thread_id, "after": None})
    subscribed, _ = await mentee_socket.receive_until("subscribed")

    # then the mentor shows online, and going offline arrives live
    presence = {p["id"]: p["presence"] for p in subscribed["participants"]}
    assert presence[mentor.user_id] == "online"
    await mentor_socket.close()
    frame, _ = await mentee_socket.receive_until("presence")
    assert frame == {"type": "presence", "user": mentor.user_id, "status": "offline"}
    await mentee_socket.close()


async def test_coordinators_watch_a_runs_progress_and_doctors_may_not():
    coordinator = await database_sync_to_async(
        lambda: CoordinatorFactory(province=province("01")).user
    )()
    doctor = await database_sync_to_async(clinician)(FacilityLevel.DISTRICT)
    run = await database_sync_to_async(AssignmentRun.objects.create)(
        province=await database_sync_to_async(province)("01"),
        max_distance_km=800,
        created_by=coordinator,
    )
    watcher, _, _ = await open_socket(coordinator)
    outsider, _, _ = await open_socket(doctor.user)

    await watcher.send({"type": "watch", "topic": f"network.run.{run.pk}", "ref": "w"})
    watching, _ = await watcher.receive_until("watching")
    await outsider.send({"type": "watch", "topic": f"network.run.{run.pk}", "ref": "x"})
    refused, _ = await outsider.receive_until("error")
    await database_sync_to_async(services.do_assignment_run_execute)(run_id=run.pk)
    progress = await _event(watcher, "assignment.progress")

    assert watching["topic"] == f"network.run.{run.pk}"
    assert refused["code"] == "forbidden"
    assert progress["topic"] == f"network.run.{run.pk}"
    assert progress["data"]["run"] == run.pk
    for socket in (watcher, outsider):
        await socket.close()
