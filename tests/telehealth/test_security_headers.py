"""What every response tells the browser: the Content-Security-Policy, the
Permissions-Policy and the rest of the security headers, on pages, the API, the admin
and the API docs; and that no template carries what the policy would block."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

from tests.factories import PatientFactory, sign_in

ROOT = Path(__file__).resolve().parents[2]


def _policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def _assert_security_headers(response) -> None:
    policy = _policy(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    assert policy["form-action"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert set(policy["img-src"]) == {"'self'", "data:", "blob:"}
    assert set(policy["media-src"]) == {"'self'", "blob:"}
    # the page's own socket and the relay nodes the browser sends media requests to
    assert "'self'" in policy["connect-src"]
    assert "ws://testserver" in policy["connect-src"]
    for origin in settings.RELAY_PUBLIC_ORIGINS:
        assert origin in policy["connect-src"]
    assert not any("unsafe" in value for values in policy.values() for value in values)

    assert "camera=(self)" in response["Permissions-Policy"]
    assert "microphone=(self)" in response["Permissions-Policy"]
    assert "geolocation=()" in response["Permissions-Policy"]
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.django_db
def test_a_page_sends_the_security_headers(client):
    # given the sign-in page, and a signed-in patient's home page
    sign_in_page = client.get("/login/")
    patient = PatientFactory()
    sign_in(client, patient.user.username)
    home = client.get("/")
    # then the browser is told to run only our own files, on both
    for response in (sign_in_page, home):
        assert response.status_code == 200
        _assert_security_headers(response)


@pytest.mark.django_db
def test_the_api_sends_the_security_headers(client):
    # given the API: an open endpoint and one refusing an anonymous caller
    ok = client.get("/api/v1/health/")
    refused = client.get("/api/v1/me/")
    # then both carry the headers, the refusal included
    assert ok.status_code == 200
    assert refused.status_code in (401, 403)
    _assert_security_headers(ok)
    _assert_security_headers(refused)


@pytest.mark.django_db
def test_the_admin_sends_the_security_headers(client):
    response = client.get("/admin/login/")

    assert response.status_code == 200
    _assert_security_headers(response)


def test_https_pages_allow_the_secure_socket_only(rf):
    # given a request over HTTPS (as behind the TLS proxy in production)
    from django.http import HttpResponse

    from telehealth.security_headers import SecurityHeadersMiddleware

    request = rf.get("/", secure=True)
    middleware = SecurityHeadersMiddleware(lambda request: HttpResponse("ok"))
    # when the middleware answers
    response = middleware(request)
    # then the socket origin is wss:// on the same host, never plain ws://
    connect = _policy(response)["connect-src"]
    assert "wss://testserver" in connect
    assert "ws://testserver" not in connect


@pytest.mark.django_db
def test_the_api_docs_run_under_the_same_policy_without_inline_script(client):
    # given the Swagger UI page
    page = client.get("/api/docs/")
    assert page.status_code == 200
    _assert_security_headers(page)
    html = page.content.decode()
    # then every script is a file of our own: Swagger UI from the sidecar's static
    # files and its start-up script from the view itself
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts
    for tag in scripts:
        src = re.search(r'src="([^"]+)"', tag)
        assert src, tag
        assert src.group(1).startswith(("/static/", "/api/docs/")), tag
    assert "<style" not in html
    start_up = client.get("/api/docs/?script=")
    assert start_up.status_code == 200
    assert start_up["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in start_up.content.decode()


# What the policy would block if a template carried it: a script without src (a
# json_script data block is not run, and is built at render time anyway), an inline
# event handler, a style attribute or a <style> element, a javascript: URL.
_INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
_EVENT_HANDLER = re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE)
_STYLE = re.compile(r"<style\b|<[^>]*\sstyle\s*=", re.IGNORECASE)
_JS_URL = re.compile(r"javascript:", re.IGNORECASE)
_COMMENT = re.compile(r"{%\s*comment\s*%}.*?{%\s*endcomment\s*%}|{#.*?#}|<!--.*?-->", re.DOTALL)


def _our_templates() -> list[Path]:
    templates = []
    for folder in ROOT.glob("*/templates"):
        if folder.parts[-2] in {".venv", "node_modules"}:
            continue
        templates.extend(folder.rglob("*.html"))
    return templates


def test_no_template_needs_inline_script_or_style():
    templates = _our_templates()
    assert len(templates) > 10
    offending = []
    for template in templates:
        # comments are blanked out, keeping their line breaks so line numbers hold
        source = _COMMENT.sub(lambda match: "\n" * match.group(0).count("\n"), template.read_text())
        for pattern in (_INLINE_SCRIPT, _EVENT_HANDLER, _STYLE, _JS_URL):
            for match in pattern.finditer(source):
                line = source.count("\n", 0, match.start()) + 1
                offending.append(f"{template.relative_to(ROOT)}:{line}: {match.group(0)[:60]}")
    assert not offending, "blocked by the Content-Security-Policy:\n" + "\n".join(offending)
