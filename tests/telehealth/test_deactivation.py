"""Deactivating an account closes every way in at once: its sessions, its live sockets
and its API token (telehealth.services.user_deactivate), from the admin or any save."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client
from rest_framework.authtoken.models import Token

from telehealth import services
from telehealth.models import AuditEvent, User
from telehealth.session_security import session_store
from tests.consult.conftest import open_socket
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def sessions_of(user) -> list[str]:
    keys = []
    for session in Session.objects.all():
        if session.get_decoded().get("_auth_user_id") == str(user.pk):
            keys.append(session.session_key)
    return keys


def signed_in_everywhere(user) -> tuple[list[Client], str]:
    """Two browsers signed in and an API token: (the browsers, the token)."""
    browsers = []
    for _ in range(2):
        client = Client()
        client.force_login(user)
        browsers.append(client)
    token = Token.objects.create(user=user).key
    return browsers, token


async def live_socket(user):
    client = Client()
    await database_sync_to_async(client.force_login)(user)
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    socket, connected, _ = await open_socket(None, cookie=f"{settings.SESSION_COOKIE_NAME}={key}")
    assert connected
    assert (await socket.receive())["type"] == "welcome"
    return socket, key


async def close_code(socket, timeout: float = 5) -> int:
    while True:
        output = await socket.communicator.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return output["code"]


def assert_locked_out(user, browsers, token) -> None:
    from rest_framework.test import APIClient

    assert sessions_of(user) == []
    assert not Token.objects.filter(user=user).exists()
    for browser in browsers:
        assert browser.get("/profile/")["Location"].startswith("/login/")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/v1/me/").status_code == 401


async def test_deactivating_closes_sessions_sockets_and_tokens_at_once():
    admin = await database_sync_to_async(UserFactory)(is_staff=True)
    user = await database_sync_to_async(UserFactory)()
    browsers, token = await database_sync_to_async(signed_in_everywhere)(user)
    socket, socket_session = await live_socket(user)

    result = await database_sync_to_async(services.user_deactivate)(
        user=user, by=admin, reason="left the hospital"
    )

    assert await close_code(socket) == 4401
    assert result == {"sessions": 3, "tokens": 1}
    await database_sync_to_async(assert_locked_out)(user, browsers, token)
    # The cached copy of a session is gone too, not only its row.
    assert (
        await database_sync_to_async(session_store(socket_session).exists)(socket_session) is False
    )
    event = await database_sync_to_async(AuditEvent.objects.get)(
        target=f"user:{user.pk}:deactivated"
    )
    assert event.actor_id == admin.pk
    assert "left the hospital" in event.reason and "3 session(s)" in event.reason
    assert not (await database_sync_to_async(User.objects.get)(pk=user.pk)).is_active


async def test_saving_is_active_off_anywhere_closes_everything_too():
    user = await database_sync_to_async(UserFactory)()
    browsers, token = await database_sync_to_async(signed_in_everywhere)(user)
    socket, _ = await live_socket(user)

    user.is_active = False
    await database_sync_to_async(user.save)()

    assert await close_code(socket) == 4401
    await database_sync_to_async(assert_locked_out)(user, browsers, token)
    assert (
        await database_sync_to_async(
            AuditEvent.objects.filter(target=f"user:{user.pk}:deactivated").count
        )()
        == 1
    )


async def test_a_bulk_update_turning_is_active_off_closes_everything_of_each():
    # given two signed-in people, one already deactivated, and one untouched
    first, second = await database_sync_to_async(UserFactory.create_batch)(2)
    gone = await database_sync_to_async(UserFactory)(is_active=False)
    kept = await database_sync_to_async(UserFactory)()
    first_in, first_token = await database_sync_to_async(signed_in_everywhere)(first)
    second_in, second_token = await database_sync_to_async(signed_in_everywhere)(second)
    await database_sync_to_async(signed_in_everywhere)(kept)
    socket, _ = await live_socket(second)

    # when a script deactivates them with one queryset update
    updated = await database_sync_to_async(
        User.objects.filter(pk__in=[first.pk, second.pk, gone.pk]).update
    )(is_active=False)

    # then each one that was active is locked out and audited once, like a save
    assert updated == 3
    assert await close_code(socket) == 4401
    await database_sync_to_async(assert_locked_out)(first, first_in, first_token)
    await database_sync_to_async(assert_locked_out)(second, second_in, second_token)
    targets = await database_sync_to_async(
        lambda: sorted(
            AuditEvent.objects.filter(target__endswith=":deactivated").values_list(
                "target", flat=True
            )
        )
    )()
    assert targets == sorted([f"user:{first.pk}:deactivated", f"user:{second.pk}:deactivated"])
    # and nobody else lost a session; other updates are plain updates
    assert len(await database_sync_to_async(sessions_of)(kept)) == 2
    await database_sync_to_async(User.objects.filter(pk=kept.pk).update)(full_name="Đã đổi")
    assert len(await database_sync_to_async(sessions_of)(kept)) == 2


def test_bulk_update_of_is_active_deactivates_too():
    # bulk_update writes is_active as a CASE expression, not the value False
    on, off = UserFactory(), UserFactory()
    _, token = signed_in_everywhere(off)
    on.is_active, off.is_active = True, False

    User.objects.bulk_update([on, off], ["is_active"])

    assert not Token.objects.filter(key=token).exists() and sessions_of(off) == []
    assert AuditEvent.objects.filter(target=f"user:{off.pk}:deactivated").count() == 1
    assert not AuditEvent.objects.filter(target=f"user:{on.pk}:deactivated").exists()
    assert User.objects.get(pk=on.pk).is_active


def test_the_admin_action_deactivates_and_records_who_did_it():
    admin = User.objects.create_superuser("root", "root@example.org", PASSWORD)
    user = UserFactory()
    browsers, token = signed_in_everywhere(user)
    other = UserFactory()
    other_browsers, _ = signed_in_everywhere(other)
    console = Client()
    console.force_login(admin)

    response = console.post(
        "/admin/telehealth/user/",
        {"action": "deactivate", "_selected_action": [user.pk]},
    )

    assert response.status_code == 302
    user.refresh_from_db()
    assert not user.is_active
    assert_locked_out(user, browsers, token)
    assert AuditEvent.objects.get(target=f"user:{user.pk}:deactivated").actor_id == admin.pk
    # Nobody else is touched.
    assert len(sessions_of(other)) == 2
    assert other_browsers[0].get("/profile/").status_code == 200


def test_unticking_active_on_the_admin_form_is_audited_as_the_admin():
    admin = User.objects.create_superuser("root2", "root2@example.org", PASSWORD)
    user = UserFactory()
    browsers, token = signed_in_everywhere(user)
    console = Client()
    console.force_login(admin)
    page = console.get(f"/admin/telehealth/user/{user.pk}/change/")
    form = page.context["adminform"].form
    data = {
        name: form[name].value()
        for name in ("username", "full_name", "phone", "preferred_language", "email")
    }
    data.update(
        {
            "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
            "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        }
    )  # "is_active" left out: the box is unticked
    for inline in page.context["inline_admin_formsets"]:
        prefix = inline.formset.prefix
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})

    response = console.post(f"/admin/telehealth/user/{user.pk}/change/", data)

    assert response.status_code == 302
    assert_locked_out(user, browsers, token)
    assert AuditEvent.objects.get(target=f"user:{user.pk}:deactivated").actor_id == admin.pk


def test_a_deactivated_person_cannot_sign_in_again():
    user = UserFactory()
    services.user_deactivate(user=user)

    response = Client().post("/login/", {"username": user.username, "password": PASSWORD})

    assert response.status_code == 200  # the form again, with its error
    assert not sessions_of(user)
