"""Response headers that tell the browser what a page may do.

Django's SecurityMiddleware sets HSTS, nosniff, Referrer-Policy and
Cross-Origin-Opener-Policy; XFrameOptionsMiddleware sets X-Frame-Options. This
adds the two it does not: the Content-Security-Policy (django-csp builds it from
``settings.CONTENT_SECURITY_POLICY``) and the Permissions-Policy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings
from django.core.exceptions import DisallowedHost

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponseBase


class SecurityHeadersMiddleware(CSPMiddleware):
    """The CSP of settings, plus the page's own websocket origin in ``connect-src``.

    ``'self'`` covers ws:/wss: to the same host only in browsers that implement CSP
    level 3 that way; naming ``wss://<host>`` (``ws://`` over plain HTTP) explicitly
    keeps the one socket (``/ws/``) working everywhere. The host is the request's,
    which ALLOWED_HOSTS has already validated.
    """

    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        if report_only:
            return parts
        try:
            host = request.get_host()
        except DisallowedHost:  # the 400 for a forged Host header: no socket to allow
            return parts
        scheme = "wss" if request.is_secure() else "ws"
        update = dict(parts.update or {})
        update["connect-src"] = [*update.get("connect-src", []), f"{scheme}://{host}"]
        parts.update = update
        return parts

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        response = super().process_response(request, response)
        if settings.PERMISSIONS_POLICY and "Permissions-Policy" not in response:
            response["Permissions-Policy"] = settings.PERMISSIONS_POLICY
        return response
