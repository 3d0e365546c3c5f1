"""The messaging engine's writes: numbering, idempotency, membership, attachments."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from consult import services
from consult.models import Message, Participant, Thread
from telehealth.errors import AccessDenied, Conflict, DomainError, NotFound
from telehealth.models import CareRelationship
from tests.factories import ClinicianFactory

pytestmark = pytest.mark.django_db

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7V\xbd\xfa"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture
def thread(patient, doctor):
    return services.thread_open(
        kind=Thread.Kind.CONSULTATION,
        created_by=doctor.user,
        participants=[(patient.user, "patient")],
        patient=patient,
    )


def send(user, thread, client_id, body="xin chào", **kwargs):
    return services.message_send(
        user=user, thread_id=thread.pk, client_id=client_id, body=body, **kwargs
    )


def test_sequence_numbers_start_at_one_and_have_no_gaps(thread, patient, doctor):
    seqs = [
        send(u, thread, f"c{n}").message.seq
        for n, u in enumerate([doctor.user, patient.user, doctor.user])
    ]

    thread.refresh_from_db()
    assert seqs == [1, 2, 3]
    assert thread.last_seq == 3


def test_the_same_client_id_returns_the_original_message(thread, doctor):
    first = send(doctor.user, thread, "same", body="một")
    again = send(doctor.user, thread, "same", body="một")

    assert first.created and not again.created
    assert again.message.pk == first.message.pk
    assert Message.objects.count() == 1


def test_sending_marks_the_thread_read_for_the_sender(thread, doctor, patient):
    send(patient.user, thread, "p1")
    send(doctor.user, thread, "d1")

    mark = Participant.objects.get(thread=thread, user=doctor.user).read_seq
    assert mark == 2


def test_a_stranger_cannot_send_and_nothing_is_stored(thread):
    stranger = ClinicianFactory()

    with pytest.raises(NotFound):
        send(stranger.user, thread, "s1")
    thread.refresh_from_db()
    assert thread.last_seq == 0
    assert not Message.objects.exists()


def test_a_closed_thread_refuses_new_messages(thread, doctor):
    services.thread_close(thread_id=thread.pk, closed_by=doctor.user)

    with pytest.raises(Conflict):
        send(doctor.user, thread, "late")


@pytest.mark.parametrize(
    ("client_id", "body", "field"),
    [
        ("", "hi", "client_id"),
        ("x" * 65, "hi", "client_id"),
        ("ok", "   ", "body"),
        ("ok", 42, "body"),
    ],
)
def test_bad_input_names_the_field(thread, doctor, client_id, body, field):
    with pytest.raises(DomainError) as error:
        send(doctor.user, thread, client_id, body=body)

    assert field in error.value.fields


def test_read_marks_only_move_forward(thread, doctor, patient):
    for n in range(3):
        send(doctor.user, thread, f"m{n}")

    assert services.thread_mark_read(user=patient.user, thread_id=thread.pk, seq=2) == 2
    assert services.thread_mark_read(user=patient.user, thread_id=thread.pk, seq=1) == 2
    assert services.thread_mark_read(user=patient.user, thread_id=thread.pk, seq=99) == 3


def test_opening_a_thread_twice_for_one_context_returns_the_same_thread(doctor, patient):
    first = services.thread_open(
        kind="mentorship",
        created_by=doctor.user,
        context="network.m:1",
        participants=[(patient.user, "mentee")],
    )
    second = services.thread_open(
        kind="mentorship", created_by=doctor.user, context="network.m:1", participants=[]
    )

    assert first.pk == second.pk


def test_clinicians_in_a_patient_thread_may_see_the_patient_until_they_leave(thread, patient):
    specialist = ClinicianFactory()
    services.thread_participant_add(
        thread_id=thread.pk, user=specialist.user, role="specialist", added_by=thread.created_by
    )
    granted = CareRelationship.objects.get(member=specialist.user, patient=patient)

    services.thread_participant_remove(
        thread_id=thread.pk, user_id=specialist.user.pk, removed_by=thread.created_by
    )

    granted.refresh_from_db()
    assert granted.kind == "consultation"
    assert granted.ends_at is not None


def test_only_the_host_adds_people(thread, patient):
    with pytest.raises(AccessDenied):
        services.thread_participant_add(
            thread_id=thread.pk,
            user=ClinicianFactory().user,
            role="specialist",
            added_by=patient.user,
        )


def test_joining_and_leaving_are_numbered_system_lines(thread):
    specialist = ClinicianFactory(user__full_name="Phạm Minh Tuấn")
    services.thread_participant_add(
        thread_id=thread.pk, user=specialist.user, role="specialist", added_by=thread.created_by
    )

    line = Message.objects.get(thread=thread)
    assert (line.kind, line.seq) == ("system", 1)
    assert "Phạm Minh Tuấn" in line.body


def test_an_image_is_accepted_by_its_content_whatever_its_name(thread, patient):
    upload = SimpleUploadedFile("photo.txt", PNG, content_type="text/plain")

    attachment = services.attachment_upload(user=patient.user, thread_id=thread.pk, upload=upload)

    assert attachment.content_type == "image/png"
    assert attachment.name == "photo.png"
    assert attachment.size == len(PNG)


def test_a_script_named_like_an_image_is_refused(thread, patient):
    upload = SimpleUploadedFile("lesion.jpg", b"<script>alert(1)</script>", "image/jpeg")

    with pytest.raises(DomainError) as error:
        services.attachment_upload(user=patient.user, thread_id=thread.pk, upload=upload)

    assert error.value.code == "unsupported_type"


def test_a_file_over_ten_megabytes_is_refused(thread, patient):
    upload = SimpleUploadedFile("big.pdf", PDF + b"0" * (10 * 1024 * 1024), "application/pdf")

    with pytest.raises(DomainError) as error:
        services.attachment_upload(user=patient.user, thread_id=thread.pk, upload=upload)

    assert error.value.code == "too_large"


def test_a_message_carries_its_attachments_once(thread, patient):
    upload = SimpleUploadedFile("ket-qua.pdf", PDF, "application/pdf")
    attachment = services.attachment_upload(user=patient.user, thread_id=thread.pk, upload=upload)

    result = send(patient.user, thread, "with-file", body="", attachment_ids=[str(attachment.pk)])

    assert [a["name"] for a in result.frame["attachments"]] == ["ket-qua.pdf"]
    with pytest.raises(DomainError):
        send(patient.user, thread, "again", body="", attachment_ids=[str(attachment.pk)])


def test_a_patient_may_only_invite_their_own_clinicians(patient):
    stranger = ClinicianFactory()

    with pytest.raises(DomainError):
        services.thread_open_by_user(
            user=patient.user,
            kind="consultation",
            participant_ids=[stranger.user.pk],
            patient=patient,
        )


# --- The socket's send path, on the event loop ----------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
async def test_the_socket_send_path_keeps_every_guarantee_without_a_thread(consultation):
    from channels.db import database_sync_to_async

    from telehealth import db_async

    thread, patient, doctor, _ = consultation
    first = await services.message_send_async(
        user=doctor, thread_id=thread.pk, client_id="fast-1", body="Chào chị"
    )
    second = await services.message_send_async(
        user=patient, thread_id=thread.pk, client_id="fast-2", body="Chào bác sĩ"
    )
    retry = await services.message_send_async(
        user=doctor, thread_id=thread.pk, client_id="fast-1", body="Chào chị"
    )

    assert db_async._pools  # stored on the loop's async pool, not through the ORM
    assert (first.created, first.message.seq, second.message.seq) == (True, 1, 2)
    # A retry is refused by the unique constraint, rolled back whole (no seq used),
    # and answered with the original through the ORM path.
    assert (retry.created, retry.message.pk, retry.message.seq) == (False, first.message.pk, 1)
    stored = await database_sync_to_async(
        lambda: list(Message.objects.filter(thread=thread).values_list("seq", "body"))
    )()
    assert sorted(stored) == [(1, "Chào chị"), (2, "Chào bác sĩ")]
    marks = await database_sync_to_async(
        lambda: dict(Participant.objects.filter(thread=thread).values_list("user_id", "read_seq"))
    )()
    assert marks[doctor.pk] == 1 and marks[patient.pk] == 2  # the sender's read mark moved
    assert first.frame["seq"] == 1 and first.frame["sender"]["id"] == doctor.pk

    stranger = await database_sync_to_async(lambda: ClinicianFactory().user)()
    with pytest.raises(NotFound):
        await services.message_send_async(
            user=stranger, thread_id=thread.pk, client_id="x-1", body="hello"
        )
    with pytest.raises(DomainError):
        await services.message_send_async(
            user=doctor, thread_id=thread.pk, client_id="", body="no client id"
        )
    assert await database_sync_to_async(Message.objects.filter(thread=thread).count)() == 2
