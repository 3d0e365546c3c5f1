"""The TOTP second factor (django-otp's TOTP devices): who needs it, who has passed it.

* **Offered** to everyone who holds a role other than patient (doctors, commune
  health workers, coordinators, administrators); **required** for the roles in
  ``TELEHEALTH_REQUIRE_TOTP_ROLES`` (empty by default: optional for all).
* A person **needs** the second factor when it is required for one of their roles
  or when they have a confirmed device.
* Signing in with the password alone does not sign such a person in: the session
  holds a *pending* sign-in (``PENDING_KEY``: who, with which backend, since when,
  where to go next) and is anonymous until the code is given on ``/login/verify/``
  (or, with no device yet, until a device is enrolled on ``/account/two-factor/``).
  Only then does ``django.contrib.auth.login`` run, followed by
  ``django_otp.login``, which records the device in the session.
* A signed-in session of someone who needs the factor but has not passed it (an
  administrator signed in through the admin's own form, a role newly required) is
  turned back into a pending sign-in by the middleware; sockets refuse it.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import segno
from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.http import HttpRequest
from django.utils.safestring import SafeString, mark_safe
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from telehealth.models import Role

PENDING_KEY = "_th_2fa_pending"
# When the middleware last checked that a signed-in session needs no factor it lacks.
CHECKED_KEY = "_th_2fa_checked"
# A password accepted this long ago no longer lets the code be typed: sign in again.
PENDING_SECONDS = 5 * 60


def totp_required(user: Any) -> bool:
    required = {role.strip() for role in settings.TELEHEALTH_REQUIRE_TOTP_ROLES if role.strip()}
    return bool(required and required & user.roles)


def totp_offered(user: Any) -> bool:
    return bool(user.roles - {Role.PATIENT}) or totp_required(user)


def confirmed_device(user: Any) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()


def needs_second_factor(user: Any) -> bool:
    return confirmed_device(user) is not None or totp_required(user)


def session_verified(*, user: Any, session: Any) -> bool:
    """The session passed the second factor with a device the user still has."""
    persistent_id = session.get(DEVICE_ID_SESSION_KEY)
    if not persistent_id:
        return False
    device = TOTPDevice.from_persistent_id(persistent_id)
    return device is not None and device.user_id == user.pk and device.confirmed


def second_factor_satisfied(*, user: Any, session: Any) -> bool:
    return session_verified(user=user, session=session) or not needs_second_factor(user)


# --- The pending sign-in ------------------------------------------------------------------


def pending_start(request: HttpRequest, *, user: Any, next_url: str) -> None:
    """Remember a password that was right; nobody is signed in yet."""
    request.session.cycle_key()
    request.session[PENDING_KEY] = {
        "user": user.pk,
        "backend": getattr(user, "backend", settings.AUTHENTICATION_BACKENDS[-1]),
        "at": int(time.time()),
        "next": next_url,
    }


def pending_user(request: HttpRequest) -> Any | None:
    """The person whose password was accepted on this session, if still in time."""
    pending = request.session.get(PENDING_KEY)
    if not isinstance(pending, dict):
        return None
    if time.time() - float(pending.get("at", 0)) > PENDING_SECONDS:
        del request.session[PENDING_KEY]
        return None
    return get_user_model().objects.filter(pk=pending.get("user"), is_active=True).first()


def pending_complete(request: HttpRequest, *, user: Any, device: TOTPDevice) -> str:
    """Sign the pending person in with ``device``; returns where to go next."""
    pending = request.session.pop(PENDING_KEY, {})
    request.th_sign_in_method = "password + TOTP"  # type: ignore[attr-defined]
    login(request, user, backend=pending.get("backend") or settings.AUTHENTICATION_BACKENDS[-1])
    otp_login(request, device)
    request.session[CHECKED_KEY] = int(time.time())
    return pending.get("next") or settings.LOGIN_REDIRECT_URL


def pending_next_step(user: Any) -> str:
    """The URL name of the page that finishes the sign-in."""
    return "login-verify" if confirmed_device(user) is not None else "totp-setup"


# --- Enrolment ------------------------------------------------------------------------------


def secret_for_display(device: TOTPDevice) -> str:
    """The key as authenticator apps take it typed in: base32, in groups of four."""
    secret = base64.b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def qr_svg(device: TOTPDevice) -> SafeString:
    """The enrolment QR code as inline SVG markup: no image request, nothing for
    the content security policy to allow. segno escapes nothing user-controlled
    into it but the path data it draws."""
    code = segno.make(device.config_url, error="m")
    svg = code.svg_inline(scale=4, dark="#111", light="#fff", omitsize=False)
    # segno draws only paths of fixed markup: the encoded URL (with the username) is not
    # in the SVG text, so nothing a person typed can reach the page through it.
    return mark_safe(svg)  # noqa: S308  # nosec B308 B703
